"""The nightly scoring job: partitioned idempotent output, failed runs, summary, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from pyspark.sql import functions as F

from sparkae import Autoencoder, scoring
from sparkae.jobs import partitions, score_job, score_settings
from tests.conftest import ROOT, snapshot


@pytest.fixture(scope="module")
def job_env(small_dense, tmp_path_factory):
    """A small model trained once (saved, with a threshold) and a Parquet input with three
    null feature rows, in 4 files."""
    x, df = small_dense
    root = tmp_path_factory.mktemp("score-job")
    model = Autoencoder(features_col="vec", hidden=[5], epochs=2, mini_batch_size=32, seed=2,
                        anomaly_threshold=0.02).fit(df)
    model.save(str(root / "model"))
    spark = df.sparkSession
    rows = df.select("id", "vec").unionByName(
        spark.createDataFrame([(1000 + i, None) for i in range(3)], df.select("id", "vec").schema))
    rows.repartition(4).write.parquet(str(root / "input"))
    return x, model, root


def settings_for(root, out, date, outputs="reconstruction_mse,is_anomaly", **extra):
    flags = {"model": str(root / "model"), "input": str(root / "input"), "output": str(out),
             "id_cols": "id", "run_date": date, "outputs": outputs}
    sets = [f"{k}={json.dumps(v)}" for k, v in extra.items()]
    return score_settings.load(None, sets, flags)


def test_runs_replace_only_their_date_and_write_a_summary(spark, job_env, tmp_path):
    x, model, root = job_env
    out = tmp_path / "scores"
    s1 = score_job.run_score(spark, settings_for(root, out, "2024-01-01"))
    score_job.run_score(spark, settings_for(root, out, "2024-01-02"))
    day2 = snapshot(out / "run_date=2024-01-02")
    s3 = score_job.run_score(spark, settings_for(root, out, "2024-01-01"))
    assert not s1["replaced_previous"] and s3["replaced_previous"]
    assert snapshot(out / "run_date=2024-01-02") == day2          # the other date: untouched
    scores = spark.read.parquet(str(out)).toPandas()
    assert sorted(scores.columns) == ["id", "is_anomaly", "reconstruction_mse", "run_date"]
    counts = scores.groupby(scores.run_date.astype(str)).size().to_dict()
    assert counts == {"2024-01-01": 403, "2024-01-02": 403}      # one copy per date
    day = scores[scores.run_date.astype(str) == "2024-01-01"].sort_values("id")
    assert day.id.is_unique and day.reconstruction_mse.isna().sum() == 3
    net = model.network()
    with torch.no_grad():
        z = net.scaler(torch.from_numpy(x.astype(np.float32)))
        ref = ((net.decode_from_last(net.hidden_activations(z)[-1]) - z) ** 2).mean(1).numpy()
    np.testing.assert_allclose(day.reconstruction_mse.to_numpy()[:400], ref, rtol=1e-5)
    summary = json.loads((out / "_runs" / "run_date=2024-01-01.json").read_text())
    assert summary == json.loads(json.dumps(s3))
    assert summary["rows"] == {"in": 403, "scored": 400, "skipped": 3}
    assert summary["skipped"] == {"null features": 3}
    assert summary["threshold"] == 0.02
    assert summary["outputs"] == ["reconstruction_mse", "is_anomaly"]
    assert summary["anomalies"] == int((ref > 0.02).sum()) > 0
    assert summary["wall_time_s"] > 0 and summary["rows_per_s"] > 0
    assert sorted(os.listdir(out)) == ["_runs", "run_date=2024-01-01", "run_date=2024-01-02"]
    # without --outputs: the model's outputs, and is_anomaly since it has a threshold
    assert score_job.resolve_outputs(model, None, None) == ["deep_features",
                                                          "reconstruction_mse", "is_anomaly"]


def test_a_run_failing_mid_write_leaves_every_partition_as_it_was(spark, job_env, tmp_path):
    x, model, root = job_env
    out = tmp_path / "scores"
    score_job.run_score(spark, settings_for(root, out, "2024-02-01"))
    score_job.run_score(spark, settings_for(root, out, "2024-02-02"))
    before = snapshot(out)
    # partition 1 raises on its 3rd Arrow batch of 25 rows: its first 50 rows have
    # already gone to the Parquet writer, and other tasks may have committed files
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "25")
    spark.conf.set(scoring.FAIL_CONF, "1:3")
    try:
        with pytest.raises(Exception, match="injected failure"):
            score_job.run_score(spark, settings_for(root, out, "2024-02-01"))
        with pytest.raises(Exception, match="injected failure"):    # a new date: not created
            score_job.run_score(spark, settings_for(root, out, "2024-02-03"))
    finally:
        spark.conf.unset(scoring.FAIL_CONF)
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert snapshot(out) == before
    assert sorted(os.listdir(out)) == ["_runs", "run_date=2024-02-01", "run_date=2024-02-02"]
    assert spark.read.parquet(str(out)).count() == 806
    score_job.run_score(spark, settings_for(root, out, "2024-02-01"))   # the rerun completes
    assert spark.read.parquet(str(out)).count() == 806


def test_a_task_still_running_after_its_job_failed_writes_nothing(spark, job_env, tmp_path):
    """Spark fails a job without waiting for its other tasks' Python workers: here
    partition 1 fails on its first batch while partition 0 waits 1.5 s before each of its
    batches, then writes and moves its file into a staging directory the driver has
    already removed (as a run in CI once left one behind)."""
    x, model, root = job_env
    out = tmp_path / "scores"
    score_job.run_score(spark, settings_for(root, out, "2024-02-01"))
    before = snapshot(out)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
    spark.conf.set(scoring.FAIL_CONF, "1:1")
    spark.conf.set(scoring.DELAY_CONF, "1.5")
    try:
        with pytest.raises(Exception, match="injected failure"):
            score_job.run_score(spark, settings_for(root, out, "2024-02-03"))
    finally:
        for conf in (scoring.FAIL_CONF, scoring.DELAY_CONF,
                     "spark.sql.execution.arrow.maxRecordsPerBatch"):
            spark.conf.unset(conf)
    time.sleep(4.5)                     # partition 0's worker has written its batches by now
    assert snapshot(out) == before
    assert sorted(os.listdir(out)) == ["_runs", "run_date=2024-02-01"]


def test_a_failed_or_killed_swap_restores_the_previous_partition(spark, job_env, tmp_path,
                                                                  monkeypatch):
    x, model, root = job_env
    out = tmp_path / "scores"
    score_job.run_score(spark, settings_for(root, out, "2024-03-01"))
    before = snapshot(out / "run_date=2024-03-01")
    real = partitions.PathPartitions._swap

    def move_old_then_fail(self, staged, live, old):
        self.files.makedirs(os.path.dirname(old))
        self.files.rename(live, old)         # the live partition is out of the way ...
        raise OSError("disk gone")           # ... and the new one never arrives

    monkeypatch.setattr(partitions.PathPartitions, "_swap", move_old_then_fail)
    with pytest.raises(OSError, match="disk gone"):
        score_job.run_score(spark, settings_for(root, out, "2024-03-01"))
    assert snapshot(out / "run_date=2024-03-01") == before
    assert not (out / "_staging").exists()
    # a run killed between the two renames: the old copy waits under _replaced
    target = partitions.PathPartitions(spark, str(out), "run_date")
    os.makedirs(out / "_replaced", exist_ok=True)
    os.rename(out / "run_date=2024-03-01", out / "_replaced" / "run_date=2024-03-01.dead")
    os.makedirs(out / "_staging" / "run_date=2024-03-01.dead")
    target.recover("2024-03-01")
    assert snapshot(out / "run_date=2024-03-01") == before
    assert sorted(os.listdir(out)) == ["_runs", "run_date=2024-03-01"]
    monkeypatch.setattr(partitions.PathPartitions, "_swap", real)
    assert score_job.run_score(spark, settings_for(root, out, "2024-03-01"))["replaced_previous"]


def test_bad_model_input_or_schema_fail_clearly_and_write_nothing(spark, job_env, tmp_path):
    x, model, root = job_env
    out = tmp_path / "scores"
    cases = [
        ({"model": str(tmp_path / "nope")}, FileNotFoundError,
         "model.path: model path: '.*nope' does not exist"),
        ({"input": str(tmp_path / "missing")}, FileNotFoundError,
         "input.path: '.*missing' does not exist"),
        ({"input": "no_such_table"}, FileNotFoundError,
         "input.path: 'no_such_table' does not exist: no path and no catalog table"),
        ({"id_cols": "id,customer"}, ValueError,
         r"input.id_cols: column 'customer' not found in input .*; it has columns \['id', 'vec'\]"),
    ]
    spark.createDataFrame([(1, [1.0, 2.0])], "id long, vec array<double>").write.parquet(
        str(tmp_path / "short"))      # an array column of the model's name: width is per row
    cases.append(({"input": str(tmp_path / "short")}, Exception,
                  "a row has 2 features where the model expects 12"))
    spark.createDataFrame([(1, "a")], "id long, vec string").write.parquet(
        str(tmp_path / "text"))
    cases.append(({"input": str(tmp_path / "text")}, ValueError,
                  "scoring input: features_col: column 'vec' has type string; expected a vector"))
    spark.createDataFrame([(1, 2.0)], "id long, x double").write.parquet(str(tmp_path / "cols"))
    cases.append(({"input": str(tmp_path / "cols")}, ValueError,
                  r"scoring input: features_col: column 'vec' not found; the DataFrame has "
                  r"columns \['id', 'x'\]"))
    for flags, kind, message in cases:
        base = {"model": str(root / "model"), "input": str(root / "input"),
                "output": str(out), "id_cols": "id", "run_date": "2024-04-01"}
        base.update(flags)
        with pytest.raises(kind, match=message):
            score_job.run_score(spark, score_settings.load(None, [], base))
        assert not out.exists()


def test_settings_errors_name_the_setting():
    flags = {"model": "m", "input": "i", "output": "o"}
    for sets, message in [
        (["scoring.outputs=[mse]"], "scoring.outputs: got 'mse', expected any of"),
        (["run.date=yesterday"], "run.date: got 'yesterday', expected a date YYYY-MM-DD"),
        (["scoring.treshold=1"], "unknown setting 'treshold'; did you mean 'threshold'"),
        (["output.format=orc"], "output.format: got 'orc', expected one of auto, parquet, "
                                "delta, table"),
        (["input.version=-1"], "input.version: got -1, expected a Delta version"),
        (["input.timestamp=noon"], "input.timestamp: got 'noon', expected a time such as"),
        (["input.id_cols=[run_date]"], "output.partition_col: 'run_date' is also in"),
    ]:
        with pytest.raises(ValueError, match=message):
            score_settings.load(None, sets, flags)
    with pytest.raises(ValueError, match=r"model.path: got None, expected a non-empty string "
                                         r"\(give --model"):
        score_settings.load(None, [], {"input": "i", "output": "o"})
    s = score_settings.load(os.path.join(ROOT, "conf", "score.yaml"), [], flags)
    assert s["input"]["id_cols"] == ["id"] and score_settings.run_date(s)


def test_table_output_uses_dynamic_partition_overwrite(spark, job_env, tmp_path):
    x, model, root = job_env
    spark.sql(f"CREATE TABLE sparkae_scores_t (id BIGINT, reconstruction_mse DOUBLE, "
              f"run_date DATE) USING parquet PARTITIONED BY (run_date) "
              f"LOCATION '{tmp_path / 'table'}'")
    try:
        for date in ("2024-05-01", "2024-05-02", "2024-05-01"):
            s = settings_for(root, "sparkae_scores_t", date, outputs="reconstruction_mse",
                             **{"output.summary": str(tmp_path / f"{date}.json")})
            summary = score_job.run_score(spark, s)
        assert summary["replaced_previous"] and summary["rows"]["scored"] == 400
        counts = spark.table("sparkae_scores_t").groupBy("run_date").count().toPandas()
        assert sorted(counts["count"]) == [403, 403]
    finally:
        spark.sql("DROP TABLE IF EXISTS sparkae_scores_t")


def test_describe_error_digs_out_the_worker_error():
    text = ("An error occurred while calling o1.parquet.\n: org.apache.spark.SparkException: "
            "Job aborted\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
            "RuntimeError: sparkae: injected failure in partition 1\n\tat org.apache.Foo")
    assert score_job.describe_error(Exception(text)) == \
        "RuntimeError: sparkae: injected failure in partition 1"
    assert score_job.describe_error(ValueError("input.id_cols: bad\nmore")) == "input.id_cols: bad"


def _job(args, timeout=300):
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    return subprocess.run([sys.executable, "jobs/score.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_job_end_to_end_and_its_exit_codes(job_env, tmp_path):
    x, model, root = job_env
    out = tmp_path / "scores"
    proc = _job(["--model", str(root / "model"), "--input", str(root / "input"),
                 "--output", str(out), "--id-cols", "id", "--run-date", "2024-06-01",
                 "--outputs", "reconstruction_mse,is_anomaly,deep_features",
                 "--set", "scoring.batch_size=64", "--log-level", "WARNING"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sparkae: scored 400 of 403 rows for 2024-06-01" in proc.stdout
    assert "skipped 3 rows: null features" in proc.stdout
    scores = pd.read_parquet(out / "run_date=2024-06-01")
    assert list(scores.columns) == ["id", "reconstruction_mse", "is_anomaly", "deep_features"]
    assert len(scores) == 403 and len(scores.deep_features.dropna().iloc[0]) == 5
    summary = json.loads((out / "_runs" / "run_date=2024-06-01.json").read_text())
    assert summary["rows"]["scored"] == 400 and summary["threshold"] == 0.02
    proc = _job(["--model", str(tmp_path / "nope"), "--input", str(root / "input"),
                 "--output", str(out)])
    assert proc.returncode == 1
    assert "score: failed: model.path: model path" in proc.stderr and "does not exist" in \
        proc.stderr
    proc = _job(["--output", str(out), "--run-date", "2024-13-01"], timeout=60)
    assert proc.returncode == 2 and "input.path: got None, expected a non-empty" in proc.stderr


def test_workers_read_parquet_row_groups_and_score_like_spark(spark, job_env, tmp_path):
    """The nightly job reads a plain Parquet input with pyarrow in the workers; the scores
    equal the Spark-read path's, row for row; a Hive-partitioned input (columns the files
    lack) or the conf switch falls back to Spark."""
    x, model, root = job_env
    direct = score_job.run_score(spark, settings_for(root, tmp_path / "a", "2024-03-01",
                                                   outputs="reconstruction_mse,deep_features"))
    assert direct["reader"] == "pyarrow row groups"
    assert direct["writer"] == "pyarrow in the workers"
    assert direct["rows"] == {"in": 403, "scored": 400, "skipped": 3}
    spark.conf.set(score_job.DIRECT_CONF, "false")
    try:
        viaspark = score_job.run_score(spark, settings_for(
            root, tmp_path / "b", "2024-03-01", outputs="reconstruction_mse,deep_features"))
    finally:
        spark.conf.unset(score_job.DIRECT_CONF)
    assert viaspark["reader"] == "spark" and viaspark["writer"] == "spark"
    # the workers' files read back through Spark exactly as Spark's own
    ra, rb = (spark.read.parquet(str(tmp_path / d)) for d in ("a", "b"))
    assert ra.schema == rb.schema
    assert sorted(ra.collect(), key=lambda r: r.id) == sorted(rb.collect(), key=lambda r: r.id)
    a = pd.read_parquet(tmp_path / "a" / "run_date=2024-03-01").sort_values("id")
    b = pd.read_parquet(tmp_path / "b" / "run_date=2024-03-01").sort_values("id")
    assert a["id"].tolist() == b["id"].tolist()
    np.testing.assert_allclose(a["reconstruction_mse"], b["reconstruction_mse"], rtol=1e-6)
    ok = a["reconstruction_mse"].notna().to_numpy()
    np.testing.assert_allclose(np.stack(a["deep_features"].to_numpy()[ok]),
                               np.stack(b["deep_features"].to_numpy()[ok]),
                               rtol=1e-6, atol=1e-7)
    hive = tmp_path / "hive"
    spark.read.parquet(str(root / "input")).withColumn("part", (F.col("id") % 2).cast("int")) \
        .write.partitionBy("part").parquet(str(hive))
    flags = {"model": str(root / "model"), "input": str(hive), "output": str(tmp_path / "c"),
             "id_cols": "id,part", "run_date": "2024-03-01", "outputs": "reconstruction_mse"}
    summary = score_job.run_score(spark, score_settings.load(None, [], flags))
    assert summary["reader"] == "spark" and summary["rows"]["in"] == 403


def test_a_delta_input_without_delta_in_the_session_fails_clearly(spark, tmp_path):
    """This run's session has no Delta Lake (test.sh loads it only for tests marked delta):
    a Delta folder is recognised and refused with the reason, before any job."""
    from sparkae import read_table

    log = tmp_path / "events" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("{}\n")
    with pytest.raises(ValueError, match="this SparkSession has no Delta Lake"):
        read_table(spark, str(tmp_path / "events"))


def test_workers_write_the_scores_and_commit_only_the_accepted_attempts(spark, job_env,
                                                                        tmp_path):
    """With a local Parquet input and output the workers write the score files: the files
    use the session's codec, nothing of the attempts' work folders stays, and only the
    files of the task attempts Spark accepted are kept; a codec pyarrow does not write
    alike (lz4) sends the write back to Spark."""
    import pyarrow.parquet as pq
    from sparkae.scoring import parquet_files

    x, model, root = job_env
    spark.conf.set("spark.sql.parquet.compression.codec", "gzip")
    try:
        summary = score_job.run_score(spark, settings_for(root, tmp_path / "gz", "2024-04-01"))
    finally:
        spark.conf.unset("spark.sql.parquet.compression.codec")
    assert summary["writer"] == "pyarrow in the workers"
    assert summary["rows"] == {"in": 403, "scored": 400, "skipped": 3}
    day = tmp_path / "gz" / "run_date=2024-04-01"
    names = sorted(os.listdir(day))
    assert names[0] == "_SUCCESS" and all(n.startswith("part-") for n in names[1:])
    assert sorted(os.listdir(tmp_path / "gz")) == ["_runs", "run_date=2024-04-01"]
    meta = pq.ParquetFile(day / names[1]).metadata
    assert meta.row_group(0).column(0).compression == "GZIP"
    assert sum(pq.ParquetFile(day / n).metadata.num_rows for n in names[1:]) == 403
    spark.conf.set("spark.sql.parquet.compression.codec", "lz4")
    try:
        assert score_job.run_score(spark, settings_for(root, tmp_path / "lz4", "2024-04-01")
                                   )["writer"] == "spark"
    finally:
        spark.conf.unset("spark.sql.parquet.compression.codec")
    # the driver's side of the commit: an attempt re-run by Spark after its first copy
    # had moved its file in leaves two files for one partition; only the accepted stays
    staged = tmp_path / "staged"
    staged.mkdir()
    for name in ("part-00000-7.parquet", "part-00000-9.parquet", "part-00001-8.parquet"):
        pq.write_table(pq.read_table(day / names[1]), staged / name)
    (staged / "_attempts").mkdir()
    (staged / "_attempts" / "part-00002-11.parquet").write_bytes(b"PAR1")  # still writing
    schema = pq.read_schema(day / names[1])
    parquet_files._finish(str(staged), ["part-00000-9.parquet", "part-00001-8.parquet"],
                          schema, "snappy")
    assert sorted(os.listdir(staged)) == ["_SUCCESS", "part-00000-9.parquet",
                                          "part-00001-8.parquet"]
    assert sorted(os.listdir(tmp_path)) == ["gz", "lz4", "staged"]   # no staged.attempts
    empty = tmp_path / "empty"
    parquet_files._finish(str(empty), [], schema, "snappy")
    assert pq.read_table(empty).schema.names == schema.names
    assert pq.read_table(empty).num_rows == 0
