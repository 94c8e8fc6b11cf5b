"""S3A for real: Spark's hadoop-aws and pyarrow's S3 client against moto's S3 server.

The round trips (marker ``s3``) go through the real connectors and a real HTTP server on
127.0.0.1 (tests/s3_server.py), with no mocks: Spark writes Parquet to ``s3a://`` and reads
it back, and pyarrow lists and reads the files Spark wrote. The unit tests of
:mod:`sparkae.io.jars` need neither Spark nor the server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkae.io import jars

ROWS = [(i, i * 0.25, f"row-{i}", i % 3 == 0) for i in range(40)]
COLUMNS = ["id", "x", "name", "flag"]


@pytest.fixture(scope="module")
def written(s3_spark, s3_server):
    """Spark's Parquet write of :data:`ROWS` to ``s3a://<bucket>/t``: (bucket, key prefix)."""
    bucket = s3_server.bucket("sparkae-s3a-test")
    df = s3_spark.createDataFrame(ROWS, COLUMNS).repartition(2)
    df.write.mode("overwrite").parquet(f"s3a://{bucket}/t")
    return bucket, "t"


def _sorted(rows):
    return sorted(tuple(r) for r in rows)


@pytest.mark.s3
def test_spark_parquet_round_trip_through_s3a(s3_spark, written):
    bucket, key = written
    back = s3_spark.read.parquet(f"s3a://{bucket}/{key}")
    assert back.columns == COLUMNS
    assert _sorted(back.collect()) == _sorted(ROWS)


@pytest.mark.s3
def test_pyarrow_lists_and_reads_what_spark_wrote(s3_server, written):
    import pyarrow.parquet as pq
    from pyarrow import fs

    bucket, key = written
    s3 = fs.S3FileSystem(endpoint_override=f"127.0.0.1:{s3_server.port}", scheme="http",
                         access_key="testing", secret_key="testing", region="us-east-1",
                         force_virtual_addressing=False)
    infos = s3.get_file_info(fs.FileSelector(f"{bucket}/{key}", recursive=True))
    names = sorted(Path(i.path).name for i in infos if i.type == fs.FileType.File)
    parts = [n for n in names if n.startswith("part-") and n.endswith(".parquet")]
    assert "_SUCCESS" in names
    assert len(parts) == 2, names          # repartition(2): one file a partition
    assert not any("_temporary" in i.path for i in infos)   # the commit cleaned up
    tables = [pq.read_table(f"{bucket}/{key}/{p}", filesystem=s3) for p in parts]
    rows = [tuple(r[c] for c in COLUMNS) for t in tables for r in t.to_pylist()]
    assert _sorted(rows) == _sorted(ROWS)
    whole = pq.read_table(f"{bucket}/{key}", filesystem=s3)     # the folder as a dataset
    assert whole.num_rows == len(ROWS)
    assert sorted(whole.column("id").to_pylist()) == [r[0] for r in ROWS]


@pytest.mark.s3
def test_s3a_reports_a_missing_object(s3_spark, s3_server):
    bucket = s3_server.bucket("sparkae-s3a-empty")
    with pytest.raises(Exception, match="(?i)path does not exist|not found|FileNotFound"):
        s3_spark.read.parquet(f"s3a://{bucket}/nothing-here").collect()


# --- sparkae.io.jars: no Spark, no server ---

def test_hadoop_version_reads_the_jar_names(tmp_path):
    for name in ("hadoop-client-api-3.4.1.jar", "hadoop-client-runtime-3.4.1.jar",
                 "parquet-hadoop-1.13.1.jar", "spark-core_2.13-4.0.0.jar"):
        (tmp_path / name).touch()
    assert jars.hadoop_version(str(tmp_path)) == "3.4.1"
    assert jars.s3a_packages(str(tmp_path)) == "org.apache.hadoop:hadoop-aws:3.4.1"


def test_hadoop_version_of_the_installed_pyspark():
    import pyspark

    folder = Path(pyspark.__file__).parent / "jars"
    version = jars.hadoop_version()
    assert (folder / f"hadoop-client-api-{version}.jar").exists()
    assert jars.s3a_packages() == f"org.apache.hadoop:hadoop-aws:{version}"


def test_hadoop_version_fails_clearly_without_hadoop_jars(tmp_path):
    (tmp_path / "spark-core_2.13-4.0.0.jar").touch()
    with pytest.raises(RuntimeError, match="no hadoop-client-api"):
        jars.hadoop_version(str(tmp_path))
    with pytest.raises(RuntimeError, match="cannot list"):
        jars.hadoop_version(str(tmp_path / "missing"))


@pytest.fixture
def jars43(tmp_path):
    """A Spark 4.3 jars folder (Hadoop 3.4.1): S3A only, Delta has no release for it."""
    for name in ("spark-core_2.13-4.3.0.jar", "hadoop-client-api-3.4.1.jar"):
        (tmp_path / name).write_bytes(b"")
    return str(tmp_path)


def test_with_packages_merges_without_duplicates(jars43):
    ours = jars.s3a_packages(jars43)
    on = {}

    def add(conf, environ=on):
        return jars.with_packages(conf, environ=environ, jars_dir=jars43)

    assert add({}) == {jars.PACKAGES_KEY: ours}
    assert add(None) == {jars.PACKAGES_KEY: ours}
    conf = {"spark.x": "1", jars.PACKAGES_KEY: "io.delta:delta-spark_2.13:4.0.0"}
    merged = add(conf)
    assert merged == {"spark.x": "1",
                      jars.PACKAGES_KEY: f"io.delta:delta-spark_2.13:4.0.0,{ours}"}
    assert conf[jars.PACKAGES_KEY] == "io.delta:delta-spark_2.13:4.0.0"   # not modified
    # already there, alone or in a list with blanks: once, order kept
    assert add({jars.PACKAGES_KEY: ours}) == {jars.PACKAGES_KEY: ours}
    again = add({jars.PACKAGES_KEY: f" a:b:1 , {ours},, a:b:1"})
    assert again[jars.PACKAGES_KEY] == f"a:b:1,{ours}"
    # applying twice changes nothing
    assert add(merged) == merged


def test_with_packages_keeps_the_users_hadoop_aws_version(jars43):
    mine = "org.apache.hadoop:hadoop-aws:0.0.1"
    out = jars.with_packages({jars.PACKAGES_KEY: mine}, environ={}, jars_dir=jars43)
    assert out[jars.PACKAGES_KEY] == mine


@pytest.mark.parametrize("environ", [{"SPARKAE_NO_PACKAGES": "1"},
                                     {"DATABRICKS_RUNTIME_VERSION": "15.4"}])
def test_with_packages_adds_nothing_when_off(environ):
    conf = {jars.PACKAGES_KEY: "a:b:1", "spark.x": "1"}
    assert jars.with_packages(conf, environ=environ) == conf
    assert jars.with_packages({}, environ=environ) == {}
    assert not jars.packages_enabled(environ)
    assert jars.packages_enabled({"SPARKAE_NO_PACKAGES": "0"})


def test_with_packages_reads_os_environ(monkeypatch, jars43):
    monkeypatch.setenv("SPARKAE_NO_PACKAGES", "1")
    assert jars.with_packages({}, jars_dir=jars43) == {}
    monkeypatch.delenv("SPARKAE_NO_PACKAGES")
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    assert jars.with_packages({}, jars_dir=jars43) == {
        jars.PACKAGES_KEY: jars.s3a_packages(jars43)}


def test_jars_script_prints_the_value_for_spark_submit(monkeypatch, capsys):
    monkeypatch.delenv("SPARKAE_NO_PACKAGES", raising=False)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    ours = ",".join(filter(None, [jars.s3a_packages(), jars.delta_package()]))
    assert jars._main(["packages"]) == 0
    assert capsys.readouterr().out == f"{ours}\n"
    assert jars._main(["packages", "a:b:1"]) == 0
    assert capsys.readouterr().out == f"a:b:1,{ours}\n"
    assert jars._main(["conf"]) == 0
    printed = capsys.readouterr().out
    assert printed == ("".join(f"{k}={v}\n" for k, v in jars.DELTA_CONF.items())
                       if jars.delta_package() else "")
    assert jars._main(["nope"]) == 2
    monkeypatch.setenv("SPARKAE_NO_PACKAGES", "1")
    assert jars._main(["packages", "a:b:1"]) == 0
    assert capsys.readouterr().out == "a:b:1\n"
    assert jars._main(["conf"]) == 0
    assert capsys.readouterr().out == ""

@pytest.mark.s3
def test_the_sdk_bundle_is_on_the_class_path_but_not_the_python_path(s3_spark):
    """spark.jars.packages lists S3A's jars as Python files too; the AWS SDK bundle (no
    Python) is taken off this process's path and off what the Python workers get, and
    S3A still works (the round trip above)."""
    import sys

    bundle = [p for p in s3_spark.sparkContext.getConf().get("spark.jars", "").split(",")
              if "awssdk_bundle" in p]
    assert bundle, "the session has no AWS SDK bundle on its class path"
    assert not [p for p in sys.path if "awssdk_bundle" in p]
    assert not [n for n in s3_spark.sparkContext._python_includes if "awssdk_bundle" in n]
