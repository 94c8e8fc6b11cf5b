"""Baselines to compare autoencoders with: Spark MLlib PCA on the same scaled data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkae.data.prepare import input_column, prepare
from sparkae.nn.scaling import compute_scaling

log = logging.getLogger("sparkae")


@dataclass
class PCAResult:
    """A k-component PCA of the scaled features.

    Attributes
    ----------
    k : int
    reconstruction_mse : float
        Mean over rows and modelled features of the squared reconstruction error in the
        scaled space: comparable with an autoencoder's ``reconstruction_mse``.
    explained_variance : list of float
        Share of the total variance of each component.
    model : PCAModel
    """

    k: int
    reconstruction_mse: float
    explained_variance: List[float]
    model: PCAModel
    _scaled: DataFrame
    _input_col: object

    def projection(self, df: Optional[DataFrame] = None,
                   output_col: str = "pca_features") -> DataFrame:
        """``df`` (default: the fitted table) with its k-dimensional projection as an array."""
        scaled = self._scaled if df is None else df.withColumn("__scaled", self._input_col)
        out = self.model.transform(scaled)
        return out.withColumn(output_col, vector_to_array(F.col("__pca"), "float32")).drop(
            "__pca", "__scaled")


def pca(df: DataFrame, k: int, features_col: str = "features",
        features_cols: Optional[List[str]] = None, standardize: str = "h2o",
        ignore_const_cols: bool = True) -> PCAResult:
    """Fit Spark MLlib PCA with ``k`` components on ``df`` scaled as an autoencoder scales it.

    Parameters
    ----------
    df : DataFrame
    k : int
        Number of components (compare with a k-unit coding layer).
    features_col, features_cols, standardize, ignore_const_cols
        As for :class:`~sparkae.Autoencoder`; the same statistics and scaling are used.

    Returns
    -------
    PCAResult

    Notes
    -----
    The reconstruction MSE comes from the explained variance without another pass:
    with centred data (``h2o`` and ``zscore`` scaling centre it), the error of the best
    rank-k reconstruction is the variance the k components leave unexplained.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: got {k!r}, expected a positive integer")
    _, info, stats = prepare(df, features_col, features_cols)
    scaling = compute_scaling(stats, standardize, ignore_const_cols)
    kept = len(scaling.keep)
    if k > kept:
        raise ValueError(f"k: got {k}, expected at most the {kept} modelled features")
    keep = F.array(*[F.lit(int(i)) for i in scaling.keep])
    shift = F.array(*[F.lit(float(v)) for v in scaling.shift])
    scale = F.array(*[F.lit(float(v)) for v in scaling.scale])
    col = input_column(df, info, "pca input")

    def scaled_col(c):
        arr = vector_to_array(c)
        return array_to_vector(F.transform(keep, lambda i, j: (arr[i] - shift[j]) * scale[j]))

    scaled = df.withColumn("__scaled", scaled_col(col))
    model = PCA(k=k, inputCol="__scaled", outputCol="__pca").fit(scaled)
    explained = [float(v) for v in model.explainedVariance.toArray()]
    var = (stats.std[scaling.keep] * scaling.scale) ** 2           # sample variances, scaled
    n = stats.count
    mse = float(var.sum() * (1.0 - sum(explained)) * (n - 1) / n / kept)
    log.info("PCA k=%d: reconstruction MSE %.6g, explained variance %.3f", k, mse, sum(explained))
    return PCAResult(k, mse, explained, model, scaled, scaled_col(col))
