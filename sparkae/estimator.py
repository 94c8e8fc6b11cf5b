"""``Autoencoder`` (a Spark ML Estimator) and ``AutoencoderModel`` (its Model)."""

from __future__ import annotations

import difflib
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable, MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkae import persistence, scoring, tracking
from sparkae.io import checks as paths
from sparkae.io import fs
from sparkae.io.uri import join
from sparkae.data.cache import CACHE_DIR_CONF, cache_root  # noqa: F401 - re-exported
from sparkae.data.training_data import TrainingData, materialize_for_training
from sparkae.data.prepare import InputInfo, compute_stats, prepare, prepare_like
from sparkae.nn.families import conv_hidden, spec_coding_layer
from sparkae.nn.models import build_network, coding_layer
from sparkae.nn.scaling import compute_scaling
from sparkae.params import AutoencoderParams, validate
from sparkae.tables import TableInfo, table_info
from sparkae.train.checkpoint import resume_point
from sparkae.train.distributed import TrainJob, launch
from sparkae.train.loop import TrainConfig
from sparkae.train.summary import TrainingSummary

log = logging.getLogger("sparkae")



class Autoencoder(Estimator, AutoencoderParams, DefaultParamsReadable, DefaultParamsWritable):
    """Train an autoencoder on a Spark DataFrame.

    Every Param is a keyword argument (snake_case, H2O's names where H2O has one); the
    README's Params table maps each to its H2O argument and ``explainParams()`` lists them
    with their defaults. The most used:

    Parameters
    ----------
    features_col : str, default "features"
        A vector column (dense or sparse) or an ``array<float|double>`` column.
    features_cols : list of str, optional
        Columns to use instead: numeric, or string (one-hot encoded, every level kept).
    hidden : list of int, default [100]
        Every hidden layer; ``[300, 100, 300]`` is a stacked autoencoder.
    activation : str, default "tanh"
        tanh, rectifier, maxout, exp_rectifier, linear, or a ``*_with_dropout`` form.
    epochs, mini_batch_size, seed : int
        10, 64 and None (drawn and recorded) by default.
    optimizer : {"adam", "adadelta", "sgd"}, default "adam"
    standardize : {"h2o", "minmax", "zscore", "none"}, default "h2o"
    sparsity_beta, average_activation : float
        Sparse autoencoder (KL penalty on the coding layer).
    input_dropout_ratio, noise, noise_level
        Denoising autoencoder (the target stays the clean input).
    stopping_rounds, stopping_tolerance, score_interval, overwrite_with_best_model
        Early stopping on validation MSE (training MSE without validation data).
    anomaly_quantile, anomaly_threshold : float, optional
        Give the model a threshold; ``transform`` then adds ``is_anomaly``.

    Raises
    ------
    TypeError
        An unknown Param name (with the closest known one).

    Examples
    --------
    >>> ae = Autoencoder(hidden=[100], activation="tanh", epochs=10, seed=123)
    >>> model = ae.fit(train_df, validation_df=valid_df)      # doctest: +SKIP
    >>> model.transform(df).select("reconstruction_mse").show()  # doctest: +SKIP
    """

    @keyword_only
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self._set(**_checked(kwargs))

    @keyword_only
    def setParams(self, **kwargs: Any) -> "Autoencoder":
        """Set Params by keyword, as in ``pyspark.ml`` estimators."""
        return self._set(**_checked(kwargs))

    def fit(self, dataset: DataFrame, params: Any = None, *,
            validation_df: Optional[DataFrame] = None,
            resume: bool = False,
            training_table: Optional[TableInfo] = None) -> "AutoencoderModel":
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
        resume : bool, default False
            Continue from the newest complete checkpoint in ``checkpoint_dir`` (written by an
            interrupted fit of the same network, data and seed); without one, start over.
        training_table : TableInfo, optional
            The table the rows came from, recorded in the model
            (:attr:`AutoencoderModel.training_table`) so that the fit can be reproduced;
            by default what :func:`sparkae.read_table` says it read for ``dataset``
            (a Delta table's path or name and the version read).

        Raises
        ------
        ValueError
            Bad Params or input (each message names the Param or column, the value found
            and what is allowed); raised on the driver before training starts.
        """
        self._validation_df, self._resume = validation_df, resume
        table = training_table if training_table is not None else table_info(dataset)
        try:
            model = super().fit(dataset, params)
        finally:
            self._validation_df, self._resume = None, False
        if isinstance(model, AutoencoderModel):
            model._training_table = None if table is None else table.as_dict()
        return model

    def _fit(self, dataset: DataFrame) -> "AutoencoderModel":
        t0 = time.perf_counter()
        values = self.param_values()
        check_values(values)
        # a cluster with no location every executor reads fails here, before any job
        cache_root(dataset.sparkSession, values["cache_dir"], _cache_fallback(values))
        prepared = prepare_input(dataset, values, getattr(self, "_validation_df", None))
        try:
            model = self.fit_prepared(prepared, resume=getattr(self, "_resume", False),
                                      started=t0, track=False)
        finally:
            prepared.data.release()
        if model._threshold is None and values["anomaly_quantile"] is not None:
            model._threshold = model.error_quantile(dataset, values["anomaly_quantile"])
            log.info("anomaly threshold: the %g quantile of training errors = %.6g",
                     values["anomaly_quantile"], model._threshold)
        model._tracking = tracking.log_fit(model, values)
        return model

    def fit_prepared(self, prepared: "PreparedInput", resume: bool = False,
                     started: Optional[float] = None, track: bool = True) -> "AutoencoderModel":
        """Train on input already prepared and materialized by :func:`prepare_input`.

        This step runs no Spark job (``num_workers=1`` trains in this process; more ranks
        need an active SparkSession for TorchDistributor), so tuning trials use it to share
        one preparation. The anomaly threshold is the ``anomaly_threshold`` Param only:
        ``anomaly_quantile`` needs the table (see :meth:`AutoencoderModel.error_quantile`).

        Parameters
        ----------
        prepared : PreparedInput
            From :func:`prepare_input` with these Params' feature and loader settings.
        resume : bool, default False
            As in :meth:`fit`.
        started : float, optional
            ``time.perf_counter()`` when the fit began (the summary's wall time).
        track : bool, default True
            Log the fit to MLflow when ``mlflow_tracking`` is set.

        Raises
        ------
        ValueError
            Bad Params (see :meth:`fit`).
        """
        t0 = time.perf_counter() if started is None else started
        values = self.param_values()
        validate(values)
        info, stats = prepared.info, prepared.stats
        data = prepared.data
        seed = values["seed"] if values["seed"] is not None else random.randrange(2**31)
        scaling = compute_scaling(stats, values["standardize"], values["ignore_const_cols"])
        spec = _network_spec(values, info, scaling)
        if spec.get("architecture", "dense") != "dense":
            log.info("architecture %s: %s", spec["architecture"],
                     {k: v for k, v in spec.items() if k not in ("input_size", "kept")})
        meta = {"spec": spec, "seed": seed, "data": data.fingerprint}
        resume_from, resumed_seed = resume_point(values["checkpoint_dir"], resume, meta,
                                                 values["seed"])
        if resumed_seed is not None:
            seed = meta["seed"] = resumed_seed
        job = TrainJob(
            train_path=data.train, valid_path=data.valid, spec=spec,
            scaling=scaling.tensors(),
            config=_train_config(values, seed, spec),
            batch_size=values["mini_batch_size"], seed=seed,
            num_threads=values["num_threads"], num_workers=values["num_workers"],
            use_gpu=values["use_gpu"], loader=data.loader, sparse=data.sparse,
            checkpoint_dir=values["checkpoint_dir"],
            checkpoint_interval=values["checkpoint_interval"], resume_from=resume_from,
            meta=meta, storage=fs.options())
        job.progress = values["progress"]
        if values.get("reconstruction_sampling") is not None and not data.sparse:
            log.info("reconstruction_sampling=%d: the batches are dense (the input is not "
                     "wide and sparse, or input noise is set), so the loss is the exact "
                     "one", values["reconstruction_sampling"])
        log.info("training %s on %d rows x %d features (%d modelled), seed %d", spec["hidden"],
                 stats.count, info.size, spec["kept"], seed)
        state, history = launch(job)
        summary = TrainingSummary(history=history, train_rows=stats.count,
                                  validation_rows=prepared.valid_rows, seed=seed,
                                  wall_time_s=time.perf_counter() - t0)
        model = AutoencoderModel._create(spec, state, info, summary)
        self._copyValues(model)
        model._threshold = values["anomaly_threshold"]
        if track:
            model._tracking = tracking.log_fit(model, values)
        return model


@dataclass
class PreparedInput:
    """A fit's input, prepared and materialized once (see :func:`prepare_input`): plain,
    picklable values that a process without Spark can train from."""

    info: InputInfo
    stats: Any                 # FeatureStats of the training rows
    valid_rows: int
    data: TrainingData


def check_values(values: Dict[str, Any]) -> None:
    """Driver-side checks of a fit's Param values before any Spark job.

    Raises
    ------
    ValueError
        A bad Param value, an unwritable ``checkpoint_dir``/``cache_dir``, or MLflow
        tracking without MLflow installed.
    """
    validate(values)
    for name in ("checkpoint_dir", "cache_dir"):
        if values[name]:
            paths.check_writable(values[name], name)
    if values.get("mlflow_tracking"):
        tracking.require()   # missing MLflow fails here, before any Spark job


#: The Params that decide what :func:`prepare_input` writes; fits that agree on them can
#: share one prepared input.
PREPARATION_PARAMS = ("features_col", "features_cols", "data_loader", "cache_dir",
                      "keep_cache")


def preparation_key(values: Dict[str, Any]) -> str:
    """What fits must agree on to share one :func:`prepare_input` (its settings, and
    whether input noise forces dense batches)."""
    noisy = values["noise"] != "none" or values["input_dropout_ratio"] > 0
    return json.dumps([[values.get(k) for k in PREPARATION_PARAMS], noisy], default=str)


def prepare_input(dataset: DataFrame, values: Dict[str, Any],
                  validation_df: Optional[DataFrame] = None) -> PreparedInput:
    """Prepare and materialize a fit's training (and validation) input: the Spark side of
    a fit. Release ``result.data`` when done with it.

    Parameters
    ----------
    dataset, validation_df : DataFrame
        As in :meth:`Autoencoder.fit`.
    values : dict
        The estimator's Param values (``features_col(s)``, ``cache_dir``, ``keep_cache``,
        ``data_loader``, ``noise``, ``input_dropout_ratio``).

    Raises
    ------
    ValueError
        A missing or badly typed feature column, or validation rows of another width.
    """
    vectors, info, stats = prepare(dataset, values["features_col"], values["features_cols"])
    valid_vectors, valid_rows, vstats = None, 0, None
    if validation_df is not None:
        valid_vectors = prepare_like(validation_df, info, "validation_df")
        vstats = compute_stats(valid_vectors, info, role="validation_df")
        if len(vstats.mean) != info.size:
            raise ValueError(f"validation_df: vectors have {len(vstats.mean)} features; the "
                             f"training data has {info.size}")
        valid_rows = vstats.count
    data = materialize_for_training(
        dataset.sparkSession, vectors, stats, valid_vectors, vstats, info.size,
        cache_dir=values["cache_dir"], keep=values["keep_cache"],
        data_loader=values["data_loader"],
        noisy=values["noise"] != "none" or values["input_dropout_ratio"] > 0,
        cache_fallback=_cache_fallback(values))
    return PreparedInput(info, stats, valid_rows, data)


def _cache_fallback(values: Dict[str, Any]) -> Optional[str]:
    """Where the cache goes when no cache location is set: ``checkpoint_dir/_cache``."""
    return join(values["checkpoint_dir"], "_cache") if values["checkpoint_dir"] else None


def _checked(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Reject unknown Param names with the closest known one."""
    known = [p.name for p in AutoencoderParams().params]
    for name in kwargs:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise TypeError(f"Autoencoder got an unexpected keyword argument '{name}'{hint} "
                            "(explainParams() lists every Param)")
    return kwargs


def _network_spec(values: Dict[str, Any], info: InputInfo, scaling: Any) -> Dict[str, Any]:
    """The JSON-able architecture of the network (what :func:`build_network` takes)."""
    ratios = values["hidden_dropout_ratios"]
    if ratios is None and values["activation"].endswith("_with_dropout"):
        ratios = [0.5] * len(values["hidden"])   # H2O's default hidden dropout
    spec = {"input_size": info.size, "kept": int(len(scaling.keep)), "hidden": values["hidden"],
            "activation": values["activation"], "output_activation": values["output_activation"],
            "hidden_dropout_ratios": ratios,
            "skip_missing": values["missing_values_handling"] == "skip"}
    arch = values.get("architecture", "dense")
    if arch != "dense":   # dense specs stay as they were: older models load unchanged
        spec["architecture"] = arch
    if values.get("wta_sparsity") is not None:
        spec["wta_sparsity"] = float(values["wta_sparsity"])
        spec["coding_layer"] = values["deep_features_layer"] or coding_layer(values["hidden"])
    if arch == "convolutional":
        shape = image_shape_for(values.get("image_shape"), info.size)
        spec.update(image_shape=shape, conv_filters=list(values["conv_filters"]),
                    kernel_size=int(values["kernel_size"]),
                    hidden=conv_hidden(shape, values["conv_filters"], values["kernel_size"]),
                    coding_layer=len(values["conv_filters"]), hidden_dropout_ratios=None)
    elif arch == "adversarial":
        spec["prior"] = values["prior"]
    return spec


def image_shape_for(image_shape: Optional[List[int]], width: int) -> List[int]:
    """``[channels, height, width]`` of rows ``width`` wide: ``image_shape`` checked
    against the width, or one square channel when it is None.

    Raises
    ------
    ValueError
        The shape's product differs from the width, or no shape is given and the width is
        not a square.
    """
    if image_shape is None:
        side = int(round(width ** 0.5))
        if side * side != width:
            raise ValueError(f"Autoencoder param 'image_shape': not set, and the rows' width "
                             f"{width} is not a square; set image_shape=[channels, height, "
                             "width] for architecture='convolutional'")
        return [1, side, side]
    shape = [1] + list(image_shape) if len(image_shape) == 2 else list(image_shape)
    product = shape[0] * shape[1] * shape[2]
    if product != width:
        raise ValueError(f"Autoencoder param 'image_shape': got {list(image_shape)} ({product} "
                         f"values per row), but the rows have {width} features")
    return shape


def _train_config(values: Dict[str, Any], seed: int,
                  spec: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Loop settings from Param values (and the network ``spec``, whose coding layer a
    convolutional network fixes)."""
    if spec is not None and spec.get("architecture") == "convolutional":
        layer = spec_coding_layer(spec)
    else:
        layer = values["deep_features_layer"] or coding_layer(values["hidden"])
    max_w2 = values["max_w2"]
    return TrainConfig(
        epochs=values["epochs"], optimizer=values["optimizer"], rate=values["rate"],
        rho=values["rho"], epsilon=values["epsilon"], l1=values["l1"], l2=values["l2"],
        rate_annealing=values["rate_annealing"], momentum_start=values["momentum_start"],
        momentum_ramp=values["momentum_ramp"], momentum_stable=values["momentum_stable"],
        nesterov=values["nesterov_accelerated_gradient"],
        max_w2=float("inf") if max_w2 is None else max_w2,
        sparsity_beta=values["sparsity_beta"], average_activation=values["average_activation"],
        sparsity_method=values["sparsity_method"], activation=values["activation"],
        coding_layer=layer, input_dropout_ratio=values["input_dropout_ratio"],
        noise=values["noise"], noise_level=values["noise_level"],
        stopping_rounds=values["stopping_rounds"],
        stopping_tolerance=values["stopping_tolerance"],
        score_interval=values["score_interval"],
        overwrite_with_best_model=values["overwrite_with_best_model"],
        skip_missing=values["missing_values_handling"] == "skip", seed=seed,
        architecture=values.get("architecture", "dense"), kl_beta=values.get("kl_beta", 1.0),
        contractive_lambda=values.get("contractive_lambda", 0.0),
        reconstruction_sampling=values.get("reconstruction_sampling"))


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
        self._tracking: Optional[Dict[str, str]] = None
        self._training_table: Optional[Dict[str, Any]] = None

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
    def _layer(self, layer: Optional[int]) -> int:
        hidden = self._spec["hidden"]
        layer = layer if layer is not None else self.getOrDefault("deep_features_layer")
        if layer is None:
            return spec_coding_layer(self._spec)
        if not isinstance(layer, int) or not 1 <= layer <= len(hidden):
            raise ValueError(f"layer: got {layer!r}, expected a hidden layer number from 1 to "
                             f"{len(hidden)} (hidden={hidden})")
        return layer

    def _score(self, df: DataFrame, outputs: List[str], layer: Optional[int] = None,
               threshold: Optional[float] = None, **kwargs: Any) -> DataFrame:
        """Score ``df`` (see :func:`sparkae.scoring.score`); ``threshold`` overrides the
        model's for ``is_anomaly``; ``kwargs`` go to :func:`~sparkae.scoring.score`."""
        if self._payload is None:
            self._payload = scoring.pack(self._spec, self._state)
        return scoring.score(df, self._payload, self._key, self._info, outputs,
                             self._layer(layer), self.getOrDefault("scoring_batch_size"),
                             self.threshold if threshold is None else threshold,
                             skip_missing=self.getOrDefault("missing_values_handling") == "skip",
                             **kwargs)

    def _score_parquet(self, spark: Any, path: str, schema: Any, outputs: List[str],
                       layer: Optional[int] = None, threshold: Optional[float] = None,
                       **kwargs: Any) -> DataFrame:
        """Score the local Parquet table at ``path`` with workers reading its row groups
        (see :func:`sparkae.scoring.score_parquet`); as :meth:`_score` otherwise."""
        if self._payload is None:
            self._payload = scoring.pack(self._spec, self._state)
        return scoring.score_parquet(
            spark, path, schema, self._payload, self._key, self._info, outputs,
            self._layer(layer), self.getOrDefault("scoring_batch_size"),
            self.threshold if threshold is None else threshold,
            skip_missing=self.getOrDefault("missing_values_handling") == "skip", **kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        outputs = list(self.getOrDefault("outputs"))
        validate({"outputs": outputs})
        if (self.threshold is not None and "reconstruction_mse" in outputs
                and "is_anomaly" not in outputs):
            outputs.append("is_anomaly")
        return self._score(dataset, outputs)

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
        return self._score(df, ["deep_features"], layer)

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
                                         meta.get("threshold"))
        build_network(meta["spec"]).load_state_dict(state)  # fails loudly on a mismatch
        model._training_table = meta.get("training_table")
        if meta.get("uid"):
            model._resetUid(meta["uid"])
        model._set(**{k: v for k, v in meta["params"].items() if model.hasParam(k)})
        return model
