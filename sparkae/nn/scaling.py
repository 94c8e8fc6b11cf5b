"""Input scaling statistics -> the tensors of :class:`~sparkae.nn.models.InputScaler`.

Pure NumPy. The statistics come from one Spark aggregation on the driver
(:mod:`sparkae.data.prepare`); this module only turns them into ``keep``, ``shift``,
``scale`` and ``fill``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FeatureStats:
    """Per-feature statistics of the training data (all arrays of the input width)."""

    count: int
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray


@dataclass
class Scaling:
    """Which features the network models and how each is scaled."""

    keep: np.ndarray   # int64 indices of modelled features
    shift: np.ndarray  # float32, per kept feature
    scale: np.ndarray  # float32, per kept feature (multiplied after the shift)
    fill: np.ndarray   # float32, full width: value reported for features left out
    impute: np.ndarray  # float32, per kept feature: scaled training mean (replaces NaN)
    lo: np.ndarray      # float32, per kept feature: scaled training minimum
    hi: np.ndarray      # float32, per kept feature: scaled training maximum

    def tensors(self) -> dict:
        """Keyword arguments for :meth:`InputScaler.set_statistics`."""
        return {k: getattr(self, k) for k in ("keep", "shift", "scale", "fill", "impute", "lo",
                                              "hi")}


def compute_scaling(stats: FeatureStats, method: str, ignore_const_cols: bool) -> Scaling:
    """Turn statistics into a :class:`Scaling`.

    Parameters
    ----------
    stats : FeatureStats
        Training statistics.
    method : {"h2o", "minmax", "zscore", "none"}
        ``h2o``: (x - mean) / (max - min), H2O's autoencoder scaling; ``minmax``:
        (x - min) / (max - min); ``zscore``: (x - mean) / std; ``none``: x.
    ignore_const_cols : bool
        Leave features with max == min out of the network.

    Raises
    ------
    ValueError
        When every feature is constant and ``ignore_const_cols`` would leave none.
    """
    rng = stats.max - stats.min
    constant = rng <= 0
    if ignore_const_cols:
        if constant.all():
            raise ValueError(f"every one of the {len(rng)} features is constant in the "
                             "training data; nothing to learn (set ignore_const_cols=False "
                             "to model them anyway)")
        keep = np.flatnonzero(~constant)
    else:
        keep = np.arange(len(rng))
    safe_rng = np.where(constant, 1.0, rng)
    if method == "h2o":
        shift, scale = stats.mean, 1.0 / safe_rng
    elif method == "minmax":
        shift, scale = stats.min, 1.0 / safe_rng
    elif method == "zscore":
        shift, scale = stats.mean, 1.0 / np.where(stats.std > 0, stats.std, 1.0)
    elif method == "none":
        shift, scale = np.zeros_like(stats.mean), np.ones_like(stats.mean)
    else:
        raise ValueError(f"standardize: got {method!r}, expected one of 'h2o', 'minmax', "
                         "'zscore', 'none'")
    shift, scale = shift[keep], scale[keep]
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return Scaling(keep=keep.astype(np.int64), shift=f32(shift), scale=f32(scale),
                   fill=f32(stats.mean), impute=f32((stats.mean[keep] - shift) * scale),
                   lo=f32((stats.min[keep] - shift) * scale),
                   hi=f32((stats.max[keep] - shift) * scale))
