"""Shared fixtures: one local SparkSession for the whole run, seeded small data, a
standalone Spark cluster and moto's S3 server (all on 127.0.0.1)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

#: Whether S3A (hadoop-aws through Ivy) and Delta Lake may be loaded: the run's SparkSession
#: loads S3A only when the run holds tests marked ``s3`` and Delta only when it holds tests
#: marked ``delta`` (test.sh runs both in a second pytest run), and the Spark apps the tests
#: start as subprocesses only where they use them (:func:`packages_env`): measured here, a
#: local session with the AWS SDK bundle fit and scored 1.5-2.5x slower while the bundle was
#: on the Python path (sparkae.io.pyfiles now takes it off).
#: The decision is kept in SPARKAE_TESTS_WANT_PACKAGES: pytest-xdist's workers inherit
#: the environment of the controller, which set SPARKAE_NO_PACKAGES=1 below.
WANT_PACKAGES = os.environ.setdefault(
    "SPARKAE_TESTS_WANT_PACKAGES",
    "0" if os.environ.get("SPARKAE_NO_PACKAGES") == "1" else "1") == "1"
os.environ["SPARKAE_NO_PACKAGES"] = "1"

ROOT = Path(__file__).resolve().parents[1]


def packages_env(env=None):
    """``env`` (default: this process's) for a subprocess Spark app that uses S3A or Delta
    (:func:`sparkae.session.get_session` adds both)."""
    out = dict(os.environ if env is None else env)
    if WANT_PACKAGES:
        out.pop("SPARKAE_NO_PACKAGES", None)
    return out
#: Test modules that start Ray on this machine (a local instance or Ray on Spark, on this
#: host or on the multi-host tests' hosts): under pytest-xdist (test.sh's runs are ``-n 2
#: --dist loadgroup``) they share one worker, so that two Ray instances never start side by
#: side. Every other module is a group of its own: its
#: module-scoped fixtures are built once, on one worker.
RAY_MODULES = {"test_tune", "test_tune_cluster", "test_guarantees", "test_examples",
               "test_multihost"}
#: Modules of the first run whose tests use the standalone test cluster (:func:`spark_cluster`,
#: session-scoped, so one per worker): one group, so that the cluster starts once for them
#: (its master and two workers are three JVM starts).
CLUSTER_MODULES = {"test_cluster", "test_faults"}


def _xdist_group(module: str) -> str:
    if module in RAY_MODULES:
        return "ray"
    return "cluster" if module in CLUSTER_MODULES else module


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Put each test in its xdist group (see :data:`RAY_MODULES` and
    :data:`CLUSTER_MODULES`); inert without xdist. ``tryfirst``: pytest-xdist's worker
    reads the marks in its own hook of this name, and a plain conftest hook runs after it
    (the groups were ignored: a module's tests spread over both workers, each building the
    module's fixtures). pyproject.toml keeps pytest below 9.2, which breaks the grouping
    in xdist itself."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid
        item.add_marker(pytest.mark.xdist_group(_xdist_group(module)))


#: The official MNIST test set (IDX files) beside the checkout.
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"


def unavailable(reason: str) -> None:
    """A test's tool or data is missing: skip it, except under CI=true (where ``.ci/run``
    provides everything), where it fails."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def listening_sockets(pids) -> set:
    """(address, port) of every TCP socket in LISTEN state owned by ``pids``."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A" or inode not in inodes:
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            if v6:
                words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                addr = str(ipaddress.IPv6Address(b"".join(words)))
            else:
                addr = ".".join(str(b) for b in raw[::-1])
            found.add((addr, int(port_hex, 16)))
    return found


def snapshot(directory):
    """{relative file: bytes} under a directory."""
    out = {}
    for base, _, files in os.walk(directory):
        for f in files:
            p = os.path.join(base, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, directory)] = fh.read()
    return out


@pytest.fixture(scope="session")
def spark(request):
    """The run's local SparkSession; with S3A (``spark.jars.packages``, resolved by Ivy from
    Maven Central once, then from ``~/.ivy2*``) when the run holds tests marked ``s3``, and
    Delta Lake (its jar and settings) when it holds tests marked ``delta``, unless
    ``SPARKAE_NO_PACKAGES=1``."""
    from pyspark.sql import SparkSession

    from sparkae.io.jars import DELTA_CONF, delta_package, s3a_packages

    builder = SparkSession.builder
    items = request.session.items
    coords = []
    if WANT_PACKAGES and any(item.get_closest_marker("s3") for item in items):
        coords.append(s3a_packages())
    if WANT_PACKAGES and any(item.get_closest_marker("delta") for item in items):
        coords.append(delta_package())
        for key, value in DELTA_CONF.items():
            builder = builder.config(key, value)
        # Delta reads its log with this many tasks (default 50): 1 is plenty for test tables
        builder = builder.config("spark.databricks.delta.snapshotPartitions", "1")
    if coords:
        builder = builder.config("spark.jars.packages", ",".join(coords))
    session = (builder.master("local[2]").appName("sparkae-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.task.maxFailures", "1")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.showConsoleProgress", "false")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    if coords:   # the packages' jars that hold no Python off the Python path, as jobs do
        from sparkae.session import prune_jar_paths

        prune_jar_paths(session)
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
    if not (images.exists() and labels.exists()):
        unavailable(f"the official MNIST test set is not at {MNIST_DIR}")
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


class ClusterURL(str):
    """A standalone master's URL that also knows the cluster's work directory (``work``):
    the folder under which its workers run their executors."""

    work: str = ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """A standalone Spark master and two 1-core workers, all on 127.0.0.1; yields the master
    URL (a :class:`ClusterURL`: ``.work`` is the cluster's folder). Started with
    ``spark-class`` and stopped by pid at the end of the session."""
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
    url = ClusterURL(f"spark://127.0.0.1:{port}")
    url.work = str(work)
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


# --- S3: moto's standalone server on 127.0.0.1 and a SparkSession whose S3A points at it ---

#: Environment the S3 clients read (pyarrow's AWS SDK, boto3; the JVM was started before).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # no AWS SDK may look for credentials or a region in EC2's instance metadata
    # (169.254.169.254): only 127.0.0.1 is ever contacted
    "AWS_EC2_METADATA_DISABLED": "true",
}


def s3a_conf(endpoint: str) -> dict:
    """The ``spark.hadoop.fs.s3a.*`` settings that point S3A at an S3 server on ``endpoint``.

    hadoop-aws 3.5.0 (AWS SDK bundle 2.35.4) needs nothing more against moto 5.2: its
    checksums, multipart uploads (5 MiB parts tried), bulk deletes and ETag change
    detection all work with the defaults.
    """
    return {
        # the server, by address: S3A would otherwise go to AWS
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        # bucket in the path (http://127.0.0.1:PORT/bucket/key): a virtual-host address
        # (bucket.127.0.0.1) does not resolve
        "spark.hadoop.fs.s3a.path.style.access": "true",
        # moto serves plain HTTP
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        # moto's default keys; moto checks no signatures, but S3A must have credentials
        "spark.hadoop.fs.s3a.access.key": "testing",
        "spark.hadoop.fs.s3a.secret.key": "testing",
        # only these keys: the default chain would end with the EC2 instance-metadata
        # provider (169.254.169.254), which no test may contact
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        # the region to sign for (moto's buckets live in us-east-1); without it S3A picks
        # one itself (us-east-2 for a third-party endpoint, or the SDK's region chain)
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
    }


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 for the run (tests/s3_server.py), with the AWS_*
    variables of :data:`S3_ENV` set in ``os.environ`` (restored after). Yields an object
    with ``endpoint`` (``http://127.0.0.1:PORT``), ``port``, ``spark_conf`` (the
    ``spark.hadoop.fs.s3a.*`` settings of :func:`s3a_conf`), ``start_seconds`` and
    ``bucket(name)``, which creates a bucket. Without moto it skips, or fails under CI=true."""
    from types import SimpleNamespace

    from tests.s3_server import MotoServer, moto_available

    if not moto_available():
        unavailable("moto's server is not installed (pip install 'moto[server]', in sparkae[dev])")
    saved = {key: os.environ.get(key) for key in S3_ENV}
    os.environ.update(S3_ENV)
    server = MotoServer()
    try:
        server.start()
        yield SimpleNamespace(endpoint=server.endpoint, port=server.port,
                              spark_conf=s3a_conf(server.endpoint), bucket=server.bucket,
                              start_seconds=server.start_seconds)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def s3_spark(spark, s3_server):
    """The run's SparkSession with S3A pointed at :func:`s3_server` (its settings set on the
    Hadoop configuration, removed after). Skips when ``SPARKAE_NO_PACKAGES=1`` left the
    session without S3A, except under CI=true."""
    if not WANT_PACKAGES and os.environ.get("CI") != "true":  # the session has no S3A
        pytest.skip("SPARKAE_NO_PACKAGES=1: this SparkSession has no S3A jars")
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    prefix = "spark.hadoop."
    keys = [key[len(prefix):] for key in s3_server.spark_conf]
    for key, value in s3_server.spark_conf.items():
        hadoop.set(key[len(prefix):], value)
    yield spark
    for key in keys:
        hadoop.unset(key)


# --- HDFS: Hadoop's MiniDFSCluster on 127.0.0.1 (tests/hdfs_server.py) ---

@pytest.fixture(scope="session")
def hdfs_server():
    """A MiniDFSCluster for the run (``uri``: ``hdfs://127.0.0.1:PORT``, ``http``: the
    NameNode's WebHDFS address); stopped by pid at the end. Fails under CI=true when it
    cannot start, skips otherwise."""
    from tests.hdfs_server import MiniHdfs

    server = MiniHdfs()
    try:
        server.start()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc)[:500])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hdfs_spark(spark, hdfs_server):
    """The run's SparkSession, with the NameNode's WebHDFS address in its Hadoop settings
    (how ranks without libhdfs reach HDFS)."""
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop.set("dfs.namenode.http-address", hdfs_server.http)
    yield spark
    hadoop.unset("dfs.namenode.http-address")


# -- scoring helpers (no Spark) --------------------------------------------------------------

VEC = pa.struct([pa.field("type", pa.int8(), False), pa.field("size", pa.int32()),
                 pa.field("indices", pa.list_(pa.int32())),
                 pa.field("values", pa.list_(pa.float64()))])


def vec_array(rows):
    """Spark's Arrow form of vectors: None, ("s", size, idx, vals) or ("d", vals)."""
    out = []
    for r in rows:
        if r is None:
            out.append(None)
        elif r[0] == "s":
            out.append({"type": 0, "size": r[1], "indices": r[2], "values": r[3]})
        else:
            out.append({"type": 1, "size": None, "indices": None, "values": r[1]})
    return pa.array(out, type=VEC)


def scoring_net(size=30, kept=None, hidden=(6, 2, 6), seed=0):
    """A seeded tanh network of input width ``size`` modelling ``kept`` features, with
    random scaling statistics and imputation, in evaluation mode (no Spark)."""
    import torch

    from sparkae.nn.models import build_network

    torch.manual_seed(seed)
    kept = kept or size
    net = build_network({"input_size": size, "kept": kept, "hidden": list(hidden),
                         "activation": "tanh"})
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(size, kept, replace=False))
    net.scaler.set_statistics(keep, rng.normal(size=kept), 0.5 + rng.random(kept),
                              rng.normal(size=size), impute=rng.normal(size=kept))
    return net.eval()


def sparse_rows(n, size, density, seed=1):
    """``n`` float32 rows of ``size`` normal values, each kept with probability
    ``density`` (the rest zero)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size)) * (rng.random((n, size)) < density)
    return x.astype(np.float32)


def sparse_block(x):
    """The scoring RowBlock of the rows ``x`` as sparse components (every row scored)."""
    from sparkae.data import arrow_rows

    r, c = np.nonzero(x)
    return arrow_rows.RowBlock(status=np.zeros(len(x), np.int8), size=x.shape[1],
                               lengths=np.bincount(r, minlength=len(x)), cols=c.astype(np.int64),
                               vals=x[r, c])
