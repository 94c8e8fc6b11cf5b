"""End to end: the main job under spark-submit.sh, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd

from tests.browser import assert_renders, chromium_or_skip, find_chromium
from tests.conftest import ROOT


def _run(args, tmp_path, timeout=600):
    env = dict(os.environ, SPARKAE_VENV=os.path.dirname(os.path.dirname(sys.executable)))
    return subprocess.run(["./spark-submit.sh", "jobs/train.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_train_job_end_to_end(tmp_path):
    out = tmp_path / "out"
    proc = _run(["--set", "model.epochs=1", "--set", f"output.dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sparkae: trained [100] for 1 epochs" in proc.stdout
    assert "rows with the largest reconstruction error" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"]["train"] + summary["rows"]["validation"] == 5000
    assert summary["rows"]["scored"] == 5000 and summary["epochs"] == 1
    assert 0 < summary["validation_mse"] < 1 and len(summary["top_errors"]) == 5
    assert (out / "model" / "_manifest.json").exists()
    scored = pd.read_parquet(out / "scored")
    assert list(scored.columns) == ["id", "label", "reconstruction_mse", "deep_features"]
    assert len(scored) == 5000 and scored.id.is_unique
    assert len(scored.deep_features.iloc[0]) == 100
    assert not [p for p in os.listdir(out) if ".tmp-" in p or ".old-" in p]
    page = (out / "report.html").read_text()
    for figure in ("Training curve", "Rows and their reconstructions", "Worst reconstructed rows",
                   "Reconstruction error distribution", "Coding layer average activations",
                   "2-D codings and PCA, by label", "Top features of the most anomalous rows",
                   "Per-pixel errors of the most anomalous rows"):
        assert f'<img alt="{figure}" src="data:image/png;base64,' in page
    if find_chromium() or os.environ.get("CI", "").lower() == "true":
        figures = re.findall(r'<img alt="([^"]+)"', page)
        assert_renders(chromium_or_skip(), str(out / "report.html"), str(tmp_path), figures)


def test_job_help_and_bad_settings(tmp_path):
    proc = subprocess.run([sys.executable, "jobs/train.py", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--set SECTION.KEY=VALUE" in proc.stdout
    assert "model.hidden = [100]" in proc.stdout
    proc = subprocess.run([sys.executable, "jobs/train.py", "--set", "model.activation=sigmoid"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'activation': got 'sigmoid', expected one of 'tanh', 'tanh_with_dropout'" in proc.stderr


def test_denoising_config_with_an_anomaly_threshold(spark, tmp_path):
    """conf/denoising.yaml through the job's own function in this process (the command
    line and a Spark start of its own are test_train_job_end_to_end's)."""
    from sparkae.jobs import train_settings
    from sparkae.jobs.train_job import run_train

    out = tmp_path / "den"
    settings = train_settings.load(str(ROOT / "conf" / "denoising.yaml"), [
        "model.epochs=1", "model.hidden=[20]", "model.anomaly_quantile=0.9",
        f"output.dir={out}", "output.report=false"])    # the report is the end-to-end test's
    run_train(spark, settings)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] > 0 and summary["validation_mse"] > 0
    scored = pd.read_parquet(out / "scored")
    assert "is_anomaly" in scored.columns
    # the threshold is the 0.9 quantile of errors on the *noisy* training copy: the clean
    # rows reconstruct better, so far fewer than 10% of them exceed it
    assert scored.is_anomaly.mean() < 0.05
    assert scored.reconstruction_mse.quantile(0.9) < summary["threshold"]
