"""Delta Lake: the jobs and the Python API read Delta (by path and by catalog name, with time
travel) and write Delta; the nightly job replaces its date with replaceWhere.

Real Delta tables in the run's local SparkSession (Delta's jar and settings are loaded for
tests marked ``delta``; test.sh runs them in its second pytest run), the job as
``./spark-submit.sh`` does it, a killed run, and the standalone cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pyspark.sql import functions as F

from sparkae import Autoencoder, AutoencoderModel, read_table, scoring
from sparkae.jobs import score_job, score_settings
from sparkae.io import jars
from tests.conftest import ROOT, packages_env

pytestmark = pytest.mark.delta


@pytest.fixture(scope="module")
def delta_env(spark, small_dense, tmp_path_factory):
    """A small saved model (with a threshold) and a Delta input table with two versions:
    version 0 holds ids 0-199, version 1 (an overwrite) ids 0-399 and three null rows."""
    x, df = small_dense
    if "delta" not in str(spark.conf.get("spark.sql.extensions", "") or ""):
        pytest.fail("the run's SparkSession has no Delta Lake (SPARKAE_NO_PACKAGES=1?)")
    root = tmp_path_factory.mktemp("delta")
    model = Autoencoder(features_col="vec", hidden=[5], epochs=2, mini_batch_size=32, seed=2,
                        anomaly_threshold=0.02).fit(df)
    model.save(str(root / "model"))
    rows = df.select("id", "vec")
    rows.where("id < 200").repartition(2).write.format("delta").save(str(root / "events"))
    time.sleep(1.1)   # commit timestamps a second apart: time travel by timestamp below
    nulls = spark.createDataFrame([(1000 + i, None) for i in range(3)], rows.schema)
    rows.unionByName(nulls).repartition(4).write.format("delta").mode("overwrite") \
        .save(str(root / "events"))
    return x, model, root


def settings_for(root, out, date, outputs="reconstruction_mse,is_anomaly", **extra):
    flags = {"model": str(root / "model"), "input": str(root / "events"), "output": str(out),
             "id_cols": "id", "run_date": date, "outputs": outputs}
    sets = [f"{k}={json.dumps(v)}" for k, v in extra.items()]
    return score_settings.load(None, sets, flags)


def date_files(spark, table, date):
    """The data files behind one date of a Delta table (current version)."""
    rows = spark.read.format("delta").load(str(table)).where(f"run_date = DATE'{date}'") \
        .select(F.input_file_name().alias("f")).distinct().collect()
    return sorted(r.f for r in rows)


def history(spark, ref):
    return spark.sql(f"DESCRIBE HISTORY {ref}").orderBy("version").collect()


def test_nightly_runs_replace_their_date_in_one_commit(spark, delta_env, tmp_path):
    x, model, root = delta_env
    out = tmp_path / "scores"
    s1 = score_job.run_score(spark, settings_for(root, out, "2024-01-01",
                                               **{"output.format": "delta"}))
    s2 = score_job.run_score(spark, settings_for(root, out, "2024-01-02"))   # auto: Delta
    day2 = date_files(spark, out, "2024-01-02")
    s3 = score_job.run_score(spark, settings_for(root, out, "2024-01-01"))
    assert (s1["input_format"], s1["input_version"]) == ("delta", 1)
    assert [s["output_version"] for s in (s1, s2, s3)] == [0, 1, 2]
    assert [s["replaced_previous"] for s in (s1, s2, s3)] == [False, False, True]
    assert s3["output"] == f"{out} (run_date=2024-01-01)"
    assert date_files(spark, out, "2024-01-02") == day2            # the other date: untouched
    scores = spark.read.format("delta").load(str(out)).toPandas()
    counts = scores.groupby(scores.run_date.astype(str)).size().to_dict()
    assert counts == {"2024-01-01": 403, "2024-01-02": 403}       # one copy per date
    assert sorted(scores.columns) == ["id", "is_anomaly", "reconstruction_mse", "run_date"]
    ops = history(spark, f"delta.`{out}`")
    assert [r.operation for r in ops] == ["WRITE", "WRITE", "WRITE"]
    assert "2024-01-01" in ops[2].operationParameters["predicate"]
    summary = json.loads((out / "_runs" / "run_date=2024-01-01.json").read_text())
    assert summary["output_version"] == 2 and summary["input_version"] == 1
    assert summary["rows"] == {"in": 403, "scored": 400, "skipped": 3}
    # the scores equal the Parquet path's (Spark reads Delta; no pyarrow row groups)
    assert s3["reader"] == "spark"
    ref = model.transform(spark.read.format("delta").load(str(root / "events"))) \
        .select("id", "reconstruction_mse").toPandas().set_index("id").sort_index()
    day = scores[scores.run_date.astype(str) == "2024-01-01"].set_index("id").sort_index()
    assert day.reconstruction_mse.fillna(-1).round(6).equals(
        ref.reconstruction_mse.fillna(-1).round(6))
    # OPTIMIZE compacts the written date (4 files, one per input partition, into 1)
    assert len(date_files(spark, out, "2024-01-01")) > 1
    s4 = score_job.run_score(spark, settings_for(root, out, "2024-01-01",
                                               **{"output.optimize": True}))
    assert len(date_files(spark, out, "2024-01-01")) == 1
    assert history(spark, f"delta.`{out}`")[-1].operation == "OPTIMIZE"
    assert s4["output_version"] == 4 and date_files(spark, out, "2024-01-02") == day2


def test_time_travel_scores_the_version_asked_for(spark, delta_env, tmp_path):
    x, model, root = delta_env
    out = tmp_path / "scores"
    old = score_job.run_score(spark, settings_for(root, out, "2024-02-01",
                                                **{"input.version": 0}))
    assert old["input_version"] == 0 and old["rows"]["in"] == 200
    first, second = history(spark, f"delta.`{root / 'events'}`")
    between = first.timestamp + (second.timestamp - first.timestamp) / 2
    at = score_job.run_score(spark, settings_for(root, out, "2024-02-02",
                                               **{"input.timestamp": str(between)}))
    assert at["input_version"] == 0 and at["rows"]["in"] == 200
    now = score_job.run_score(spark, settings_for(root, out, "2024-02-03",
                                                **{"input.timestamp": str(second.timestamp)}))
    assert now["input_version"] == 1 and now["rows"]["in"] == 403
    ids = spark.read.parquet(str(out)).where("run_date = DATE'2024-02-01'")    # a new path: Parquet
    assert ids.agg(F.max("id")).first()[0] == 199


def test_the_python_api_records_the_training_table(spark, delta_env, tmp_path):
    x, model, root = delta_env
    df = read_table(spark, str(root / "events"), version=0)
    assert df.count() == 200
    fitted = Autoencoder(features_col="vec", hidden=[4], epochs=1, seed=1).fit(df)
    want = {"location": str(root / "events"), "format": "delta", "version": 0,
            "timestamp": None}
    assert fitted.training_table == want
    fitted.save(str(tmp_path / "m"))
    assert AutoencoderModel.load(str(tmp_path / "m")).training_table == want
    # a table read without sparkae's reader, or derived by a transformation: nothing
    assert Autoencoder(features_col="vec", hidden=[4], epochs=1).fit(
        df.limit(50)).training_table is None
    latest = read_table(spark, str(root / "events"), "delta")
    assert latest.count() == 403


def test_the_train_job_reads_and_writes_delta(spark, delta_env, tmp_path):
    from sparkae.jobs import train_job, train_settings

    x, model, root = delta_env
    sets = [f"input.path={root / 'events'}", "input.source=parquet", "input.version=0",
            "input.label_col=null", "model.features_col=vec", "model.hidden=[3]",
            "model.epochs=1", "output.report=false", f"output.dir={tmp_path / 'out'}",
            "output.format=delta"]
    summary = train_job.run_train(spark, train_settings.load(None, sets))
    assert summary["rows"]["train"] + summary["rows"]["validation"] == 200
    assert summary["training_table"] == {"location": str(root / "events"),
                                         "format": "delta", "version": 0, "timestamp": None}
    saved = AutoencoderModel.load(str(tmp_path / "out" / "model"))
    assert saved.training_table["version"] == 0
    scored = str(tmp_path / "out" / "scored")
    assert summary["scored"] == scored and summary["rows"]["scored"] == 200
    first = spark.read.format("delta").load(scored).orderBy("id").collect()
    again = train_job.run_train(spark, train_settings.load(None, sets + ["model.seed=5"]))   # a rerun
    assert again["rows"]["scored"] == 200
    assert [r.operation for r in history(spark, f"delta.`{scored}`")] == ["WRITE", "WRITE"]
    assert read_table(spark, scored, version=0).orderBy("id").collect() == first
    spark.sql("DROP TABLE IF EXISTS sparkae_train_scores")
    try:
        table = train_job.run_train(spark, train_settings.load(None, sets + [
            "output.table=sparkae_train_scores"]))
        assert table["scored"] == "sparkae_train_scores"
        assert spark.sql("DESCRIBE DETAIL sparkae_train_scores").first().format == "delta"
        assert spark.table("sparkae_train_scores").count() == 200
        train_job.run_train(spark, train_settings.load(None, sets + ["output.table=sparkae_train_scores"]))
        assert [r.operation for r in history(spark, "sparkae_train_scores")][-1] == "WRITE"
        assert len(history(spark, "sparkae_train_scores")) == 2
    finally:
        spark.sql("DROP TABLE IF EXISTS sparkae_train_scores")
    with pytest.raises(ValueError, match="output.format: got 'orc', expected parquet or delta"):
        train_settings.load(None, ["output.format=orc"])


def test_catalog_tables_in_and_out(spark, delta_env, tmp_path):
    x, model, root = delta_env
    spark.sql("DROP TABLE IF EXISTS sparkae_events")
    spark.sql("DROP TABLE IF EXISTS sparkae_delta_scores")
    try:
        spark.read.format("delta").load(str(root / "events")).write.format("delta") \
            .saveAsTable("sparkae_events")
        spark.sql("DELETE FROM sparkae_events WHERE id >= 100")     # version 1
        for date in ("2024-03-01", "2024-03-02", "2024-03-01"):
            s = score_settings.load(None, ["output.format=delta", "input.version=0",
                                         f"output.summary={tmp_path / (date + '.json')}"],
                                  {"model": str(root / "model"), "input": "sparkae_events",
                                   "output": "sparkae_delta_scores", "id_cols": "id",
                                   "run_date": date, "outputs": "reconstruction_mse"})
            summary = score_job.run_score(spark, s)
        assert summary["input_format"] == "delta" and summary["input_version"] == 0
        assert summary["replaced_previous"] and summary["output_version"] == 3   # 0: created
        counts = spark.table("sparkae_delta_scores").groupBy("run_date").count().toPandas()
        assert sorted(counts["count"]) == [403, 403]
        detail = spark.sql("DESCRIBE DETAIL sparkae_delta_scores").first()
        assert detail.format == "delta" and detail.partitionColumns == ["run_date"]
        assert read_table(spark, "sparkae_events").count() == 100     # latest, by name
    finally:
        spark.sql("DROP TABLE IF EXISTS sparkae_events")
        spark.sql("DROP TABLE IF EXISTS sparkae_delta_scores")


def test_schema_changes_fail_unless_merging(spark, delta_env, tmp_path):
    x, model, root = delta_env
    out = tmp_path / "scores"
    score_job.run_score(spark, settings_for(root, out, "2024-04-01", outputs="reconstruction_mse",
                                          **{"output.format": "delta"}))
    before = history(spark, f"delta.`{out}`")
    with pytest.raises(ValueError) as err:
        score_job.run_score(spark, settings_for(root, out, "2024-04-02"))
    text = str(err.value)
    assert "has columns (id bigint, reconstruction_mse double)" in text
    assert "this run writes (id bigint, reconstruction_mse double, is_anomaly boolean)" in text
    assert "output.schema_mode=merge" in text
    assert history(spark, f"delta.`{out}`") == before                  # nothing written
    with pytest.raises(ValueError, match="deep_features array<float>"):
        score_job.run_score(spark, settings_for(root, out, "2024-04-01",
                                              outputs="reconstruction_mse,deep_features"))
    merged = score_job.run_score(spark, settings_for(root, out, "2024-04-02",
                                                   **{"output.schema_mode": "merge"}))
    assert merged["output_version"] == 1
    table = spark.read.format("delta").load(str(out))
    assert "is_anomaly" in table.columns and table.count() == 806


def test_bad_input_fails_clearly_and_leaves_the_table_unchanged(spark, delta_env, tmp_path):
    x, model, root = delta_env
    out = tmp_path / "scores"
    score_job.run_score(spark, settings_for(root, out, "2024-05-01", **{"output.format": "delta"}))
    before = history(spark, f"delta.`{out}`")
    plain = tmp_path / "plain"
    spark.read.format("delta").load(str(root / "events")).write.parquet(str(plain))

    def fails(exc, match, **extra):
        path = extra.pop("input.path", None)
        s = settings_for(root, out, "2024-05-01", **extra)
        if path:   # the --input flag wins over --set input.path
            s["input"]["path"] = path
        with pytest.raises(exc, match=match):
            score_job.run_score(spark, s)

    fails(ValueError, r"input.path: '.*plain' is not a Delta table \(it has no _delta_log",
          **{"input.path": str(plain), "input.format": "delta"})
    fails(FileNotFoundError, r"input.path: '.*nope' does not exist",
          **{"input.path": str(tmp_path / "nope"), "input.format": "delta"})
    fails(FileNotFoundError, "'no_such_db.no_such_table' does not exist: no path and no "
          "catalog table", **{"input.path": "no_such_db.no_such_table"})
    fails(ValueError, r"input.version: got 7, but table '.*events' has versions 0 to 1",
          **{"input.version": 7})
    fails(ValueError, r"input.timestamp: got '2001-01-01 00:00:00', but table '.*events' has "
          r"commits from .* \(versions 0 to 1\)", **{"input.timestamp": "2001-01-01 00:00:00"})
    fails(ValueError, r"input.timestamp: got '2999-01-01', but table", **{
        "input.timestamp": "2999-01-01"})
    fails(ValueError, "time travel needs a Delta table",
          **{"input.path": str(plain), "input.version": 0})
    with pytest.raises(ValueError, match="input.version and input.timestamp: give one"):
        settings_for(root, out, "2024-05-01", **{"input.version": 0,
                                                 "input.timestamp": "2024-01-01"})
    with pytest.raises(ValueError, match="output.schema_mode: got 'loose'"):
        settings_for(root, out, "2024-05-01", **{"output.schema_mode": "loose"})
    # a folder of other files is not made into a Delta table
    with pytest.raises(ValueError, match=r"holds files but no Delta table"):
        score_job.run_score(spark, settings_for(root, plain, "2024-05-01",
                                              **{"output.format": "delta"}))
    assert history(spark, f"delta.`{out}`") == before


def test_a_killed_run_leaves_the_previous_version_and_a_rerun_completes(spark, delta_env,
                                                                         tmp_path):
    """The job as ./spark-submit.sh runs it (Delta with no extra flag; on its local master
    Delta's snapshot partitions set to the master's 2 cores), killed while its tasks write
    files into the table; the table stays at its previous version, and a rerun (in this
    process: the same run_score) replaces the date over the killed run's files."""
    x, model, root = delta_env
    out = tmp_path / "scores"
    score_job.run_score(spark, settings_for(root, out, "2024-06-01", **{"output.format": "delta"}))
    score_job.run_score(spark, settings_for(root, out, "2024-06-02"))
    before = spark.read.format("delta").load(str(out)).orderBy("run_date", "id").collect()
    files = set(os.listdir(out / "run_date=2024-06-01"))
    args = ["--model", str(root / "model"), "--input", str(root / "events"),
            "--output", str(out), "--id-cols", "id", "--run-date", "2024-06-01",
            "--outputs", "reconstruction_mse,is_anomaly",
            "--set", "spark.conf={spark.sql.execution.arrow.maxRecordsPerBatch: 20, "
                     f"{scoring.DELAY_CONF}: 0.5}}"]
    # --verbose: spark-submit prints the properties it was given; into a file, which (unlike
    # a pipe read only at the end) cannot fill up and stall the job
    log = tmp_path / "job.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(["./spark-submit.sh", "--verbose", "jobs/score.py", *args],
                                cwd=ROOT, env=packages_env(), stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline, seen = time.time() + 240, False
    try:
        while time.time() < deadline and proc.poll() is None:
            new = set(os.listdir(out / "run_date=2024-06-01")) - files
            if any(n.endswith(".parquet") for n in new):
                seen = True
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert seen, f"the job wrote no data file before it ended:\n{text[-3000:]}"
    assert f"({jars.SNAPSHOT_PARTITIONS_KEY},2)" in text, text[:3000]
    table = spark.read.format("delta").load(str(out))
    assert table.orderBy("run_date", "id").collect() == before
    assert [r.version for r in history(spark, f"delta.`{out}`")] == [0, 1]
    assert set(os.listdir(out / "run_date=2024-06-01")) - files          # its files stay
    rerun = score_job.run_score(spark, settings_for(root, out, "2024-06-01"))   # completes
    assert rerun["rows"] == {"in": 403, "scored": 400, "skipped": 3}
    assert rerun["output_version"] == 2 and rerun["replaced_previous"]
    counts = spark.read.format("delta").load(str(out)).groupBy("run_date").count().toPandas()
    assert sorted(counts["count"]) == [403, 403]


@pytest.mark.cluster
def test_the_job_on_the_standalone_cluster(spark, spark_cluster, delta_env, tmp_path):
    x, model, root = delta_env
    out = tmp_path / "scores"
    for date in ("2024-07-01",):
        # the cluster's 2 cores rebuild Delta's snapshots in 2 tasks, not Delta's default 50
        # (27 s of the job's 104 s here); sparkae leaves a cluster master's setting to Delta
        proc = subprocess.run(
            ["./spark-submit.sh", "--master", spark_cluster, "--conf",
             "spark.executor.memory=1g", "--conf", f"{jars.SNAPSHOT_PARTITIONS_KEY}=2",
             "jobs/score.py", "--model", str(root / "model"),
             "--input", str(root / "events"), "--output", str(out), "--id-cols", "id",
             "--run-date", date, "--set", "output.format=delta", "--set", "input.version=0"],
            cwd=ROOT, env=packages_env(), capture_output=True, text=True, timeout=420)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    summary = json.loads((out / "_runs" / "run_date=2024-07-01.json").read_text())
    assert summary["input_version"] == 0 and summary["output_version"] == 0
    assert summary["rows"]["in"] == 200 and summary["reader"] == "spark"
    assert spark.read.format("delta").load(str(out)).count() == 200


@pytest.mark.s3
def test_the_nightly_job_on_a_delta_table_in_s3(s3_spark, s3_server, delta_env):
    x, model, root = delta_env
    s3_server.bucket("delta-lake")
    out = "s3a://delta-lake/scores"
    for date in ("2024-08-01", "2024-08-02", "2024-08-01"):
        summary = score_job.run_score(s3_spark, settings_for(root, out, date,
                                                          **{"output.format": "delta"}))
    assert summary["output_version"] == 2 and summary["replaced_previous"]
    assert summary["summary"] == f"{out}/_runs/run_date=2024-08-01.json"
    table = s3_spark.read.format("delta").load(out)
    counts = table.groupBy("run_date").count().toPandas()
    assert sorted(counts["count"]) == [403, 403]
    assert read_table(s3_spark, out, version=1).count() == 806


# --- sparkae.io.jars: the Delta jar for each Spark, no Spark started ---

def _jars_dir(tmp_path, spark_version, hadoop="3.4.1", scala="2.13"):
    folder = tmp_path / f"jars-{spark_version}"
    folder.mkdir()
    for name in (f"spark-core_{scala}-{spark_version}.jar", f"hadoop-client-api-{hadoop}.jar"):
        (folder / name).write_bytes(b"")
    return str(folder)


def test_the_delta_jar_matches_spark(tmp_path):
    assert jars.delta_package(_jars_dir(tmp_path, "3.5.3", scala="2.12")) == \
        "io.delta:delta-spark_2.12:3.3.2"
    assert jars.delta_package(_jars_dir(tmp_path, "4.2.0")) == \
        "io.delta:delta-spark_4.2_2.13:4.4.0"
    assert jars.delta_package(_jars_dir(tmp_path, "4.3.0")) is None   # no Delta release yet
    import pyspark

    assert jars.spark_version() == pyspark.__version__
    with pytest.raises(RuntimeError, match="expected one spark-core"):
        jars.spark_version(str(tmp_path))


def test_with_packages_adds_delta_and_its_settings(tmp_path):
    on = {}
    d42 = _jars_dir(tmp_path, "4.2.0")
    out = jars.with_packages({}, environ=on, jars_dir=d42)
    assert out[jars.PACKAGES_KEY] == ("org.apache.hadoop:hadoop-aws:3.4.1,"
                                      "io.delta:delta-spark_4.2_2.13:4.4.0")
    assert {k: out[k] for k in jars.DELTA_CONF} == jars.DELTA_CONF
    mine = {"spark.sql.extensions": "com.example.Ext",
            "spark.sql.catalog.spark_catalog": "com.example.Catalog",
            jars.PACKAGES_KEY: "io.delta:delta-spark_4.2_2.13:4.3.9"}
    out = jars.with_packages(mine, environ=on, jars_dir=d42)
    assert out["spark.sql.extensions"] == ("com.example.Ext,"
                                           "io.delta.sql.DeltaSparkSessionExtension")
    assert out["spark.sql.catalog.spark_catalog"] == "com.example.Catalog"   # the user's
    assert out[jars.PACKAGES_KEY] == ("io.delta:delta-spark_4.2_2.13:4.3.9,"
                                      "org.apache.hadoop:hadoop-aws:3.4.1")
    out = jars.with_packages({}, environ=on, jars_dir=_jars_dir(tmp_path, "4.3.0"))
    assert out == {jars.PACKAGES_KEY: "org.apache.hadoop:hadoop-aws:3.4.1"}
    assert jars.with_packages({}, environ={"SPARKAE_NO_PACKAGES": "1"}, jars_dir=d42) == {}


def test_a_session_without_delta_says_so():
    from sparkae.delta import missing_delta_message

    text = ("[DATA_SOURCE_NOT_FOUND] Failed to find the data source: delta. Make sure the "
            "provider name is correct")
    message = missing_delta_message(Exception(text))
    assert "this SparkSession has no Delta Lake" in message and "3.5, 4.0, 4.1, 4.2" in message
    assert missing_delta_message(Exception("something else")) is None
