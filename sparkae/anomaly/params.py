"""Params of :class:`~sparkae.anomaly.AnomalyDetector` and their driver-side validation.

Each Param is declared once with its default; :func:`validate` checks every value before
any Spark job and raises :class:`ValueError` naming the Param, the value found and what
is allowed (scikit-learn's style).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional

from pyspark.ml.param import Param, Params, TypeConverters

from sparkae.spark_private import dummy_parent

#: Columns ``transform`` can add (``outputs``).
OUTPUTS = ("anomaly_score", "is_anomaly", "feature_errors", "deep_features")

#: The defaults, declared once (the research behind them: ``bench/anomaly_research.py``).
DEFAULTS: Dict[str, Any] = {
    "features_col": "features",
    "features_cols": None,
    "contamination": 0.1,          # PyOD's default
    "n_estimators": 5,
    "max_samples": 20_000,
    "epoch_num": 10,
    "min_steps": 500,
    "batch_size": 64,
    "lr": 0.001,
    "inlier_quantile": None,
    "n_clusters": "auto",          # PyOD's name (CBLOF); "auto": sqrt(rows / 2), 2-100
    "seed": 0,
    "num_workers": 1,
    "outputs": ["anomaly_score", "is_anomaly"],
}


def _p(name: str, doc: str, conv: Any = TypeConverters.identity) -> Param:
    return Param(dummy_parent(), name, doc, typeConverter=conv)


class AnomalyDetectorParams(Params):
    """The Params shared by :class:`AnomalyDetector` and :class:`AnomalyDetectorModel`."""

    features_col = _p("features_col", "input column: a vector (dense or sparse) or an "
                      "array<float|double> column", TypeConverters.toString)
    features_cols = _p("features_cols", "input columns used instead of features_col: numeric "
                       "(nulls become the training mean) or string (one-hot, every level)")
    contamination = _p("contamination", "expected share of anomalies, in (0, 0.5]: the "
                       "threshold is the (1 - contamination) quantile of the training scores")
    n_estimators = _p("n_estimators", "autoencoders in the ensemble (widths and depths vary "
                      "with the member)")
    max_samples = _p("max_samples", "rows each member trains on (a seeded sample when the "
                     "input has more): an integer >= 2, or a share in (0, 1]")
    epoch_num = _p("epoch_num", "passes over each member's training rows (raised to reach "
                   "min_steps gradient steps on small data)")
    min_steps = _p("min_steps", "fewest gradient steps per member (0: exactly epoch_num)")
    batch_size = _p("batch_size", "rows per gradient step")
    lr = _p("lr", "Adam's learning rate")
    inlier_quantile = _p("inlier_quantile", "retrain each member on the rows whose error is "
                         "within this quantile of its first fit's errors (None: one fit)")
    n_clusters = _p("n_clusters", "k-means centres of each member's standardised codings: "
                    "the score's distance to the nearest centre; 'auto' (sqrt(rows / 2) of "
                    "the rows the statistics come from, 2 to 100) or an integer (0: no such "
                    "term)")
    seed = _p("seed", "random seed of the sample, the members' architectures and weights")
    num_workers = _p("num_workers", "training ranks of each member (Autoencoder's num_workers)")
    outputs = _p("outputs", f"columns transform adds, any of {', '.join(OUTPUTS)}")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(**DEFAULTS)

    def param_values(self) -> Dict[str, Any]:
        """Every Param's current value (set or default) by name."""
        return {p.name: self.getOrDefault(p) for p in self.params if self.isDefined(p)}


def _int(low: int) -> Callable[[Any], Optional[str]]:
    def rule(v: Any) -> Optional[str]:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
        return None if ok else f"an integer >= {low}"
    return rule


def _positive(v: Any) -> Optional[str]:
    ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
          and v > 0)
    return None if ok else "a finite number > 0"


def _contamination(v: Any) -> Optional[str]:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 0.5
    return None if ok else "a number in (0, 0.5]"


def _max_samples(v: Any) -> Optional[str]:
    if isinstance(v, bool):
        return "an integer >= 2 or a share in (0, 1]"
    if isinstance(v, int):
        return None if v >= 2 else "an integer >= 2 or a share in (0, 1]"
    if isinstance(v, float) and 0 < v <= 1:
        return None
    return "an integer >= 2 or a share in (0, 1]"


def _inlier_quantile(v: Any) -> Optional[str]:
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0.5 <= v < 1
    return None if ok else "None or a number in [0.5, 1)"


def _clusters(v: Any) -> Optional[str]:
    if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        return None
    return "'auto' or an integer >= 0"


def _name(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and v else "a non-empty column name"


def _names(v: Any) -> Optional[str]:
    if v is None:
        return None
    ok = (isinstance(v, (list, tuple)) and len(v) > 0
          and all(isinstance(c, str) and c for c in v) and len(set(v)) == len(v))
    return None if ok else "None or a non-empty list of distinct column names"


def _outputs(v: Any) -> Optional[str]:
    ok = (isinstance(v, (list, tuple)) and len(v) > 0 and all(o in OUTPUTS for o in v))
    return None if ok else "a non-empty list of " + ", ".join(repr(o) for o in OUTPUTS)


def _seed(v: Any) -> Optional[str]:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2 ** 31
    return None if ok else "an integer in [0, 2**31)"


RULES: Dict[str, Callable[[Any], Optional[str]]] = {
    "features_col": _name,
    "features_cols": _names,
    "contamination": _contamination,
    "n_estimators": _int(1),
    "max_samples": _max_samples,
    "epoch_num": _int(1),
    "min_steps": _int(0),
    "batch_size": _int(1),
    "lr": _positive,
    "inlier_quantile": _inlier_quantile,
    "n_clusters": _clusters,
    "seed": _seed,
    "num_workers": _int(1),
    "outputs": _outputs,
}


def validate(values: Dict[str, Any]) -> None:
    """Check Param values (any subset, by name).

    Raises
    ------
    TypeError
        An unknown Param name.
    ValueError
        A value outside what the Param allows; the message names the Param, the value
        found and what is allowed.
    """
    for name, value in values.items():
        rule = RULES.get(name)
        if rule is None:
            import difflib

            close = difflib.get_close_matches(name, list(RULES), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise TypeError(f"AnomalyDetector got an unknown Param '{name}'{hint} Params: "
                            + ", ".join(sorted(RULES)))
        allowed = rule(value)
        if allowed is not None:
            raise ValueError(f"{name}: got {value!r}, expected {allowed}")
