"""Plots and the self-contained HTML report of a trained model (matplotlib, PNGs inline).

Figures follow the chapter: the training curve, rows beside their reconstructions
(images when ``image_shape`` is known, Figure 19.4), the worst reconstructed rows
(Figure 19.11), the error distribution with the anomaly threshold (Figure 19.10), the
coding units' average activations (Figures 19.5/19.6) and 2-D codings beside a 2-D PCA
of the inputs coloured by label (Figure 19.2).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from sparkae.io import fs

log = logging.getLogger("sparkae")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig: Any) -> bytes:
    """``fig`` as PNG bytes (90 dpi); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def training_curve(history: Sequence[Dict]) -> bytes:
    """Training (and validation) MSE per epoch."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_mse"] for h in history], marker="o", label="train")
    valid = [(h["epoch"], h["validation_mse"]) for h in history if h.get("validation_mse") is not None]
    if valid:
        ax.plot(*zip(*valid), marker="s", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("reconstruction MSE (scaled)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Training curve")
    return to_png(fig)


def generated_grid(rows: np.ndarray, image_shape: Sequence[int],
                   title: str = "Rows generated from prior draws") -> bytes:
    """A grid of generated rows shown as images (variational and adversarial models)."""
    plt = pyplot()
    n = len(rows)
    cols = min(8, n)
    lines = -(-n // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(1.2 * cols, 1.2 * lines + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            ax.imshow(np.asarray(rows[i]).reshape(image_shape[-2:]), cmap="gray_r")
        else:
            ax.axis("off")
    fig.suptitle(title)
    return to_png(fig)


def reconstructions(rows: np.ndarray, recon: np.ndarray, title: str,
                    image_shape: Optional[Sequence[int]] = None,
                    captions: Optional[List[str]] = None) -> bytes:
    """Rows (top) above their reconstructions (bottom): images when ``image_shape`` is
    given, line plots otherwise."""
    plt = pyplot()
    n = len(rows)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for i in range(n):
        lo, hi = float(np.min(rows[i])), float(np.max(rows[i]))
        for r, data in enumerate((rows[i], recon[i])):
            ax = axes[r][i]
            if image_shape:
                ax.imshow(np.asarray(data).reshape(image_shape[-2:]), cmap="gray_r",
                          vmin=lo, vmax=hi if hi > lo else lo + 1)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.plot(data, lw=0.8)
                ax.set_xticks([])
            if r == 0 and captions:
                ax.set_title(captions[i], fontsize=7)
    axes[0][0].set_ylabel("input")
    axes[1][0].set_ylabel("reconstruction")
    fig.suptitle(title)
    return to_png(fig)


def error_distribution(errors: np.ndarray, threshold: Optional[float] = None) -> bytes:
    """Histogram of per-row reconstruction MSE, with the anomaly threshold when set."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    errors = errors[np.isfinite(errors)]
    positive = errors[errors > 0]
    if len(positive) > 1 and positive.max() > positive.min():
        bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()), 60)
        ax.hist(positive, bins=bins, color="#4477aa")
        ax.set_xscale("log")
    else:
        ax.hist(errors, bins=60, color="#4477aa")
    if threshold is not None:
        ax.axvline(threshold, color="#cc3311", ls="--", label=f"threshold {threshold:.4g}")
        ax.legend()
    ax.set_xlabel("reconstruction MSE")
    ax.set_ylabel("rows")
    ax.set_title(f"Reconstruction errors ({len(errors)} rows)")
    return to_png(fig)


def coding_activations(acts: Sequence[float], target: Optional[float] = None) -> bytes:
    """Average activation of every coding unit (rho-hat), sorted, with the sparsity target."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = np.sort(np.asarray(acts))
    ax.bar(np.arange(len(values)), values, color="#228833")
    ax.axhline(float(np.mean(values)), color="black", lw=1, label=f"mean {np.mean(values):.3f}")
    if target is not None:
        ax.axhline(target, color="#cc3311", ls="--", label=f"target {target:g}")
    ax.set_xlabel("coding unit (sorted)")
    ax.set_ylabel("average activation")
    ax.legend()
    ax.set_title("Coding layer average activations")
    return to_png(fig)


def _two_d(x: np.ndarray) -> np.ndarray:
    if x.shape[1] == 2:
        return x
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def codings_vs_pca(codings: np.ndarray, scaled_inputs: np.ndarray, labels: np.ndarray) -> bytes:
    """2-D codings (or their first two principal components) beside a 2-D PCA of the
    scaled inputs, coloured by label."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    titles = ("autoencoder codings" if codings.shape[1] == 2 else "codings (first 2 PCs)",
              "PCA of the inputs")
    for ax, data, title in zip(axes, (_two_d(codings), _two_d(scaled_inputs)), titles):
        sc = ax.scatter(data[:, 0], data[:, 1], c=labels, cmap="tab10", s=4)
        ax.set_title(title)
    fig.colorbar(sc, ax=axes, label="label")
    return to_png(fig)


def write_html(path: str, title: str, summary_rows: Dict[str, object],
               figures: Dict[str, bytes]) -> str:
    """Write one self-contained HTML page (PNG figures inline) atomically; return the path."""
    cells = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                      for k, v in summary_rows.items())
    imgs = "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(name)}</figcaption></figure>'
        for name, png in figures.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
figure{{margin:1.5em 0}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<table>{cells}</table>
{imgs}
</body></html>
"""
    fs.write_bytes(path, page.encode(), "report")
    log.info("report written to %s", path)
    return path
