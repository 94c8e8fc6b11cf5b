"""``Autoencoder`` (a Spark ML Estimator) and ``AutoencoderModel`` (its Model)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
import uuid
from typing import Any, Dict, List, Optional

import torch
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable, MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame

from sparkae import persistence, scoring
from sparkae.data.converter import materialize
from sparkae.data.prepare import InputInfo, compute_stats, prepare, prepare_like
from sparkae.nn.models import build_network, coding_layer
from sparkae.nn.scaling import compute_scaling
from sparkae.params import AutoencoderParams, validate
from sparkae.train.distributed import TrainJob, launch
from sparkae.train.loop import TrainConfig
from sparkae.train.summary import TrainingSummary

log = logging.getLogger("sparkae")

#: Spark conf naming the directory for materialized training data.
CACHE_DIR_CONF = "spark.sparkae.cacheDir"


class Autoencoder(Estimator, AutoencoderParams, DefaultParamsReadable, DefaultParamsWritable):
    """Train an autoencoder on a Spark DataFrame.

    Parameters
    ----------
    features_col : str, default "features"
        A vector column (dense or sparse) or an ``array<float|double>`` column.
    features_cols : list of str, optional
        Numeric columns to use instead of ``features_col``.
    hidden : list of int, default [100]
        Every hidden layer; ``[300, 100, 300]`` is a stacked autoencoder.
    activation : {"tanh", "rectifier"}, default "tanh"
    output_activation : {"linear", "same"}, default "linear"
    epochs : int, default 10
    mini_batch_size : int, default 64
    seed : int, optional
        Same seed and data give the same weights; None draws a seed (recorded in the summary).
    optimizer : {"adam", "adadelta"}, default "adam"
        ADADELTA uses H2O's ``rho`` and ``epsilon``; it converges far slower with
        mini-batches, so Adam is the default.
    rate : float, default 0.001
        Adam's learning rate.
    rho, epsilon : float, default 0.99, 1e-8
        ADADELTA settings.
    l1, l2 : float, default 0
        Weight penalties.
    standardize : {"h2o", "minmax", "zscore", "none"}, default "h2o"
        Input scaling; statistics come from one Spark aggregation and live in the model.
    ignore_const_cols : bool, default True
        Leave features that are constant in the training data out of the network.
    deep_features_layer : int, optional
        Hidden layer (1-based) for ``deep_features``; default the coding layer.
    outputs : list of str, default ["deep_features", "reconstruction_mse"]
        Columns that the fitted model's ``transform`` adds.
    scoring_batch_size : int, default 1024
    num_threads : int, optional
        Torch threads for training; default all cores.

    Examples
    --------
    >>> ae = Autoencoder(hidden=[100], activation="tanh", epochs=10, seed=123)
    >>> model = ae.fit(train_df, validation_df=valid_df)      # doctest: +SKIP
    >>> model.transform(df).select("reconstruction_mse").show()  # doctest: +SKIP
    """

    @keyword_only
    def __init__(self, *, features_col: str = "features", features_cols: Optional[List[str]] = None,
                 hidden: Optional[List[int]] = None, activation: str = "tanh",
                 output_activation: str = "linear", epochs: int = 10, mini_batch_size: int = 64,
                 seed: Optional[int] = None, optimizer: str = "adam", rate: float = 0.001,
                 rho: float = 0.99, epsilon: float = 1e-8, l1: float = 0.0, l2: float = 0.0,
                 standardize: str = "h2o", ignore_const_cols: bool = True,
                 deep_features_layer: Optional[int] = None, outputs: Optional[List[str]] = None,
                 scoring_batch_size: int = 1024, num_threads: Optional[int] = None) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> "Autoencoder":
        """Set Params by keyword, as in ``pyspark.ml`` estimators."""
        return self._set(**self._input_kwargs)

    def fit(self, dataset: DataFrame, params: Any = None, *,
            validation_df: Optional[DataFrame] = None) -> "AutoencoderModel":
        """Fit a model to ``dataset``.

        Parameters
        ----------
        dataset : DataFrame
            Training rows.
        params : dict, optional
            Param overrides, as in :meth:`pyspark.ml.Estimator.fit`.
        validation_df : DataFrame, optional
            Rows scored after every epoch; their MSE is in ``model.summary``. For a
            denoising setup, train on the corrupted table and validate on the clean one.

        Raises
        ------
        ValueError
            Bad Params or input (each message names the Param or column, the value found
            and what is allowed); raised on the driver before training starts.
        """
        self._validation_df = validation_df
        try:
            return super().fit(dataset, params)
        finally:
            self._validation_df = None

    def _fit(self, dataset: DataFrame) -> "AutoencoderModel":
        t0 = time.perf_counter()
        values = self.param_values()
        validate(values)
        seed = values["seed"] if values["seed"] is not None else random.randrange(2**31)
        vectors, info, stats = prepare(dataset, values["features_col"], values["features_cols"])
        scaling = compute_scaling(stats, values["standardize"], values["ignore_const_cols"])
        valid_vectors, valid_rows = None, 0
        validation_df = getattr(self, "_validation_df", None)
        if validation_df is not None:
            valid_vectors = prepare_like(validation_df, info, "validation_df")
            vstats = compute_stats(valid_vectors, info, role="validation_df")
            if len(vstats.mean) != info.size:
                raise ValueError(f"validation_df: vectors have {len(vstats.mean)} features; the "
                                 f"training data has {info.size}")
            valid_rows = vstats.count
        spec = {"input_size": info.size, "kept": int(len(scaling.keep)),
                "hidden": values["hidden"], "activation": values["activation"],
                "output_activation": values["output_activation"]}
        cache = tempfile.mkdtemp(prefix="sparkae-", dir=_cache_root(dataset))
        try:
            job = TrainJob(
                train_path=materialize(vectors, os.path.join(cache, "train")),
                valid_path=(materialize(valid_vectors, os.path.join(cache, "valid"))
                            if valid_vectors is not None else None),
                spec=spec,
                scaling={"keep": scaling.keep, "shift": scaling.shift, "scale": scaling.scale,
                         "fill": scaling.fill},
                config=TrainConfig(epochs=values["epochs"], optimizer=values["optimizer"],
                                   rate=values["rate"], rho=values["rho"],
                                   epsilon=values["epsilon"], l1=values["l1"], l2=values["l2"]),
                batch_size=values["mini_batch_size"], seed=seed,
                num_threads=values["num_threads"])
            log.info("training %s on %d rows x %d features (%d modelled), seed %d", spec["hidden"],
                     stats.count, info.size, spec["kept"], seed)
            state, history = launch(job)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        summary = TrainingSummary(history=history, train_rows=stats.count,
                                  validation_rows=valid_rows, seed=seed,
                                  wall_time_s=time.perf_counter() - t0)
        model = AutoencoderModel._create(spec, state, info, summary)
        self._copyValues(model)
        return model


def _cache_root(df: DataFrame) -> Optional[str]:
    """Directory for materialized data: ``spark.sparkae.cacheDir`` or the system temp dir."""
    try:
        root = df.sparkSession.conf.get(CACHE_DIR_CONF, None)
    except Exception:
        root = None
    if root:
        os.makedirs(root, exist_ok=True)
    return root


class AutoencoderModel(Model, AutoencoderParams, MLReadable, MLWritable):
    """A trained autoencoder: scores DataFrames and saves to a directory.

    ``transform`` adds the columns listed in the ``outputs`` Param (by default
    ``deep_features``, the codings of the coding layer, and ``reconstruction_mse``, the
    mean squared reconstruction error over the modelled features in the scaled space).
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

    @classmethod
    def _create(cls, spec: Dict[str, Any], state: Dict[str, torch.Tensor], info: InputInfo,
                summary: TrainingSummary, threshold: Optional[float] = None) -> "AutoencoderModel":
        model = cls()
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
        """Anomaly threshold on ``reconstruction_mse`` (None when the model has none)."""
        return self._threshold

    @property
    def input_info(self) -> InputInfo:
        return self._info

    def network(self) -> torch.nn.Module:
        """A Torch copy of the trained network (evaluation mode)."""
        net = build_network(self._spec)
        net.load_state_dict(self._state)
        return net.eval()

    # -- scoring ----------------------------------------------------------------------
    def _layer(self, layer: Optional[int]) -> int:
        hidden = self._spec["hidden"]
        layer = layer if layer is not None else self.getOrDefault("deep_features_layer")
        if layer is None:
            return coding_layer(hidden)
        if not isinstance(layer, int) or not 1 <= layer <= len(hidden):
            raise ValueError(f"layer: got {layer!r}, expected a hidden layer number from 1 to "
                             f"{len(hidden)} (hidden={hidden})")
        return layer

    def _score(self, df: DataFrame, outputs: List[str], layer: Optional[int] = None) -> DataFrame:
        if self._payload is None:
            self._payload = scoring.pack(self._spec, self._state)
        return scoring.score(df, self._payload, self._key, self._info, outputs,
                             self._layer(layer), self.getOrDefault("scoring_batch_size"),
                             self._threshold)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        outputs = list(self.getOrDefault("outputs"))
        validate({"outputs": outputs})
        return self._score(dataset, outputs)

    def deep_features(self, df: DataFrame, layer: Optional[int] = None) -> DataFrame:
        """Add ``deep_features``: the codings of hidden ``layer`` (1-based, default the coding
        layer), like H2O's ``h2o.deepfeatures``.

        Raises
        ------
        ValueError
            ``layer`` is not a hidden layer number.
        """
        return self._score(df, ["deep_features"], layer)

    def anomaly(self, df: DataFrame, per_feature: bool = False) -> DataFrame:
        """Add ``reconstruction_mse``, or with ``per_feature=True`` ``feature_errors`` (the
        squared error of every modelled feature), like H2O's ``h2o.anomaly``."""
        return self._score(df, ["feature_errors" if per_feature else "reconstruction_mse"])

    # -- persistence ------------------------------------------------------------------
    def write(self) -> MLWriter:
        """An MLWriter; ``model.write().overwrite().save(path)`` replaces a directory."""
        return _ModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _ModelReader()

    def _metadata(self) -> Dict[str, Any]:
        params = {k: v for k, v in self.param_values().items()}
        return {"params": params, "spec": self._spec, "input": self._info.to_json(),
                "summary": self._summary.to_json(), "threshold": self._threshold}


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
                                         meta.get("threshold"))
        build_network(meta["spec"]).load_state_dict(state)  # fails loudly on a mismatch
        model._set(**{k: v for k, v in meta["params"].items() if model.hasParam(k)})
        return model
