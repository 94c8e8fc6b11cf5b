"""The HTML report in a real browser (headless Chromium): every figure renders, no console
errors. Skipped without Chromium, except under CI (CI=true), where that is a failure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sparkae import report
from sparkae.jobs.tune_job import leaderboard_chart
from tests.browser import assert_renders, check_page, chromium_or_skip


def _figures() -> dict:
    """One figure of every kind the train and tune reports hold."""
    rng = np.random.default_rng(0)
    history = [{"epoch": i + 1, "train_mse": 1.0 / (i + 1), "validation_mse": 1.2 / (i + 1)}
               for i in range(5)]
    rows = rng.random((6, 784))
    board = pd.DataFrame({"hidden": ["[50]", "[100]"], "train_mse": [0.02, 0.01],
                          "validation_mse": [0.03, 0.015], "status": ["ok", "ok"]})
    return {
        "Training curve": report.training_curve(history),
        "Rows and their reconstructions": report.reconstructions(rows, rows * 0.9, "rows",
                                                                 [28, 28]),
        "Worst reconstructed rows": report.reconstructions(rows[:3], rows[:3] * 0.5, "worst",
                                                           [28, 28], ["id=1", "id=2", "id=3"]),
        "Reconstruction error distribution": report.error_distribution(
            rng.exponential(size=1000), threshold=2.0),
        "Coding layer average activations": report.coding_activations(
            rng.uniform(-1, 1, 50), target=-0.1),
        "2-D codings and PCA, by label": report.codings_vs_pca(
            rng.normal(size=(300, 2)), rng.normal(size=(300, 30)), rng.integers(0, 10, 300)),
        "Tuning leaderboard": leaderboard_chart(board, True),
        "Anomaly score distribution": report.score_distribution(
            rng.exponential(size=1000), threshold=2.5, contamination=0.05),
        "Top features of the most anomalous rows": report.top_features(
            [rng.random(20) for _ in range(3)], [f"c{i}" for i in range(20)],
            ["id=1", "id=2", "id=3"], k=5),
        "Per-pixel errors of the most anomalous rows": report.error_images(
            rows[:3], rows[:3] ** 2, [28, 28], ["id=1", "id=2", "id=3"]),
    }


def test_report_renders_in_chromium(tmp_path):
    chromium = chromium_or_skip()
    figures = _figures()
    page = report.write_html(str(tmp_path / "report.html"), "sparkae training report",
                             {"epochs": 5, "threshold": 2.0}, figures)
    assert_renders(chromium, page, str(tmp_path), figures)


def test_the_browser_check_catches_broken_images_and_script_errors(tmp_path):
    chromium = chromium_or_skip()
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="broken" '
                    'src="data:image/png;base64,AAAA"><script>notDefined();</script>'
                    '</body></html>')
    check = check_page(chromium, str(page), str(tmp_path))
    assert check.images[0]["naturalWidth"] == 0
    assert any("Uncaught ReferenceError" in line for line in check.console), check.console


def test_tune_report_renders_in_chromium(tmp_path):
    chromium = chromium_or_skip()
    from sparkae.jobs.tune_job import write_report

    board = pd.DataFrame({"hidden": ["[50]", "[100]", "[7]"], "train_mse": [0.02, 0.01, None],
                          "validation_mse": [0.03, 0.015, None],
                          "status": ["ok", "ok", "error"]})
    history = [{"epoch": 1, "train_mse": 0.05, "validation_mse": 0.06},
               {"epoch": 2, "train_mse": 0.03, "validation_mse": 0.04}]
    page = write_report(str(tmp_path / "report.html"), board, {"hidden": [100]}, history, True)
    text = open(page).read()
    assert "best validation_mse" in text and "0.015" in text and "<td>1</td>" in text
    assert_renders(chromium, page, str(tmp_path),
                   ["Tuning leaderboard", "Best model: training curve"])
