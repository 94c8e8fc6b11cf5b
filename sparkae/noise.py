"""Corrupt a table for the chapter's explicit denoising setup: train on the corrupted copy,
validate on the clean one (``Autoencoder().fit(corrupt(df, ...), validation_df=df)``)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkae.data.prepare import resolve_input

KINDS = ("gaussian", "masking", "salt_pepper")


def _corrupt_rows(x: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return x + rng.normal(0.0, level, size=x.shape)
    hit = rng.random(x.shape) < level
    if kind == "masking":
        return np.where(hit, 0.0, x)
    salt = rng.random(x.shape) < 0.5
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return np.where(hit, np.where(salt, hi, lo), x)


def corrupt(df: DataFrame, kind: str, level: float, seed: int = 0,
            features_col: str = "features", output_col: Optional[str] = None) -> DataFrame:
    """Return ``df`` with its features corrupted, every other column unchanged.

    Parameters
    ----------
    df : DataFrame
        A table with a vector or numeric-array ``features_col``.
    kind : {"gaussian", "masking", "salt_pepper"}
        ``gaussian`` adds N(0, level^2) noise in the input's own units; ``masking`` sets
        each value to 0 with probability ``level``; ``salt_pepper`` sets each value, with
        probability ``level``, to its row's minimum or maximum.
    level : float
        Noise level as above (a share in (0, 1) for masking and salt_pepper).
    seed : int
        The same seed and partitioning give the same corruption.
    output_col : str, optional
        Column for the corrupted features (a dense vector); default replaces ``features_col``.

    Raises
    ------
    ValueError
        Unknown ``kind``, a bad ``level``, or a missing/mistyped ``features_col``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: got {kind!r}, expected one of {', '.join(KINDS)}")
    bad_share = kind != "gaussian" and not 0 < level < 1
    if not isinstance(level, (int, float)) or level <= 0 or bad_share:
        allowed = "a number > 0" if kind == "gaussian" else "a share in (0, 1)"
        raise ValueError(f"level: got {level!r}, expected {allowed} for kind '{kind}'")
    col, _ = resolve_input(df, features_col, None)
    out = output_col or features_col

    @F.pandas_udf("array<double>")
    def _noise(x: pd.Series, key: pd.Series) -> pd.Series:
        if len(x) == 0:
            return pd.Series([], dtype=object)
        rng = np.random.default_rng([seed, int(key.iloc[0] * 2**53)])
        rows = np.stack(x.to_numpy()).astype(np.float64)
        return pd.Series(list(_corrupt_rows(rows, kind, level, rng)))

    key = F.rand(seed)
    noisy = array_to_vector(_noise(vector_to_array(col), key))
    return df.withColumn(out, noisy)


__all__ = ["corrupt", "KINDS"]
