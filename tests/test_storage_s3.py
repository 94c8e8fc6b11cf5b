"""Cluster storage on a real S3-compatible server (moto on 127.0.0.1): models, checkpoints,
the training-data cache, job outputs and tune storage on s3a://, and the errors of bad
locations. Spark goes through the real S3A connector, ranks and sparkae.io through
pyarrow's S3 client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from pyarrow import fs as pafs

from sparkae import Autoencoder, AutoencoderModel
from sparkae.jobs import score_job, score_settings
from sparkae.io import backends, checks, commit, fs
from sparkae.io.uri import parse
from tests.conftest import ROOT, packages_env

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def bucket(s3_server, s3_spark):
    name = f"sparkae-{uuid.uuid4().hex[:8]}"
    s3_server.bucket(name)
    return name


@pytest.fixture(scope="module")
def s3(s3_server):
    """pyarrow's own S3 client on the server, to look at what sparkae wrote."""
    host = s3_server.endpoint.split("://", 1)[1]
    return pafs.S3FileSystem(endpoint_override=host, scheme="http", access_key="testing",
                             secret_key="testing", region="us-east-1")


def _keys(s3, prefix):
    sel = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
    return sorted(i.path[len(prefix) + 1:] for i in s3.get_file_info(sel)
                  if i.type == pafs.FileType.File)


@pytest.fixture(scope="module")
def model(small_dense, s3_spark):
    _, df = small_dense
    return Autoencoder(features_col="vec", hidden=[5], epochs=2, mini_batch_size=32,
                       seed=4).fit(df)


def _scores(m, df):
    return np.array(sorted(r.reconstruction_mse for r in m.transform(df).collect()))


def test_model_and_pipeline_save_load_on_s3(model, small_dense, bucket, s3, tmp_path,
                                            monkeypatch):
    from pyspark.ml import Pipeline, PipelineModel

    _, df = small_dense
    monkeypatch.chdir(tmp_path)                      # a local ./s3a:/... would land here
    path = f"s3a://{bucket}/models/m1"
    model.save(path)
    keys = _keys(s3, f"{bucket}/models/m1")
    gen = json.loads(s3.open_input_stream(f"{bucket}/models/m1/_manifest.json").read())[
        "generation"]
    assert keys == ["_manifest.json", f"{gen}/metadata.json", f"{gen}/weights.safetensors",
                    "metadata/part-00000"]
    loaded = AutoencoderModel.load(path)
    np.testing.assert_array_equal(_scores(loaded, df), _scores(model, df))
    with pytest.raises(FileExistsError, match="already exists"):
        model.save(path)
    model.write().overwrite().save(path)
    assert len(commit.generations(path)) == 2        # the new one and the one before
    assert os.listdir(tmp_path) == []                # nothing on local disk
    # a Pipeline holding the model, saved and loaded by Spark's own writer and reader
    pipe = Pipeline(stages=[Autoencoder(features_col="vec", hidden=[3], epochs=1, seed=1)])
    fitted = pipe.fit(df)
    fitted.write().overwrite().save(f"s3a://{bucket}/pipelines/p1")
    back = PipelineModel.load(f"s3a://{bucket}/pipelines/p1")
    np.testing.assert_array_equal(_scores(back.stages[0], df), _scores(fitted.stages[0], df))
    assert os.listdir(tmp_path) == []


_KILL_BEFORE_MANIFEST = """
import os, sys
import torch
from sparkae.io import commit, fs
from sparkae import persistence
fs.configure({"fs.s3a.endpoint": sys.argv[2], "fs.s3a.path.style.access": "true",
              "fs.s3a.access.key": "testing", "fs.s3a.secret.key": "testing"})
real = fs.write_bytes
def write(location, data, what="path"):
    if location.endswith(commit.MANIFEST):
        os._exit(9)   # killed after every file of the new model, before its manifest
    real(location, data, what)
commit.fs.write_bytes = write
meta, state = persistence.load_model(sys.argv[3])
state = {k: v + 1.0 for k, v in state.items()}
persistence.save_model(sys.argv[1], meta, state, overwrite=True)
"""


def _killed_save(s3_server, dest, source):
    proc = subprocess.run([sys.executable, "-c", _KILL_BEFORE_MANIFEST, dest,
                           s3_server.endpoint, source], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]


def test_a_killed_save_leaves_the_old_model_or_nothing_loadable(model, small_dense, bucket,
                                                               s3_server, s3):
    _, df = small_dense
    path = f"s3a://{bucket}/models/killed"
    model.save(path)
    before = _scores(model, df)
    _killed_save(s3_server, path, path)              # overwrite killed mid-way
    assert len(commit.generations(path)) == 2        # the new files are there, unreferenced
    np.testing.assert_array_equal(_scores(AutoencoderModel.load(path), df), before)
    model.write().overwrite().save(path)             # the next save tidies the orphan away
    assert len(commit.generations(path)) == 2
    fresh = f"s3a://{bucket}/models/never-finished"
    _killed_save(s3_server, fresh, path)
    with pytest.raises(ValueError, match=r"not a loadable sparkae model: .*has no "
                                         r"_manifest.json.*interrupted save"):
        AutoencoderModel.load(fresh)


def test_bad_locations_fail_clearly_and_overwrite_nothing(model, small_dense, bucket, s3,
                                                          monkeypatch):
    _, df = small_dense
    with pytest.raises(ValueError, match=r"model path: 'foo://b/m' has the scheme 'foo', for "
                                         r"which sparkae has no file system"):
        model.save("foo://b/m")
    with pytest.raises(ValueError, match=r"checkpoint_dir: 's3a://no-such-bucket/ck': the "
                                         r"bucket 'no-such-bucket' does not exist"):
        Autoencoder(features_col="vec", epochs=1, checkpoint_dir="s3a://no-such-bucket/ck").fit(df)
    with pytest.raises(ValueError, match=r"cache_dir: 'gs:/x' names no bucket or host"):
        Autoencoder(features_col="vec", epochs=1, cache_dir="gs:/x").fit(df)
    # no credentials anywhere: refused before any Spark job (nothing asks instance metadata)
    hadoop = df.sparkSession.sparkContext._jsc.hadoopConfiguration()
    saved = {k: hadoop.get(k) for k in ("fs.s3a.access.key", "fs.s3a.secret.key")}
    for k in saved:
        hadoop.set(k, "")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    try:
        with pytest.raises(ValueError, match=r"cache_dir: 's3a://.*/c' \(scheme s3a, endpoint "
                                             r"http://127.0.0.1:\d+\) has no credentials"):
            Autoencoder(features_col="vec", epochs=1, cache_dir=f"s3a://{bucket}/c").fit(df)
    finally:
        for k, v in saved.items():
            hadoop.set(k, v)
    # a model without a manifest, and one whose weights object was truncated
    path = f"s3a://{bucket}/models/bad"
    model.save(path)
    manifest = json.loads(s3.open_input_stream(f"{bucket}/models/bad/_manifest.json").read())
    weights = f"{bucket}/models/bad/{manifest['generation']}/weights.safetensors"
    data = s3.open_input_stream(weights).read()
    with s3.open_output_stream(weights) as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"weights.safetensors' is truncated or altered: "
                                         rf"{len(data) // 2} bytes, the manifest says {len(data)}"):
        AutoencoderModel.load(path)
    s3.delete_file(f"{bucket}/models/bad/_manifest.json")
    with pytest.raises(ValueError, match="has no _manifest.json"):
        AutoencoderModel.load(path)
    assert "no-such-bucket" not in [b.base_name for b in s3.get_file_info(
        pafs.FileSelector("", allow_not_found=True))]


def test_score_job_on_s3_twice_for_one_date_leaves_one_copy(model, small_dense, bucket, s3_spark):
    _, df = small_dense
    spark = s3_spark
    root = f"s3a://{bucket}/score"
    model.write().overwrite().save(f"{root}/model")
    df.select("id", "vec").write.mode("overwrite").parquet(f"{root}/input")
    flags = {"model": f"{root}/model", "input": f"{root}/input", "output": f"{root}/scores",
             "id_cols": "id", "run_date": "2024-03-01", "outputs": "reconstruction_mse"}
    first = score_job.run_score(spark, score_settings.load(None, [], flags))
    second = score_job.run_score(spark, score_settings.load(None, [], flags))
    assert not first["replaced_previous"] and second["replaced_previous"]
    scores = spark.read.parquet(f"{root}/scores").toPandas()
    assert len(scores) == 400 and scores.id.is_unique
    assert fs.listdir(f"{root}/scores") == ["_runs", "run_date=2024-03-01"]
    summary = json.loads(fs.read_bytes(f"{root}/scores/_runs/run_date=2024-03-01.json"))
    assert summary["rows"]["scored"] == 400


def test_train_job_with_everything_on_s3(s3_server, bucket, s3, tmp_path):
    """The storage walkthrough's command: model, scores, summary, report, cache and checkpoints in the
    bucket, nothing on local disk (two ranks on S3: tests/test_faults.py)."""
    env = packages_env(dict(os.environ, SPARKAE_VENV=os.path.dirname(os.path.dirname(sys.executable))))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    confs = []
    for key, value in s3_server.spark_conf.items():
        confs += ["--conf", f"{key}={value}"]
    run = f"s3a://{bucket}/run"
    proc = subprocess.run(
        [str(ROOT / "spark-submit.sh"), *confs, str(ROOT / "jobs" / "train.py"),
         "--set", f"output.dir={run}", "--set", f"model.cache_dir=s3a://{bucket}/cache",
         "--set", f"model.checkpoint_dir=s3a://{bucket}/ck", "--set", "model.epochs=2",
         "--set", "model.hidden=[16]"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"model:  {run}/model" in proc.stdout
    keys = _keys(s3, f"{bucket}/run")
    assert "_manifest.json" in [k.split("/")[-1] for k in keys if k.startswith("model/")]
    assert "summary.json" in keys and "report.html" in keys
    assert any(k.startswith("scored/") and k.endswith(".parquet") for k in keys)
    assert not [k for k in keys if ".tmp-" in k or ".old-" in k]
    assert [k for k in _keys(s3, f"{bucket}/ck") if k.endswith("_manifest.json")]
    summary = json.loads(s3.open_input_stream(f"{bucket}/run/summary.json").read())
    assert summary["epochs"] == 2 and summary["rows"]["scored"] == 5000
    assert summary["model"] == f"{run}/model"
    assert os.listdir(workdir) == []                 # no ./s3a:/... nor out/ on local disk
    assert AutoencoderModel.load(f"{run}/model").summary.epochs == 2


def test_uri_parsing_and_local_schemes(tmp_path, monkeypatch):
    assert parse("s3a://b/x/y/").text == "s3a://b/x/y"
    assert parse("file:///tmp/x").text == "/tmp/x" and parse("file:/tmp/x").is_local
    assert parse("hdfs://nn:8020/data").authority == "nn:8020"
    assert parse("/Volumes/cat/sch/vol/m").is_local
    with pytest.raises(ValueError, match=r"dbfs:/m.*is read through the .*/dbfs mount, which "
                                         "this machine does not have"):
        monkeypatch.setenv("SPARKAE_DBFS_MOUNT", str(tmp_path / "dbfs"))
        parse("dbfs:/m", "model path")
    (tmp_path / "dbfs").mkdir()
    assert parse("dbfs:/models/m").text == str(tmp_path / "dbfs" / "models" / "m")
    checks.check_writable("dbfs:/models/m", "output.dir")


def test_s3_settings_follow_spark_conf():
    opts = {"fs.s3a.endpoint": "http://127.0.0.1:9000", "fs.s3a.path.style.access": "true",
            "fs.s3a.access.key": "a", "fs.s3a.secret.key": "s",
            "fs.s3a.bucket.other.endpoint": "https://minio.example:9443"}
    kw = backends.s3_kwargs(opts, "b")
    assert kw["endpoint_override"] == "127.0.0.1:9000" and kw["scheme"] == "http"
    assert kw["access_key"] == "a" and kw["secret_key"] == "s"
    assert "force_virtual_addressing" not in kw and kw["region"]
    other = backends.s3_kwargs(opts, "other")
    assert other["endpoint_override"] == "minio.example:9443" and other["scheme"] == "https"
    virtual = backends.s3_kwargs({"fs.s3a.endpoint": "https://s3.example:9443"}, "b")
    assert virtual["force_virtual_addressing"] is True and virtual["region"] == "us-east-1"
