"""Plots and the self-contained HTML report of a trained model (matplotlib, PNGs inline).

Figures follow the chapter: the training curve, rows beside their reconstructions
(images when ``image_shape`` is known, Figure 19.4), the worst reconstructed rows
(Figure 19.11), the error distribution with the anomaly threshold (Figure 19.10), the
coding units' average activations (Figures 19.5/19.6) and 2-D codings beside a 2-D PCA
of the inputs coloured by label (Figure 19.2). For anomaly detection: the score
distribution with the threshold, its contamination and the share of rows above it, and
the features that contribute most to the error of the most anomalous rows
(:func:`rank_features` gives them as data, :func:`top_features` draws them, and
:func:`error_images` maps image rows' per-pixel errors).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def _legend_lines(scores: np.ndarray, threshold: float,
                  contamination: Optional[float]) -> str:
    above = float(np.mean(scores > threshold)) if len(scores) else 0.0
    parts = [f"threshold {threshold:.4g}"]
    if contamination is not None:
        parts.append(f"contamination {contamination:.2%}")
    parts.append(f"{above:.2%} of rows above")
    return "\n".join(parts)


def score_distribution(scores: np.ndarray, threshold: Optional[float] = None,
                       contamination: Optional[float] = None,
                       label: str = "anomaly score") -> bytes:
    """Histogram of per-row scores with the anomaly threshold.

    Parameters
    ----------
    scores : ndarray
        One score per row (non-finite values are left out).
    threshold : float, optional
        Drawn as a dashed line; the legend names it, ``contamination`` (when given) and the
        share of rows actually above it.
    contamination : float, optional
        The expected share of anomalies the threshold was set for (e.g. PyOD's
        ``contamination``, or ``1 - anomaly_quantile``).
    label : str, default "anomaly score"
        What the scores are (the x axis and the title).

    Returns
    -------
    bytes
        The figure as PNG. The x axis is logarithmic when no score is negative and the
        positive ones span more than a factor of 10 (zeros then fall in the first bin).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    scores = np.asarray(scores, dtype=np.float64).ravel()
    scores = scores[np.isfinite(scores)]
    positive = scores[scores > 0]
    if len(positive) > 1 and scores.min() >= 0 and positive.max() > 10 * positive.min():
        bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()), 60)
        ax.hist(np.maximum(scores, positive.min()), bins=bins, color="#4477aa")
        ax.set_xscale("log")
    else:
        ax.hist(scores, bins=60, color="#4477aa")
    if threshold is not None:
        ax.axvline(threshold, color="#cc3311", ls="--",
                   label=_legend_lines(scores, threshold, contamination))
        ax.legend(fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel("rows")
    ax.set_title(f"{label[:1].upper()}{label[1:]} distribution ({len(scores)} rows)")
    return to_png(fig)


def error_distribution(errors: np.ndarray, threshold: Optional[float] = None,
                       contamination: Optional[float] = None) -> bytes:
    """Histogram of per-row reconstruction MSE, with the anomaly threshold when set
    (:func:`score_distribution` of the errors)."""
    return score_distribution(errors, threshold, contamination, "reconstruction MSE")


def feature_names(info: Any, keep: Optional[Sequence[int]] = None,
                  image_shape: Optional[Sequence[int]] = None) -> List[str]:
    """Names of a model's features, in the order of its ``feature_errors``.

    Parameters
    ----------
    info : sparkae.data.prepare.InputInfo
        The model's input (``AutoencoderModel.input_info``): ``features_cols`` give their
        names (a string column one ``"col=level"`` per one-hot level).
    keep : sequence of int, optional
        The input positions the network models (its scaler's ``keep``); None: all.
    image_shape : sequence of int, optional
        Vector input of ``prod(image_shape)`` features is named by pixel, ``"(row, col)"``;
        otherwise ``"x{i}"`` (the input position).
    """
    if info.kind == "columns":
        names: List[str] = []
        for c in info.columns:
            names += [f"{c}={lv}" for lv in info.levels[c]] if c in info.levels else [c]
    elif image_shape and int(np.prod(image_shape)) == info.size:
        h, w = int(image_shape[-2]), int(image_shape[-1])
        names = [f"({(i // w) % h}, {i % w})" for i in range(info.size)]
    else:
        names = [f"x{i}" for i in range(info.size)]
    return names if keep is None else [names[int(i)] for i in keep]


def rank_features(feature_errors: Sequence[Optional[Sequence[float]]],
                  names: Sequence[str], k: int = 10) -> List[List[Tuple[str, float]]]:
    """Each row's ``k`` largest per-feature error contributions, largest first.

    Parameters
    ----------
    feature_errors : sequence of array-like
        One row of per-feature errors per row (None for a row without, e.g. not scored).
    names : sequence of str
        The features' names (as :func:`feature_names`), one per column of a row.
    k : int, default 10
        Features per row.

    Returns
    -------
    list of list of (str, float)
        Per row, ``(name, error)`` pairs by decreasing error (non-finite errors left out).

    Raises
    ------
    ValueError
        ``k`` is not a positive integer, or a row's width differs from ``len(names)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: got {k!r}, expected an integer >= 1")
    out = []
    for i, row in enumerate(feature_errors):
        if row is None:
            out.append([])
            continue
        err = np.asarray(row, dtype=np.float64).ravel()
        if len(err) != len(names):
            raise ValueError(f"feature_errors: row {i} has {len(err)} values, expected one per "
                             f"feature name ({len(names)})")
        ok = np.flatnonzero(np.isfinite(err))
        top = ok[np.argsort(-err[ok], kind="stable")[:k]]
        out.append([(str(names[j]), float(err[j])) for j in top])
    return out


def top_features(rows_feature_errors: Sequence[Optional[Sequence[float]]],
                 feature_names: Sequence[str], row_labels: Sequence[str],
                 k: int = 10) -> bytes:
    """Horizontal bars of each row's ``k`` largest per-feature errors, naming the features
    (one panel per row, in the given order: pass the most anomalous rows first).

    Parameters
    ----------
    rows_feature_errors : sequence of array-like
        Per-feature errors of each row (e.g. the ``feature_errors`` output).
    feature_names : sequence of str
        One name per feature (see :func:`feature_names`).
    row_labels : sequence of str
        A caption per row (its id and score).
    k : int, default 10
        Features per row.

    Returns
    -------
    bytes
        The figure as PNG; each panel's title gives the share of the row's error its
        ``k`` features hold.
    """
    ranked = rank_features(rows_feature_errors, feature_names, k)
    plt = pyplot()
    n = max(1, len(ranked))
    cols = 1 if n == 1 else 2
    lines = -(-n // cols)
    depth = max(len(r) for r in ranked) if ranked and any(ranked) else 1
    fig, axes = plt.subplots(lines, cols, figsize=(5.5 * cols, (0.22 * depth + 0.9) * lines),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(ranked) or not ranked[i]:
            ax.axis("off")
            continue
        names, values = zip(*ranked[i])
        total = float(np.nansum(np.asarray(rows_feature_errors[i], dtype=np.float64)))
        share = sum(values) / total if total > 0 else float("nan")
        ax.barh(np.arange(len(values)), values, color="#cc6677")
        ax.set_yticks(np.arange(len(values)))
        ax.set_yticklabels(names, fontsize=7)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{row_labels[i]}: top {len(values)} = {share:.0%} of its error",
                     fontsize=8)
    fig.suptitle("Largest per-feature error contributions of the most anomalous rows")
    fig.tight_layout()
    return to_png(fig)


def error_images(rows: np.ndarray, errors: np.ndarray, image_shape: Sequence[int],
                 captions: Optional[List[str]] = None) -> bytes:
    """Image rows (top) above their per-pixel squared errors as heat maps (bottom).

    ``errors`` has the rows' full input width (a pixel the network leaves out is 0).
    """
    plt = pyplot()
    n = len(rows)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    shape = tuple(int(v) for v in image_shape[-2:])
    for i in range(n):
        for r, (data, cmap) in enumerate(((rows[i], "gray_r"), (errors[i], "hot"))):
            ax = axes[r][i]
            ax.imshow(np.asarray(data, dtype=np.float64).reshape(shape), cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and captions:
                ax.set_title(captions[i], fontsize=7)
    axes[0][0].set_ylabel("input")
    axes[1][0].set_ylabel("squared error")
    fig.suptitle("Where the most anomalous rows are reconstructed worst")
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


def codings_vs_pca(codings: np.ndarray, scaled_inputs: np.ndarray, labels: np.ndarray,
                   pca_title: str = "PCA of the inputs") -> bytes:
    """2-D codings (or their first two principal components) beside a 2-D PCA of the
    scaled inputs, coloured by label (``pca_title`` names the right panel)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    titles = ("autoencoder codings" if codings.shape[1] == 2 else "codings (first 2 PCs)",
              pca_title)
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
