"""The report's figures are real PNGs made from real data, and the page holds them."""

from __future__ import annotations

import io
import re

import matplotlib.image as mpimg
import numpy as np

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
