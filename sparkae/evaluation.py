"""A Spark ML Evaluator of reconstruction error, for TrainValidationSplit / CrossValidator."""

from __future__ import annotations

import math

from pyspark import keyword_only
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.param import Param, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkae.spark_private import dummy_parent

METRICS = ("mse", "rmse")


class ReconstructionEvaluator(Evaluator, DefaultParamsReadable, DefaultParamsWritable):
    """Mean reconstruction error of a scored DataFrame (smaller is better).

    Parameters
    ----------
    metric_name : {"mse", "rmse"}, default "mse"
        ``mse``: the mean over rows of ``reconstruction_mse``; ``rmse``: its square root.
    score_col : str, default "reconstruction_mse"
        The per-row error column that :meth:`AutoencoderModel.transform` adds.

    Examples
    --------
    >>> from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit
    >>> ae = Autoencoder(epochs=5)
    >>> grid = ParamGridBuilder().addGrid(ae.hidden, [[50], [100]]).build()
    >>> tvs = TrainValidationSplit(estimator=ae, estimatorParamMaps=grid,
    ...                            evaluator=ReconstructionEvaluator())   # doctest: +SKIP
    """

    metric_name = Param(dummy_parent(), "metric_name", "mse or rmse", TypeConverters.toString)
    score_col = Param(dummy_parent(), "score_col", "per-row reconstruction error column",
                      TypeConverters.toString)

    @keyword_only
    def __init__(self, *, metric_name: str = "mse", score_col: str = "reconstruction_mse") -> None:
        super().__init__()
        self._setDefault(metric_name="mse", score_col="reconstruction_mse")
        self._set(**self._input_kwargs)

    def _evaluate(self, dataset: DataFrame) -> float:
        metric = self.getOrDefault(self.metric_name)
        if metric not in METRICS:
            raise ValueError(f"ReconstructionEvaluator param 'metric_name': got {metric!r}, "
                             f"expected one of {', '.join(METRICS)}")
        col = self.getOrDefault(self.score_col)
        if col not in dataset.columns:
            raise ValueError(f"ReconstructionEvaluator: column '{col}' not found; evaluate the "
                             "output of AutoencoderModel.transform (columns: "
                             f"{sorted(dataset.columns)})")
        mean = dataset.agg(F.mean(F.col(f"`{col}`"))).first()[0]
        if mean is None:
            raise ValueError(f"ReconstructionEvaluator: column '{col}' has no non-null values")
        return math.sqrt(mean) if metric == "rmse" else float(mean)

    def isLargerBetter(self) -> bool:
        return False
