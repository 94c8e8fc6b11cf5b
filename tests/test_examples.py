"""The walkthrough notebook: its two formats match, and the .ipynb runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, packages_env

sys.path.insert(0, str(ROOT / "examples"))
import build_notebooks  # noqa: E402


def test_the_two_notebooks_are_generated_from_one_source_and_match():
    proc = subprocess.run([sys.executable, "examples/build_notebooks.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with open(build_notebooks.IPYNB, encoding="utf-8") as f:
        nb = json.load(f)
    with open(build_notebooks.DATABRICKS, encoding="utf-8") as f:
        databricks = build_notebooks.parse_databricks(f.read())
    jupyter = [("md" if c["cell_type"] == "markdown" else "code", "".join(c["source"]))
               for c in nb["cells"]]
    assert jupyter == databricks == build_notebooks.CELLS
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb["cells"] if c["cell_type"] == "code"), "outputs are committed"
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))
    text = "".join(src for _, src in build_notebooks.CELLS)
    for api in ("baselines.pca", "grid_search", "deep_features", "report.reconstructions",
                "sparsity_beta", "corrupt(", "anomaly_quantile", ".inliers("):
        assert api in text, api


@pytest.mark.delta
def test_the_notebook_runs_end_to_end_on_the_sample(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("ray")
    nb = nbformat.read(build_notebooks.IPYNB, as_version=4)
    env = {"SPARKAE_EXAMPLE_EPOCHS": "1", "SPARKAE_EXAMPLE_ROWS": "1000",
           "SPARKAE_EXAMPLE_GRID": "[[16]]",   # one Ray trial: tests/test_tune.py covers more
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARKAE_EXAMPLE_LAKE": str(tmp_path / "lake")}
    for k, v in env.items():    # the kernel inherits this process's environment
        monkeypatch.setenv(k, v)
    if "SPARKAE_NO_PACKAGES" not in packages_env():   # the notebook's session gets Delta
        monkeypatch.delenv("SPARKAE_NO_PACKAGES", raising=False)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "examples")}})
    client.execute()
    wall = time.perf_counter() - t0
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for c in code for o in c.outputs
              if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) >= 5, f"{len(images)} images"
    text = "\n".join(o.get("text", "") for c in code for o in c.outputs
                     if o.output_type == "stream")
    assert "1 epochs per fit, 1000 rows" in text and "validation rows above the threshold" in text
    assert "best: {'hidden':" in text and "inliers; validation MSE" in text
    assert "2024-06-01: read version 0, wrote version 2, replaced a previous run: True" in text
    print(f"notebook executed in {wall:.0f} s")
