"""A member's training statistics in NumPy, on the driver (no Spark imports).

:class:`sparkae.anomaly.AnomalyDetector` scores a seeded sample of its training rows with
each member, collects their ``reconstruction_mse`` and codings (at most
``STATS_ROWS`` rows, a few MB) and computes here what the member's score needs: the mean
and standard deviation of each coding unit, the k-means centres of the standardised
codings, and the median and robust scale of each score term. One Spark job per member
instead of one per statistic and one per k-means iteration: on small tables a fit spent most
of its time in those jobs (measured on 300 rows, 2 members: 13.7 s warm, 29.5 s cold, of
which the k-means jobs alone took 2-4.6 s a member).

At scoring time :func:`member_term` applies them to each Arrow batch of rows, in the
Python workers (:class:`sparkae.anomaly.ensemble.EnsembleScorer`, all members in one
pass). Spark SQL higher-order functions over the codings (``transform``/``zip_with``
per centre), the first way, are interpreted per element: scoring 100,000 rows with five
64-unit members ran for over 9 minutes on one core without finishing.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

__all__ = ["auto_centres", "as_matrix", "moments", "standardize", "code_distance", "kmeans",
           "centre_distance", "robust", "member_stats", "member_term"]

#: A coding unit whose training standard deviation is at most this is not scaled.
MIN_SD = 1e-12
#: Most k-means centres ``n_clusters="auto"`` gives.
MAX_AUTO_CENTRES = 100


def auto_centres(rows: int) -> int:
    """k-means centres for ``rows`` rows under ``n_clusters="auto"``: sqrt(rows / 2), the
    classic rule of thumb (Mardia, Kent and Bibby 1979), at least 2 and at most
    :data:`MAX_AUTO_CENTRES`."""
    return int(min(MAX_AUTO_CENTRES, max(2, round(math.sqrt(rows / 2)))))


def as_matrix(rows: Iterable[Sequence[float]]) -> np.ndarray:
    """Equal-length arrays (an array column's values, as pandas holds them) as one
    float64 matrix, a row each."""
    return np.stack([np.asarray(v, dtype=np.float64) for v in rows])


def moments(codes: np.ndarray) -> Tuple[List[float], List[float]]:
    """Each coding unit's mean and sample standard deviation (``ddof=1``, as Spark's
    ``stddev``); a unit with a standard deviation of at most :data:`MIN_SD` (or a single
    row) gets 1."""
    mean = codes.mean(axis=0)
    sd = codes.std(axis=0, ddof=1) if len(codes) > 1 else np.zeros(codes.shape[1])
    sd = np.where(np.isfinite(sd) & (sd > MIN_SD), sd, 1.0)
    return [float(v) for v in mean], [float(v) for v in sd]


def standardize(codes: np.ndarray, mean: List[float], sd: List[float]) -> np.ndarray:
    """The codings as z-scores, ``(code - mean) / sd`` per unit."""
    return (codes - np.asarray(mean)) * (1.0 / np.asarray(sd))


def code_distance(codes: np.ndarray, mean: List[float], sd: List[float]) -> np.ndarray:
    """Each row's mean over coding units of its squared z-score."""
    return (standardize(codes, mean, sd) ** 2).mean(axis=1)


def _sq_dist(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Rows x centres squared Euclidean distances (by the expansion
    ``|z|^2 - 2 z.c + |c|^2``: no rows x centres x units array)."""
    d = (z * z).sum(axis=1)[:, None] - 2.0 * (z @ centres.T) + (centres * centres).sum(axis=1)
    return np.maximum(d, 0.0)


def kmeans(z: np.ndarray, k: int, seed: int, max_iter: int = 20,
           tol: float = 1e-4) -> List[List[float]]:
    """Seeded k-means (k-means++ seeding, then Lloyd's iterations).

    Parameters
    ----------
    z : ndarray of shape (rows, units)
        The points (standardised codings).
    k : int
        Centres wanted; fewer when ``z`` has fewer distinct rows (then each distinct row
        is a centre).
    seed : int
        Seeds the k-means++ draws.
    max_iter : int, default 20
        Most Lloyd iterations.
    tol : float, default 1e-4
        Stop once no centre moves farther than this.

    Returns
    -------
    list of list of float
        The centres.
    """
    distinct = np.unique(z, axis=0)
    if len(distinct) <= k:
        return distinct.tolist()
    rng = np.random.default_rng(seed)
    centres = [z[rng.integers(len(z))]]
    nearest = ((z - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = nearest.sum()
        pick = rng.choice(len(z), p=nearest / total) if total > 0 else rng.integers(len(z))
        centres.append(z[pick])
        nearest = np.minimum(nearest, ((z - z[pick]) ** 2).sum(axis=1))
    c = np.stack(centres)
    for _ in range(max_iter):
        label = _sq_dist(z, c).argmin(axis=1)
        moved = c.copy()
        for j in range(k):
            members = z[label == j]
            if len(members):
                moved[j] = members.mean(axis=0)
        shift = np.sqrt(((moved - c) ** 2).sum(axis=1)).max()
        c = moved
        if shift <= tol:
            break
    return c.tolist()


def centre_distance(z: np.ndarray, centres: List[List[float]]) -> np.ndarray:
    """Each row's squared Euclidean distance to the nearest of ``centres``."""
    return _sq_dist(z, np.asarray(centres, dtype=np.float64)).min(axis=1)


def robust(values: np.ndarray) -> Tuple[float, float]:
    """Median and IQR / 1.349 (a robust standard deviation); the scale falls back to the
    standard deviation, then 1."""
    q25, med, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    scale = (q75 - q25) / 1.349
    if not scale > 0:
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        scale = sd if sd > 0 else 1.0
    return float(med), float(scale)


def member_stats(errors: np.ndarray, codes: np.ndarray, clusters: Union[int, str],
                 seed: int) -> Dict[str, object]:
    """Everything a member's score needs, from its training rows' ``reconstruction_mse``
    (``errors``, shape (rows,)) and codings (``codes``, shape (rows, units)); ``clusters``
    is the ``n_clusters`` Param (``"auto"``: :func:`auto_centres` of the rows).

    Returns
    -------
    dict
        ``code_mean``, ``code_sd``, and the median and robust scale of the error
        (``error_median``, ``error_scale``) and of the code distance (``distance_*``); with
        ``clusters`` > 0 also ``centres`` (at most ``clusters``) and the median and robust
        scale of the distance to the nearest centre (``centre_*``).
    """
    codes = np.asarray(codes, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    mean, sd = moments(codes)
    e_med, e_scale = robust(errors)
    d_med, d_scale = robust(code_distance(codes, mean, sd))
    out: Dict[str, object] = {"error_median": e_med, "error_scale": e_scale,
                              "code_mean": mean, "code_sd": sd, "distance_median": d_med,
                              "distance_scale": d_scale}
    if clusters == "auto":
        clusters = auto_centres(len(codes))
    if clusters > 0:
        z = standardize(codes, mean, sd)
        centres = kmeans(z, clusters, seed)
        c_med, c_scale = robust(centre_distance(z, centres))
        out.update(centres=centres, centre_median=c_med, centre_scale=c_scale)
    return out


def member_term(errors: np.ndarray, codes: np.ndarray, st: Dict[str, object]) -> np.ndarray:
    """A member's part of ``anomaly_score`` for each row: the robust z-scores of its
    ``reconstruction_mse`` (``errors``), of its code distance and, when ``st`` has centres,
    of its squared distance to the nearest centre, added (``st``: :func:`member_stats`)."""
    mean, sd = st["code_mean"], st["code_sd"]
    term = ((np.asarray(errors, dtype=np.float64) - st["error_median"]) / st["error_scale"]
            + (code_distance(codes, mean, sd) - st["distance_median"]) / st["distance_scale"])
    if st.get("centres"):
        z = standardize(codes, mean, sd)
        term = term + ((centre_distance(z, st["centres"]) - st["centre_median"])
                       / st["centre_scale"])
    return term
