"""Shared fixtures: one local SparkSession for the whole run, seeded small data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

ROOT = Path(__file__).resolve().parents[1]
#: The official MNIST test set (IDX files) beside the checkout.
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("sparkae-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.task.maxFailures", "1")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.showConsoleProgress", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mnist_sample(spark):
    """The bundled 5,000-image sample (features: sparse vectors 0-255, label), cached."""
    from sparkae.datasets import load_mnist_sample

    df = load_mnist_sample(spark).cache()
    df.count()
    yield df
    df.unpersist()


@pytest.fixture(scope="session")
def mnist_test_paths():
    images = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    labels = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not images.exists():
        pytest.skip(f"the official MNIST test set is not at {MNIST_DIR}")
    return str(images), str(labels)


@pytest.fixture(scope="session")
def small_dense(spark):
    """400 rows of 12 correlated features (rank-3 structure plus noise), as arrays and
    vectors and columns, seeded."""
    from pyspark.ml.linalg import Vectors

    rng = np.random.default_rng(7)
    x = (rng.normal(size=(400, 3)) @ rng.normal(size=(3, 12)) +
         0.05 * rng.normal(size=(400, 12))).astype(np.float64)
    rows = [(i, Vectors.dense(r), [float(v) for v in r], *map(float, r)) for i, r in enumerate(x)]
    cols = ["id", "vec", "arr"] + [f"c{j}" for j in range(12)]
    df = spark.createDataFrame(rows, cols).repartition(2).cache()
    df.count()
    yield x, df
    df.unpersist()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """A standalone Spark master and two 1-core workers, all on 127.0.0.1; yields the master
    URL. Started with ``spark-class`` and stopped by pid at the end of the session."""
    import json
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    import pyspark

    if shutil.which("java") is None:
        pytest.skip("Java is not installed")
    home = os.path.dirname(pyspark.__file__)
    work = tmp_path_factory.mktemp("spark-cluster")
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_HOME=home,
               SPARK_LOG_DIR=str(work), PYSPARK_PYTHON=sys.executable, SPARK_NO_DAEMONIZE="1",
               # executors run the project's tools (Ray on Spark's `ray` command) from PATH
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    procs = []

    def start(name, *args):
        log = open(work / f"{name}.log", "w")
        procs.append(subprocess.Popen([os.path.join(home, "bin", "spark-class"), *args], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                      start_new_session=True))

    def alive_workers() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
                return int(json.load(r).get("aliveworkers", 0))
        except Exception:  # noqa: BLE001 - not up yet
            return 0

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
              "--port", str(port), "--webui-port", str(ui))
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        for i in range(2):
            start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                  "--cores", "1", "--memory", "3g", "--webui-port", str(_free_port()),
                  "--work-dir", str(work / f"worker{i}"), url)
        while time.time() < deadline and alive_workers() < 2:
            time.sleep(1)
        if alive_workers() < 2:
            logs = "\n".join((work / f).read_text()[-2000:] for f in ("master.log", "worker0.log"))
            pytest.fail(f"the standalone cluster did not start within 90 s:\n{logs}")
        yield url
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
