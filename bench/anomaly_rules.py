"""Member outputs shared by the scoring candidates of the anomaly research (issue 19,
second round): the ``m_*`` and ``w_*`` candidates of :data:`bench.anomaly_research.METHODS`.

The candidates differ only in how a member's outputs become a score, so each (data set,
resampling) trains the five members once (the default's: z-scored inputs,
:func:`bench.anomaly_models.members` architectures, seeds 0-4, at least 500 steps) and
every scoring rule reads the same errors and codes (:func:`member_outputs`). Terms
(:func:`term`), each a robust z-score over the training rows:

- ``rec``: the member's reconstruction MSE;
- ``dist``: the code distance, mean squared z-score of the codes (the first default);
- ``knnM_K``: distance of the standardised codes to the K-th nearest of a seeded sample
  of M training rows' codes (a row of the sample skips itself); ``knnall_K`` uses every
  row (does not scale; for reference). Sampling the reference follows Sugiyama and
  Borgwardt (2013), "Rapid distance-based outlier detection via sampling": a small
  reference both scales (it is broadcast) and keeps a cluster of anomalies smaller
  than K reference rows from shielding itself;
- ``kmC``: squared distance of the standardised codes to the nearest of C k-means centres;
  ``kmA``: the same with C = :func:`sparkae.anomaly.stats.auto_centres` of the rows;
- ``cblofC`` / ``cblofA``: CBLOF's rule (He et al. 2003, PyOD's CBLOF): C k-means centres,
  split into large and small clusters (the largest clusters until they hold ``alpha`` = 90 %
  of the rows, or up to a size ratio of ``beta`` = 5 between neighbours); the squared
  distance to the nearest *large* centre (a small group of anomalies gets no centre of its
  own);
- ``ifo``: an isolation forest (scikit-learn's defaults, seeded) on the standardised codes,
  as Deep Isolation Forest (Xu et al. 2023) isolates rows in learnt representations.

:func:`scored` turns a list of terms and a way of combining members into a candidate.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from bench.anomaly_models import members, robust_z, scale, train_codes
from sparkae.anomaly.stats import auto_centres


_OUTPUTS_CACHE: Dict[tuple, List[tuple]] = {}


def pyod_widths(d: int, k: int) -> List[List[int]]:
    """PyOD AutoEncoder's layout ([64, 32] encoder, mirrored), narrowed to the width d,
    for each of ``k`` members (they differ by seed only)."""
    return [[min(64, max(2, d)), min(32, max(2, d // 2)), min(64, max(2, d))]] * k


def member_outputs(x: np.ndarray, k: int = 5, seed: int = 0, min_steps: int = 500,
                   how: str = "zscore", widths: str = "varied") -> List[tuple]:
    """(reconstruction MSE, standardised codes) of each of ``k`` members trained on ``x``
    (cached by the data's bytes: every scoring candidate reads the same members);
    ``widths``: "varied" (:func:`members`) or "pyod" (:func:`pyod_widths`)."""
    import hashlib

    key = (hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest(), x.shape, k, seed,
           min_steps, how, widths)
    if key not in _OUTPUTS_CACHE:
        xs = scale(x, how)
        out = []
        archs = members(x.shape[1], k, seed) if widths == "varied" else pyod_widths(
            x.shape[1], k)
        for i, hidden in enumerate(archs):
            fe, c = train_codes(xs, hidden, epochs=10, seed=seed + i, min_steps=min_steps)
            sd = c.std(0)
            sd[sd == 0] = 1.0
            out.append((fe.mean(1), (c - c.mean(0)) / sd))
        if _OUTPUTS_CACHE and next(iter(_OUTPUTS_CACHE))[0] != key[0]:
            _OUTPUTS_CACHE.clear()       # one data set at a time
        _OUTPUTS_CACHE[key] = out
    return _OUTPUTS_CACHE[key]


def knn_reference(cz: np.ndarray, m: Optional[int], k: int, seed: int) -> np.ndarray:
    """Distance of every row of ``cz`` to its ``k``-th nearest row of a seeded sample of
    ``m`` rows (all rows when ``m`` is None); a sampled row skips itself."""
    from sklearn.neighbors import NearestNeighbors

    n = len(cz)
    idx = (np.arange(n) if m is None or m >= n else
           np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False)))
    nn = NearestNeighbors(n_neighbors=min(k + 1, len(idx)), algorithm="brute").fit(cz[idx])
    d, j = nn.kneighbors(cz)
    self_hit = idx[j[:, 0]] == np.arange(n)
    col = np.where(self_hit, min(k, d.shape[1] - 1), k - 1)
    return d[np.arange(n), col]


def large_centres(labels: np.ndarray, k: int, alpha: float = 0.9, beta: float = 5.0
                  ) -> np.ndarray:
    """Indices of CBLOF's large clusters among ``k`` labelled ones."""
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes)
    cum = np.cumsum(sizes[order]) / sizes.sum()
    cut = k
    for i in range(k - 1):
        if cum[i] >= alpha or (sizes[order[i + 1]] > 0
                               and sizes[order[i]] / sizes[order[i + 1]] >= beta):
            cut = i + 1
            break
    return order[:cut]


def term(name: str, err: np.ndarray, cz: np.ndarray, seed: int) -> np.ndarray:
    """One member's term ``name`` (see the module docstring), before the robust z-score."""
    from sklearn.cluster import KMeans

    if name == "rec":
        return err
    if name == "dist":
        return (cz ** 2).mean(1)
    if name.startswith("knn"):
        m, kk = name[3:].split("_")
        return knn_reference(cz, None if m == "all" else int(m), int(kk), seed)
    if name.startswith("km"):
        k = auto_centres(len(cz)) if name[2:] == "A" else int(name[2:])
        km = KMeans(k, n_init=1, random_state=seed).fit(cz)
        return km.transform(cz).min(1) ** 2
    if name == "ifo":    # an isolation forest on the codes (Deep Isolation Forest's idea)
        from sklearn.ensemble import IsolationForest

        return -IsolationForest(random_state=seed).fit(cz).score_samples(cz)
    if name.startswith("cblof"):
        k = auto_centres(len(cz)) if name[5:] == "A" else int(name[5:])
        km = KMeans(k, n_init=1, random_state=seed).fit(cz)
        big = large_centres(km.labels_, k)
        return km.transform(cz)[:, big].min(1) ** 2
    raise ValueError(name)


def scored(terms: Sequence[str], combine: str = "mean", **kw) -> Callable[[np.ndarray],
                                                                          np.ndarray]:
    """A candidate: each member's score is the sum (``combine="max_terms"``: the largest)
    of the robust z-scores of ``terms``; the members are combined by ``combine`` (mean,
    median, or rank: mean of ranks; max_terms: mean)."""
    def run(x: np.ndarray) -> np.ndarray:
        per = []
        for i, (err, cz) in enumerate(member_outputs(x, **kw)):
            zs = [robust_z(term(t, err, cz, seed=i)) for t in terms]
            s = np.max(zs, 0) if combine == "max_terms" else sum(zs)
            per.append(np.argsort(np.argsort(s)) / len(s) if combine == "rank" else s)
        return np.median(per, 0) if combine == "median" else np.mean(per, 0)
    return run

