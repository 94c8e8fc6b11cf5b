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
