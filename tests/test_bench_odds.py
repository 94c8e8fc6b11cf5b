"""The ODDS entry's reader (bench/bench_anomaly_odds.py): ODDS's .mat files and .npz sets
are read with their labels, other files are left out, and ODDS's shuttle recipe keeps the
rows and anomalies ODDS lists (class 4 dropped, classes other than 1 anomalous)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench_anomaly_odds as odds  # noqa: E402
from bench import common  # noqa: E402


def test_odds_shuttle_recipe_drops_class_4_and_marks_the_rare_classes():
    label = np.array([1, 1, 2, 3, 4, 4, 5, 6, 7, 1])
    x = np.arange(len(label) * 9, dtype=np.float64).reshape(-1, 9)
    out = odds.odds_shuttle(x, label)
    assert out["X"].shape == (8, 9)
    assert out["y"].tolist() == [0, 0, 1, 1, 1, 1, 1, 0]
    np.testing.assert_array_equal(out["X"][2], x[2])


def test_load_sets_reads_mat_and_npz_and_leaves_out_other_files(tmp_path, caplog):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = np.zeros((40, 1))
    y[:4] = 1
    savemat(tmp_path / "alpha.mat", {"X": x, "y": y})
    np.savez(tmp_path / "beta.npz", X=x[:30], y=y[:30].ravel())
    (tmp_path / "broken.mat").write_text("<html>not a MAT file</html>")
    np.savez(tmp_path / "nolabels.npz", X=x)
    np.savez(tmp_path / "allnormal.npz", X=x, y=np.zeros(40))
    (tmp_path / "notes.txt").write_text("ignored")
    sets = odds.load_sets(str(tmp_path))
    assert [s["name"] for s in sets] == ["alpha", "beta"]
    a, b = sets
    np.testing.assert_allclose(a["x"], x)
    assert a["y"].dtype == bool and a["anomalies"] == 4 and (a["rows"], a["columns"]) == (40, 3)
    assert b["rows"] == 30 and b["anomalies"] == 4 and len(b["sha256"]) == 64
    for name in ("broken.mat", "nolabels.npz", "allnormal.npz"):
        assert name in caplog.text


def test_run_without_the_folder_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARKAE_ODDS_DIR", str(tmp_path / "absent"))
    with pytest.raises(common.Skip, match="SPARKAE_ODDS_DIR"):
        odds.run(quick=True)
    monkeypatch.setenv("SPARKAE_ODDS_DIR", str(tmp_path))
    with pytest.raises(common.Skip, match="no ODDS set"):
        odds.run(quick=True)
