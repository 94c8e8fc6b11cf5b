"""``AutoencoderModel``: a trained autoencoder that scores DataFrames, and its persistence."""

from __future__ import annotations

import random
import uuid
from typing import Any, Dict, List, Optional

import torch
from pyspark.ml import Model
from pyspark.ml.util import MLReader, MLWriter
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

import sparkae.persistence as persistence
import sparkae.scoring as scoring
import sparkae.spark_private as spark_private
from sparkae.data.prepare import InputInfo
from sparkae.nn.families import spec_coding_layer
from sparkae.nn.models import build_network
from sparkae.params import AutoencoderParams
from sparkae.validation import validate
from sparkae.train.summary import TrainingSummary


class AutoencoderModel(Model, AutoencoderParams, persistence.DirectoryPersistence):
    """A trained autoencoder: scores DataFrames and saves to a directory.

    ``transform`` adds the columns listed in the ``outputs`` Param (by default
    ``deep_features``, the codings of the coding layer, and ``reconstruction_mse``, the
    mean squared reconstruction error over the modelled features in the scaled space).
    With ``clip_to_training_range`` every scaled input is first clamped into its
    feature's scaled training range, and the errors are measured against the clipped
    input; like ``anomaly_threshold`` it can be set at scoring time
    (``model.copy({model.clip_to_training_range: True})``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._spec: Dict[str, Any] = {}
        self._state: Dict[str, torch.Tensor] = {}
        self._info: Optional[InputInfo] = None
        self._summary = TrainingSummary()
        self._threshold: Optional[float] = None
        self._payload: Optional[bytes] = None
        self._key = uuid.uuid4().hex
        self._tracking: Optional[Dict[str, str]] = None
        self._training_table: Optional[Dict[str, Any]] = None

    @classmethod
    def _create(cls, spec: Dict[str, Any], state: Dict[str, torch.Tensor], info: InputInfo,
                summary: TrainingSummary, threshold: Optional[float] = None,
                uid: Optional[str] = None) -> "AutoencoderModel":
        """A model of trained weights; ``uid``: the estimator's (Spark ML's convention: a
        fitted model has the uid of the estimator that made it), or a loaded model's."""
        model = cls()
        if uid:
            spark_private.reset_uid(model, uid)
        model._spec, model._state, model._info = spec, state, info
        model._summary, model._threshold = summary, threshold
        return model

    # -- properties -------------------------------------------------------------------
    @property
    def summary(self) -> TrainingSummary:
        """Per-epoch train/validation MSE, rows/s and wall time of the fit."""
        return self._summary

    @property
    def input_size(self) -> int:
        """Width of the input rows."""
        return self._spec["input_size"]

    @property
    def threshold(self) -> Optional[float]:
        """Anomaly threshold on ``reconstruction_mse`` (None when the model has none).

        Set at fit time (``anomaly_threshold``, or ``anomaly_quantile`` of the training
        errors); a scoring-time value overrides it the Spark ML way:
        ``model.transform(df, {model.anomaly_threshold: 0.05})`` or
        ``model.copy({model.anomaly_threshold: 0.05})``.
        """
        if self.isSet(self.anomaly_threshold):
            value = self.getOrDefault(self.anomaly_threshold)
            if value is not None:
                return float(value)
        return self._threshold

    @property
    def input_info(self) -> InputInfo:
        return self._info

    @property
    def tracking(self) -> Optional[Dict[str, str]]:
        """Where the fit was logged to MLflow (``run_id``, ``model_uri`` of the pyfunc
        model, ``artifact_uri`` of the sparkae directory), or None (see
        :mod:`sparkae.tracking`)."""
        return self._tracking

    @property
    def training_table(self) -> Optional[Dict[str, Any]]:
        """The table the model was fitted on, when it was read with
        :func:`sparkae.read_table` (or given to :meth:`Autoencoder.fit`): ``location`` (path
        or catalog name), ``format``, and for Delta the ``version`` read (and the
        ``timestamp`` asked for); None otherwise. Saved with the model. Read it again with
        ``read_table(spark, t["location"], version=t["version"])`` to reproduce the fit."""
        return self._training_table

    def network(self) -> torch.nn.Module:
        """A Torch copy of the trained network (evaluation mode)."""
        net = build_network(self._spec)
        net.load_state_dict(self._state)
        return net.eval()

    # -- scoring ----------------------------------------------------------------------
    def resolve_layer(self, layer: Optional[int] = None) -> int:
        """The hidden layer (1-based) that ``deep_features`` of ``layer`` come from: ``layer``
        checked, else the ``deep_features_layer`` Param, else the coding layer.

        Raises
        ------
        ValueError
            ``layer`` is not a hidden layer number.
        """
        hidden = self._spec["hidden"]
        layer = layer if layer is not None else self.getOrDefault("deep_features_layer")
        if layer is None:
            return spec_coding_layer(self._spec)
        if not isinstance(layer, int) or not 1 <= layer <= len(hidden):
            raise ValueError(f"layer: got {layer!r}, expected a hidden layer number from 1 to "
                             f"{len(hidden)} (hidden={hidden})")
        return layer

    def _clips(self, clip: Optional[bool] = None) -> bool:
        """Whether scoring clamps the scaled inputs into the training range: ``clip``, else
        the ``clip_to_training_range`` Param.

        Raises
        ------
        ValueError
            The value is not True or False.
        """
        value = self.getOrDefault("clip_to_training_range") if clip is None else clip
        validate({"clip_to_training_range": value})
        return value

    def score(self, df: DataFrame, outputs: List[str], layer: Optional[int] = None,
              threshold: Optional[float] = None, clip: Optional[bool] = None,
              **kwargs: Any) -> DataFrame:
        """Add the score columns ``outputs`` to ``df`` in one pass (what ``transform`` does
        with the ``outputs`` Param).

        Parameters
        ----------
        df : DataFrame
            Rows with the model's input column(s).
        outputs : list of str
            Any of deep_features, reconstruction_mse, feature_errors, reconstruction,
            is_anomaly.
        layer : int, optional
            Hidden layer of ``deep_features`` (see :meth:`resolve_layer`).
        threshold : float, optional
            Overrides the model's threshold for ``is_anomaly``.
        clip : bool, optional
            Overrides the ``clip_to_training_range`` Param: clamp the scaled inputs into
            the scaled training range; every output, the errors included, sees the
            clipped input.
        **kwargs
            Passed to :func:`sparkae.scoring.score` (``status_col``, ``carry``, ...).
        """
        if self._payload is None:
            self._payload = scoring.pack(self._spec, self._state)
        return scoring.score(df, self._payload, self._key, self._info, outputs,
                             self.resolve_layer(layer), self.getOrDefault("scoring_batch_size"),
                             self.threshold if threshold is None else threshold,
                             skip_missing=self.getOrDefault("missing_values_handling") == "skip",
                             clip=self._clips(clip), **kwargs)

    def score_parquet(self, spark: Any, path: str, schema: Any, outputs: List[str],
                      layer: Optional[int] = None, threshold: Optional[float] = None,
                      clip: Optional[bool] = None, **kwargs: Any) -> DataFrame:
        """Score the local Parquet table at ``path`` with workers reading its row groups
        (see :func:`sparkae.scoring.score_parquet`); as :meth:`score` otherwise."""
        return scoring.score_parquet(spark, path, schema, *self._parquet_args(outputs, layer,
                                                                             threshold),
                                     clip=self._clips(clip), **self._skip(), **kwargs)

    def score_parquet_files(self, spark: Any, staged: str, codec: str, path: str, schema: Any,
                            outputs: List[str], layer: Optional[int] = None,
                            threshold: Optional[float] = None, clip: Optional[bool] = None,
                            **kwargs: Any) -> Dict[str, Optional[int]]:
        """Score the local Parquet table at ``path`` into Parquet files under ``staged``,
        read and written by the workers (see
        :func:`sparkae.scoring.write_parquet_files`); returns the row counts."""
        return scoring.write_parquet_files(
            spark, staged, codec, path, schema,
            *self._parquet_args(outputs, layer, threshold), clip=self._clips(clip),
            **self._skip(), **kwargs)

    def batch_scorer(self, spark: Any, outputs: List[str], layer: Optional[int] = None,
                     threshold: Optional[float] = None,
                     clip: Optional[bool] = None) -> "scoring.BatchScorer":
        """The per-batch scoring call of this model for ``outputs`` (Arrow input column ->
        score columns), as the workers run it, for callers that score several models in
        one pass (:func:`sparkae.scoring.score_with`); the request is checked here.

        Raises
        ------
        ValueError
            Unknown outputs, a bad layer, or ``is_anomaly`` without a threshold.
        """
        payload, key, _, outputs, layer, batch, threshold = self._parquet_args(
            list(outputs), layer, threshold)
        scoring.check_request(outputs, layer, len(self._spec["hidden"]), batch, threshold)
        return scoring.BatchScorer(
            scoring.payload_source(spark, key, payload), tuple(outputs), layer, threshold,
            batch, scoring.task_threads(spark), False,
            self.getOrDefault("missing_values_handling") == "skip",
            scoring.fault_hook(spark), self._clips(clip))

    def _parquet_args(self, outputs: List[str], layer: Optional[int],
                      threshold: Optional[float]) -> tuple:
        """``payload, key, info, outputs, layer, batch_size, threshold`` for the Parquet
        scoring paths."""
        if self._payload is None:
            self._payload = scoring.pack(self._spec, self._state)
        return (self._payload, self._key, self._info, outputs, self.resolve_layer(layer),
                self.getOrDefault("scoring_batch_size"),
                self.threshold if threshold is None else threshold)

    def _skip(self) -> Dict[str, bool]:
        return {"skip_missing": self.getOrDefault("missing_values_handling") == "skip"}

    def _transform(self, dataset: DataFrame) -> DataFrame:
        outputs = list(self.getOrDefault("outputs"))
        validate({"outputs": outputs})
        if (self.threshold is not None and "reconstruction_mse" in outputs
                and "is_anomaly" not in outputs):
            outputs.append("is_anomaly")
        return self.score(dataset, outputs)

    def error_quantile(self, df: DataFrame, quantile: float) -> float:
        """The ``quantile`` of ``reconstruction_mse`` over ``df`` (one Spark aggregation,
        ``percentile_approx``); rows with a null score are ignored."""
        if not (isinstance(quantile, (int, float)) and 0 < quantile < 1):
            raise ValueError(f"quantile: got {quantile!r}, expected a number in (0, 1)")
        value = self.anomaly(df).agg(F.percentile_approx("reconstruction_mse", float(quantile),
                                                         10000).alias("q")).first()["q"]
        if value is None:
            raise ValueError("quantile: the DataFrame has no scorable rows")
        return float(value)

    def calibrate_threshold(self, df: DataFrame, quantile: float) -> float:
        """Set the model's threshold to the ``quantile`` of ``reconstruction_mse`` over
        ``df`` (see :meth:`error_quantile`) and return it; saved with the model."""
        self._threshold = self.error_quantile(df, quantile)
        return self._threshold

    def inliers(self, df: DataFrame, quantile: float = 0.75) -> DataFrame:
        """The rows of ``df`` whose reconstruction error is within its ``quantile``: refit on
        them to "retrain on inliers" (the chapter's section 19.5 workflow).

        Returns
        -------
        DataFrame
            The rows of ``df`` (its own columns) with ``reconstruction_mse <=`` the quantile.
        """
        cutoff = self.error_quantile(df, quantile)
        scored = self.anomaly(df)
        return scored.where(F.col("reconstruction_mse") <= cutoff).select(
            *[F.col(f"`{c}`") for c in df.columns])

    def deep_features(self, df: DataFrame, layer: Optional[int] = None) -> DataFrame:
        """Add ``deep_features``: the codings of hidden ``layer`` (1-based, default the coding
        layer), like H2O's ``h2o.deepfeatures``.

        Raises
        ------
        ValueError
            ``layer`` is not a hidden layer number.
        """
        return self.score(df, ["deep_features"], layer)

    def generate(self, n: int, seed: Optional[int] = None) -> DataFrame:
        """``n`` new rows decoded from draws of the codings' prior (variational: N(0, I);
        adversarial: the ``prior`` Param), in the input's units.

        Parameters
        ----------
        n : int
            Rows to generate (drawn and decoded on the driver).
        seed : int, optional
            Seed of the draws (None: random).

        Returns
        -------
        DataFrame
            One column named as the input: ``features_col`` (a dense vector, or an
            ``array<double>`` for array input), or the ``features_cols`` columns.

        Raises
        ------
        ValueError
            The architecture has no prior (dense, convolutional), ``n`` is not a positive
            integer, or the input had string columns (one-hot levels cannot be decoded).

        Examples
        --------
        >>> vae = Autoencoder(architecture="variational", hidden=[64, 8, 64])
        >>> vae.fit(df).generate(16, seed=1).show()   # doctest: +SKIP
        """
        from pyspark.sql import SparkSession

        info = self._info
        if info.kind == "columns" and info.levels:
            raise ValueError("generate: the model's input has string columns "
                             f"({', '.join(info.levels)}); their one-hot levels cannot be "
                             "generated")
        data = self.generate_array(n, seed).astype("float64")
        spark = SparkSession.getActiveSession()
        if spark is None:
            raise RuntimeError("generate needs an active SparkSession")
        if info.kind == "vector":
            from pyspark.ml.linalg import Vectors

            return spark.createDataFrame([(Vectors.dense(r),) for r in data], [info.column])
        if info.kind == "array":
            return spark.createDataFrame([([float(v) for v in r],) for r in data], [info.column])
        return spark.createDataFrame([tuple(float(v) for v in r) for r in data],
                                     list(info.columns))

    def generate_array(self, n: int, seed: Optional[int] = None):
        """:meth:`generate`'s rows as a NumPy array (n x input width), without Spark."""
        arch = self._spec.get("architecture", "dense")
        if arch not in ("variational", "adversarial"):
            raise ValueError(f"generate: the model's architecture='{arch}' has no prior to draw "
                             "codings from; train with architecture='variational' or "
                             "'adversarial'")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: got {n!r}, expected an integer >= 1")
        net = self.network()
        gen = torch.Generator().manual_seed(seed if seed is not None else
                                            random.randrange(2**31))
        with torch.no_grad():
            rows = net.scaler.unscale(net.decode(net.sample_prior(n, generator=gen)))
        return rows.cpu().numpy()

    def anomaly(self, df: DataFrame, per_feature: bool = False) -> DataFrame:
        """Add ``reconstruction_mse``, or with ``per_feature=True`` ``feature_errors`` (the
        squared error of every modelled feature), like H2O's ``h2o.anomaly``."""
        return self.score(df, ["feature_errors" if per_feature else "reconstruction_mse"])

    # -- persistence ------------------------------------------------------------------
    def _metadata(self) -> Dict[str, Any]:
        params = {k: v for k, v in self.param_values().items()}
        return {"uid": self.uid, "params": params, "spec": self._spec,
                "input": self._info.to_json(),
                "summary": self._summary.to_json(), "threshold": self.threshold,
                "training_table": self._training_table}


class _ModelWriter(MLWriter):
    def __init__(self, model: AutoencoderModel) -> None:
        super().__init__()
        self.model = model

    def save(self, path: str) -> None:
        if not isinstance(path, str):
            raise TypeError(f"path: got {type(path).__name__}, expected a str")
        persistence.save_model(path, self.model._metadata(), self.model._state,
                               overwrite=self.shouldOverwrite)


class _ModelReader(MLReader):
    def load(self, path: str) -> AutoencoderModel:
        meta, state = persistence.load_model(path)
        model = AutoencoderModel._create(meta["spec"], state, InputInfo.from_json(meta["input"]),
                                         TrainingSummary.from_json(meta["summary"]),
                                         meta.get("threshold"), uid=meta.get("uid"))
        build_network(meta["spec"]).load_state_dict(state)  # fails loudly on a mismatch
        model._training_table = meta.get("training_table")
        model._set(**{k: v for k, v in meta["params"].items() if model.hasParam(k)})
        return model


AutoencoderModel.writer_class, AutoencoderModel.reader_class = _ModelWriter, _ModelReader
