"""``Autoencoder``: the Spark ML Estimator that trains an ``AutoencoderModel``."""

from __future__ import annotations

import difflib
import logging
import random
import time
from typing import Any, Dict, Optional

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame

import sparkae.tracking as tracking
from sparkae.data.cache import cache_root
from sparkae.fitting import (PreparedInput, cache_fallback, check_values, network_spec,
                             preparation_key, prepare_input, train_config)
from sparkae.io import fs
from sparkae.model import AutoencoderModel
from sparkae.nn.scaling import compute_scaling
from sparkae.params import AutoencoderParams
from sparkae.validation import validate
from sparkae.tables import TableInfo, table_info
from sparkae.train.checkpoint import resume_point
from sparkae.train.distributed import TrainJob, launch
from sparkae.train.summary import TrainingSummary

log = logging.getLogger("sparkae")

__all__ = ["Autoencoder", "AutoencoderModel", "PreparedInput", "prepare_input",
           "preparation_key"]



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
            # MLflow sees the finished model (threshold and training table included)
            model._tracking = tracking.log_fit(model, model.param_values())
        return model

    def _fit(self, dataset: DataFrame) -> "AutoencoderModel":
        t0 = time.perf_counter()
        values = self.param_values()
        check_values(values)
        # a cluster with no location every executor reads fails here, before any job
        cache_root(dataset.sparkSession, values["cache_dir"], cache_fallback(values))
        prepared = prepare_input(dataset, values, getattr(self, "_validation_df", None),
                                 in_process=values["num_workers"] <= 1)
        try:
            model = self.fit_prepared(prepared, resume=getattr(self, "_resume", False),
                                      started=t0, track=False)
        finally:
            prepared.data.release()
        if model.threshold is None and values["anomaly_quantile"] is not None:
            value = model.calibrate_threshold(dataset, values["anomaly_quantile"])
            log.info("anomaly threshold: the %g quantile of training errors = %.6g",
                     values["anomaly_quantile"], value)
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
        spec = network_spec(values, info, scaling)
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
            config=train_config(values, seed, spec),
            batch_size=values["mini_batch_size"], seed=seed,
            num_threads=values["num_threads"], num_workers=values["num_workers"],
            use_gpu=values["use_gpu"], loader=data.loader, sparse=data.sparse,
            checkpoint_dir=values["checkpoint_dir"],
            checkpoint_interval=values["checkpoint_interval"], resume_from=resume_from,
            meta=meta, storage=fs.options(), epoch_memory=values["epoch_memory"])
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
        model = AutoencoderModel._create(spec, state, info, summary, uid=self.uid)
        self._copyValues(model)
        model._threshold = values["anomaly_threshold"]
        if track:
            model._tracking = tracking.log_fit(model, values)
        return model


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
