"""The train job on a standalone Spark cluster (a master and two 1-core workers on
127.0.0.1): two ranks as barrier tasks through TorchDistributor."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.cluster


def test_train_job_with_two_ranks_on_a_standalone_cluster(spark_cluster, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, SPARKAE_VENV=os.path.dirname(os.path.dirname(sys.executable)))
    proc = subprocess.run(
        ["./spark-submit.sh", "--master", spark_cluster, "--conf", "spark.executor.memory=1g",
         "jobs/train.py", "--set", "model.num_workers=2", "--set", "model.epochs=1",
         "--set", f"model.cache_dir={tmp_path / 'cache'}", "--set", f"output.dir={out}",
         "--set", "output.report=false"],   # the report is tests/test_jobs.py's
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr   # spark-submit merges the driver's stderr into stdout
    assert proc.returncode == 0, output[-5000:]
    assert "TorchDistributor (barrier mode" in output, output[-5000:]
    assert "training failed" not in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"]["train"] + summary["rows"]["validation"] == 5000
    assert summary["rows"]["scored"] == 5000 and summary["epochs"] == 1
    assert 0 < summary["validation_mse"] < 1
    assert (out / "model" / "_manifest.json").exists()
    print(output[-6000:])


_NO_CACHE_DRIVER = """
import sys
from pyspark.sql import SparkSession
from sparkae import Autoencoder
from sparkae.datasets import load_mnist_sample
spark = (SparkSession.builder.master(sys.argv[1]).config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1").config("spark.ui.enabled", "false")
         .getOrCreate())
df = load_mnist_sample(spark)
spark.sparkContext.setJobGroup("probe", "probe")
try:
    Autoencoder(epochs=1).fit(df)
except ValueError as exc:
    print("ERROR:", exc)
    print("JOBS:", len(spark.sparkContext.statusTracker().getJobIdsForGroup("probe")))
spark.stop()
"""


def test_a_cluster_fit_without_a_shared_cache_location_fails_before_any_job(spark_cluster):
    """On a non-local master the default cache (the driver's /tmp) is no place executors
    read: without cache_dir, spark.sparkae.cacheDir or checkpoint_dir the fit refuses."""
    env = dict(os.environ, SPARKAE_NO_PACKAGES="1")
    proc = subprocess.run([sys.executable, "-c", _NO_CACHE_DRIVER, spark_cluster], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert "ERROR: cache_dir: the master is spark://127.0.0.1:" in proc.stdout, \
        proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "set the cache_dir Param or the Spark conf spark.sparkae.cacheDir" in proc.stdout
    assert "JOBS: 0" in proc.stdout       # refused on the driver, before any Spark job
