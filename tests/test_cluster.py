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
         "--set", f"model.cache_dir={tmp_path / 'cache'}", "--set", f"output.dir={out}"],
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
