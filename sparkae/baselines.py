"""Baselines to compare autoencoders with: Spark MLlib PCA on the same scaled data."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from pyspark.ml import PipelineModel
from pyspark.ml.feature import PCA, ElementwiseProduct, PCAModel, VectorSlicer
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import Vectors
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
        Fitted on the modelled features times their scale, without the shift (a
        covariance does not change with it); :meth:`projection` subtracts the shift's
        projection.
    """

    k: int
    reconstruction_mse: float
    explained_variance: List[float]
    model: PCAModel
    _df: DataFrame
    _input_col: object
    _scaler: PipelineModel
    _offset: List[float]

    def projection(self, df: Optional[DataFrame] = None,
                   output_col: str = "pca_features") -> DataFrame:
        """``df`` (default: the fitted table) with its k-dimensional projection, of its
        scaled features ``(x - shift) * scale``, as an array."""
        df = self._df if df is None else df
        out = self.model.transform(
            self._scaler.transform(df.withColumn("__raw", self._input_col)))
        offset = F.array(*[F.lit(v) for v in self._offset])
        shifted = F.zip_with(vector_to_array(F.col("__pca")), offset, lambda a, b: a - b)
        return out.withColumn(output_col, shifted.cast("array<float>")).drop(
            "__raw", "__kept", "__scaled", "__pca")


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
    col = input_column(df, info, "pca input")
    # Spark ML's own transformers (no per-element SQL functions, which Spark interprets
    # element by element): the modelled features times their scale
    scaler = PipelineModel(stages=[
        VectorSlicer(inputCol="__raw", outputCol="__kept",
                     indices=[int(i) for i in scaling.keep]),
        ElementwiseProduct(inputCol="__kept", outputCol="__scaled",
                           scalingVec=Vectors.dense([float(v) for v in scaling.scale]))])
    model = PCA(k=k, inputCol="__scaled", outputCol="__pca").fit(
        scaler.transform(df.withColumn("__raw", col)))
    shifted = np.asarray(scaling.shift, dtype=np.float64) * np.asarray(scaling.scale)
    offset = [float(v) for v in model.pc.toArray().T @ shifted]
    explained = [float(v) for v in model.explainedVariance.toArray()]
    var = (stats.std[scaling.keep] * scaling.scale) ** 2           # sample variances, scaled
    n = stats.count
    mse = float(var.sum() * (1.0 - sum(explained)) * (n - 1) / n / kept)
    log.info("PCA k=%d: reconstruction MSE %.6g, explained variance %.3f", k, mse, sum(explained))
    return PCAResult(k, mse, explained, model, df, col, scaler, offset)
