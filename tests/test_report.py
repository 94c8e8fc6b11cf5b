"""The report's figures are real PNGs made from real data, and the page holds them."""

from __future__ import annotations

import io
import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from sparkae import report


def _is_png(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(io.BytesIO(data), format="png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img.shape


def test_every_figure_is_a_valid_png_and_the_page_inlines_them(tmp_path):
    rng = np.random.default_rng(0)
    history = [{"epoch": i + 1, "train_mse": 1.0 / (i + 1), "validation_mse": 1.2 / (i + 1)}
               for i in range(5)]
    rows = rng.random((6, 784)) * 255
    figs = {
        "curve": report.training_curve(history),
        "images": report.reconstructions(rows, rows * 0.9, "rows", [28, 28],
                                         [f"id={i}" for i in range(6)]),
        "lines": report.reconstructions(rows[:, :20], rows[:, :20], "rows"),
        "errors": report.error_distribution(rng.exponential(size=1000), threshold=2.0),
        "acts": report.coding_activations(rng.uniform(-1, 1, 50), target=-0.1),
        "codings": report.codings_vs_pca(rng.normal(size=(300, 2)), rng.normal(size=(300, 30)),
                                         rng.integers(0, 10, 300)),
    }
    shapes = [_is_png(png) for png in figs.values()]
    assert len(set(shapes)) > 1      # different figures, not one image repeated
    path = report.write_html(str(tmp_path / "r.html"), "t", {"rows": 5, "a<b": "x&y"}, figs)
    page = open(path).read()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 6
    assert "a&lt;b" in page and "x&amp;y" in page
    assert not list(tmp_path.glob("*.tmp-*"))


def test_score_distribution_png_and_the_legend_numbers():
    rng = np.random.default_rng(1)
    # robust z-scores: negative values, linear axis; errors: positive and spread, log axis
    for scores in (rng.normal(size=2000), rng.exponential(size=2000) ** 3):
        threshold = float(np.quantile(scores, 0.9))
        _is_png(report.score_distribution(scores, threshold, 0.1, "anomaly score"))
    _is_png(report.score_distribution(np.array([1.0, np.nan, np.inf, 2.0]), None))
    assert report._legend_lines(np.arange(100.0), 89.5, 0.1).split("\n") == [
        "threshold 89.5", "contamination 10.00%", "10.00% of rows above"]
    assert report._legend_lines(np.arange(100.0), 94.5, None).split("\n") == [
        "threshold 94.5", "5.00% of rows above"]


def test_rank_features_orders_names_by_error_and_skips_bad_values():
    names = ["a", "b", "c", "d"]
    ranked = report.rank_features([[0.1, 3.0, np.nan, 2.0], None, np.array([5, 5, 1, 0])],
                                  names, k=2)
    assert ranked[0] == [("b", 3.0), ("d", 2.0)]
    assert ranked[1] == []
    assert ranked[2] == [("a", 5.0), ("b", 5.0)]          # ties keep the feature order
    assert report.rank_features([[1.0, 2.0]], ["x", "y"], k=10) == [[("y", 2.0), ("x", 1.0)]]
    with pytest.raises(ValueError, match=r"k: got 0, expected an integer >= 1"):
        report.rank_features([[1.0]], ["x"], k=0)
    with pytest.raises(ValueError, match=r"row 0 has 3 values, expected one per feature "
                                         r"name \(2\)"):
        report.rank_features([[1.0, 2.0, 3.0]], ["x", "y"])


def test_feature_names_for_columns_levels_vectors_and_images():
    from sparkae.data.prepare import InputInfo

    cols = InputInfo("columns", None, ["age", "city", "income"], 4, {"city": ["NY", "SF"]})
    assert report.feature_names(cols) == ["age", "city=NY", "city=SF", "income"]
    assert report.feature_names(cols, keep=[0, 3]) == ["age", "income"]
    vec = InputInfo("vector", "features", [], 6)
    assert report.feature_names(vec) == [f"x{i}" for i in range(6)]
    assert report.feature_names(vec, image_shape=[2, 3]) == [
        "(0, 0)", "(0, 1)", "(0, 2)", "(1, 0)", "(1, 1)", "(1, 2)"]
    assert report.feature_names(vec, keep=[5], image_shape=[1, 2, 3]) == ["(1, 2)"]
    assert report.feature_names(vec, image_shape=[28, 28])[:2] == ["x0", "x1"]  # no match


def test_top_features_and_error_images_are_pngs(tmp_path):
    rng = np.random.default_rng(2)
    errs = rng.exponential(size=(10, 784))
    names = [f"({i // 28}, {i % 28})" for i in range(784)]
    figs = {"Top features of the most anomalous rows": report.top_features(
                list(errs[:9]) + [None], names, [f"id={i}" for i in range(10)], k=10),
            "one row": report.top_features([errs[0, :5]], names[:5], ["id=0"], k=3),
            "Per-pixel errors of the most anomalous rows": report.error_images(
                rng.random((4, 784)), errs[:4], [28, 28], ["a", "b", "c", "d"])}
    shapes = [_is_png(png) for png in figs.values()]
    assert shapes[0][0] > shapes[1][0]        # ten panels are taller than one
    page = open(report.write_html(str(tmp_path / "r.html"), "t", {}, figs)).read()
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 3
