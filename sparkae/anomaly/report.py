"""The HTML report of a fitted :class:`~sparkae.anomaly.AnomalyDetectorModel` on a table.

It scores a seeded sample (never collects the table) and shows the distribution of
``anomaly_score`` with the model's threshold and ``contamination``, the features that
contribute most to the error of the highest-scoring rows (from the ``feature_errors``
output), per-pixel errors when the rows are images, and a summary table.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

import sparkae.report as report

log = logging.getLogger(__name__)

SCORE_FIGURE = "Anomaly score distribution"
TOP_FIGURE = "Top features of the most anomalous rows"
PIXEL_FIGURE = "Per-pixel errors of the most anomalous rows"


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: got {value!r}, expected an integer >= 1")
    return value


def detector_feature_names(model: Any, image_shape: Optional[Sequence[int]] = None
                           ) -> List[str]:
    """Names of the features in the model's ``feature_errors``, in order: the
    ``features_cols`` (a string column one ``"col=level"`` per level), pixels
    ``"(row, col)"`` when ``image_shape`` matches the input width, else ``"x{i}"``."""
    first = model.members[0]
    keep = first.network().scaler.keep.numpy()
    return report.feature_names(first.input_info, keep, image_shape)


def top_rows_features(model: Any, df: DataFrame, top_rows: int = 10, k: int = 10,
                      id_col: Optional[str] = None,
                      image_shape: Optional[Sequence[int]] = None
                      ) -> Tuple[List[Any], List[str]]:
    """The ``top_rows`` highest-scoring rows of ``df`` with their ``feature_errors``
    (one Spark ``takeOrdered``: only those rows reach the driver) and the feature names.

    Returns
    -------
    rows : list of pyspark.sql.Row
        By decreasing ``anomaly_score``; each has ``anomaly_score``, ``feature_errors``,
        the input column(s) and ``id_col`` when given.
    names : list of str
        See :func:`detector_feature_names`.
    """
    _positive_int(top_rows, "top_rows")
    _positive_int(k, "k")
    if id_col is not None and id_col not in df.columns:
        raise ValueError(f"id_col: column '{id_col}' not found; the DataFrame has "
                         f"{', '.join(df.columns)}")
    cols = model.getOrDefault("features_cols") or [model.getOrDefault("features_col")]
    keep = ([id_col] if id_col and id_col not in cols else []) + list(cols)
    scored = model.score(df.select(*[F.col(f"`{c}`") for c in keep]),
                         ["anomaly_score", "feature_errors"])
    rows = scored.orderBy(F.desc("anomaly_score")).limit(top_rows).collect()
    return rows, detector_feature_names(model, image_shape)


def ranked_top_features(model: Any, df: DataFrame, top_rows: int = 10, k: int = 10,
                        id_col: Optional[str] = None,
                        image_shape: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
    """The ``top_rows`` highest-scoring rows of ``df`` and the ``k`` features that
    contribute most to each one's error, as data (what the report's panel draws).

    Returns
    -------
    list of dict
        By decreasing score: ``row`` (the ``id_col`` value, or the rank from 1),
        ``anomaly_score``, and ``features``: ``(name, error)`` pairs, largest first
        (:func:`sparkae.report.rank_features` of the ``feature_errors`` output).
    """
    rows, names = top_rows_features(model, df, top_rows, k, id_col, image_shape)
    ranked = report.rank_features([r["feature_errors"] for r in rows], names, k)
    return [{"row": r[id_col] if id_col else i + 1, "anomaly_score": r["anomaly_score"],
             "features": feats} for i, (r, feats) in enumerate(zip(rows, ranked))]


def write_report(model: Any, df: DataFrame, path: str, top_rows: int = 10,
                 sample_rows: int = 100_000, k: int = 10, id_col: Optional[str] = None,
                 image_shape: Optional[Sequence[int]] = None) -> str:
    """Score a sample of ``df`` and write a self-contained HTML report to ``path``.

    Parameters
    ----------
    model : AnomalyDetectorModel
        A fitted detector.
    df : DataFrame
        Rows with the model's input column(s).
    path : str
        Where the page goes: a local path or any URI :mod:`sparkae.io` reaches (written
        atomically).
    top_rows : int, default 10
        The highest-scoring rows of the sample whose top features are shown.
    sample_rows : int, default 100000
        About how many rows are scored for the distribution (a seeded sample of larger
        tables; only their scores reach the driver).
    k : int, default 10
        Features shown per row.
    id_col : str, optional
        A column that names the rows in the figures (default: their rank).
    image_shape : sequence of int, optional
        For image rows (e.g. ``[28, 28]``): name features by pixel and add the per-pixel
        error maps of the top rows.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        ``top_rows``, ``sample_rows`` or ``k`` is not a positive integer, ``id_col`` is not
        a column, or ``df`` has no rows.
    """
    _positive_int(top_rows, "top_rows")
    _positive_int(sample_rows, "sample_rows")
    _positive_int(k, "k")
    if not isinstance(path, str) or not path:
        raise ValueError(f"path: got {path!r}, expected a non-empty path or URI")
    n = df.count()
    if n == 0:
        raise ValueError("df: the DataFrame has no rows to report on")
    frac = min(1.0, sample_rows / n)
    sample = df if frac >= 1.0 else df.sample(fraction=frac, seed=model.getOrDefault("seed"))
    cols = model.getOrDefault("features_cols") or [model.getOrDefault("features_col")]
    scores = (model.score(sample.select(*[F.col(f"`{c}`") for c in cols]), ["anomaly_score"])
              .select("anomaly_score").toPandas().anomaly_score.to_numpy(dtype=np.float64))
    threshold, contamination = model.threshold, model.getOrDefault("contamination")
    figures: Dict[str, bytes] = {SCORE_FIGURE: report.score_distribution(
        scores, threshold, contamination, "anomaly score")}
    rows, names = top_rows_features(model, sample, top_rows, k, id_col, image_shape)
    labels = [f"{id_col}={r[id_col]}" if id_col else f"#{i + 1}" for i, r in enumerate(rows)]
    errs = [r["feature_errors"] for r in rows]
    figures[TOP_FIGURE] = report.top_features(
        errs, names, [f"{lb} (score {r['anomaly_score']:.3g})" for lb, r in zip(labels, rows)],
        k)
    width = model.members[0].input_size
    feat = model.getOrDefault("features_col")
    if image_shape and int(np.prod(image_shape)) == width and \
            not model.getOrDefault("features_cols") and rows:
        figures[PIXEL_FIGURE] = _pixel_errors(model, rows, errs, feat, image_shape, labels)
    finite = scores[np.isfinite(scores)]
    flagged = float(np.mean(finite > threshold)) if len(finite) and threshold is not None \
        else float("nan")
    info = model.fit_info
    summary = {"rows": n, "rows scored for this report": len(scores),
               "threshold": f"{threshold:.6g}" if threshold is not None else "-",
               "contamination": contamination,
               "share flagged (scored rows)": f"{flagged:.2%}",
               "members": len(model.members),
               "architectures": info.get("architectures", "-")}
    log.info("anomaly report: %d of %d rows scored, %.2f%% above the threshold", len(scores),
             n, 100 * flagged)
    return report.write_html(path, "sparkae anomaly detection report", summary, figures)


def _pixel_errors(model: Any, rows: List[Any], errs: List[Any], feat: str,
                  image_shape: Sequence[int], labels: List[str]) -> bytes:
    width = model.members[0].input_size
    keep = model.members[0].network().scaler.keep.numpy()
    x = np.zeros((len(rows), width), dtype=np.float64)
    full = np.zeros((len(rows), width), dtype=np.float64)
    for i, (r, e) in enumerate(zip(rows, errs)):
        v = r[feat]
        if v is not None:
            x[i] = np.asarray(v.toArray() if hasattr(v, "toArray") else v, dtype=np.float64)
        if e is not None:
            full[i, keep] = e
    return report.error_images(x, full, image_shape, labels)
