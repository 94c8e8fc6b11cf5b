"""The ensemble's scores in one pass of a Python worker (what ``transform`` runs).

Each Arrow batch of input rows goes through every member's network in the same worker
(:meth:`sparkae.AutoencoderModel.batch_scorer`), and the members' terms are combined
there with NumPy (:func:`sparkae.anomaly.stats.member_term`). Scoring the members as
chained transforms instead sent every row to Python once per member, plus once more for
the terms; and since Spark runs a task's chained Python steps in concurrent workers,
each step of each task started its own Python process, which imported Torch first. On
a 367-row set the fit's one quantile job took 15 s that way. No Spark imports here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparkae.anomaly.stats import member_term
from sparkae.data.arrow_rows import encode_list
from sparkae.scoring.worker import BatchScorer, scorers_for

#: ``transform``'s outputs, in the order they are added.
ORDER = ("anomaly_score", "is_anomaly", "feature_errors", "deep_features")


def _matrix(lists: pa.Array) -> np.ndarray:
    """Equal-length lists (no nulls) as one float64 matrix, a row each."""
    values = lists.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64).reshape(len(lists), -1)


@dataclass(frozen=True)
class EnsembleScorer:
    """One pass of the ensemble over an Arrow input column.

    Attributes
    ----------
    members : tuple of BatchScorer
        Each member's call for ``reconstruction_mse`` and ``deep_features`` (and
        ``feature_errors`` when asked for).
    stats : tuple of dict
        Each member's training statistics (:func:`sparkae.anomaly.stats.member_stats`).
    outputs : tuple of str
        The columns returned, in :data:`ORDER`.
    threshold : float or None
        ``is_anomaly``'s threshold on the score (None: ``is_anomaly`` is null).
    weights : tuple of float
        Each member's weight in ``feature_errors``.
    fields : tuple of StructField
        The Spark fields of ``outputs``.
    """

    members: Tuple[Any, ...]
    stats: Tuple[Dict[str, Any], ...]
    outputs: Tuple[str, ...]
    threshold: Optional[float]
    weights: Tuple[float, ...]
    fields: Tuple[Any, ...]
    with_status: bool = False

    def __call__(self, col: pa.Array) -> Tuple[List[str], List[pa.Array]]:
        """Names and Arrow columns of :attr:`outputs` for the rows of ``col``."""
        built = [m for m in self.members if isinstance(m, BatchScorer)]
        if built:     # the members' networks, kept together in this worker's cache
            scorers_for([m.source for m in built], built[0].threads)
        n = len(col)
        total, ok = np.zeros(n), np.ones(n, dtype=bool)
        errors, first_codes = [], None
        for i, (member, st) in enumerate(zip(self.members, self.stats)):
            got = dict(zip(*member(col)))
            err, codes = got["reconstruction_mse"], got["deep_features"]
            valid = np.asarray(pc.and_(err.is_valid(), codes.is_valid())
                               .to_numpy(zero_copy_only=False), dtype=bool)
            ok &= valid
            rows = np.flatnonzero(valid)
            if rows.size:
                e = np.asarray(err.filter(pa.array(valid)).to_numpy(zero_copy_only=False),
                               dtype=np.float64)
                total[rows] += member_term(e, _matrix(codes.filter(pa.array(valid))), st)
            if i == 0:
                first_codes = codes
            if "feature_errors" in self.outputs:
                errors.append(got["feature_errors"])
        score = np.where(ok, total / max(1, len(self.members)), np.nan)
        out: Dict[str, pa.Array] = {"anomaly_score": pa.array(score, mask=~ok)}
        if "is_anomaly" in self.outputs:
            flags = score > self.threshold if self.threshold is not None else np.zeros(n, bool)
            out["is_anomaly"] = pa.array(flags, mask=~ok if self.threshold is not None
                                         else np.ones(n, dtype=bool))
        if "feature_errors" in self.outputs:
            keep = pa.array(ok)
            parts = [w * _matrix(fe.filter(keep)) for w, fe in zip(self.weights, errors)]
            combined = sum(parts[1:], parts[0]) if parts else np.zeros((int(ok.sum()), 0))
            out["feature_errors"] = encode_list(combined / max(combined.shape[1], 1), ok,
                                                pa.float64())
        if "deep_features" in self.outputs:
            out["deep_features"] = first_codes
        names = list(self.outputs)
        return names, [out[k] for k in names]


__all__ = ["EnsembleScorer", "ORDER"]
