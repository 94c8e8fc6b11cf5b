"""``grid_search``: fit one Autoencoder per combination of a grid with Ray Tune.

The driver prepares the input once (:mod:`sparkae.tune.prepare`), starts Ray for the
Spark master (:mod:`sparkae.tune.ray_cluster`), runs the trials that the trial store has
not finished (:mod:`sparkae.tune.trial`, :mod:`sparkae.tune.store`), and ranks them
(:mod:`sparkae.tune.leaderboard`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pandas as pd
from pyspark.sql import DataFrame

from sparkae.data.cache import cache_root
from sparkae.estimator import Autoencoder
from sparkae.model import AutoencoderModel
from sparkae.io import fs
from sparkae.io.uri import join, parse
from sparkae.tune.grid import OWNED, expand_grid, trial_key, varying_params
from sparkae.tune.leaderboard import leaderboard
from sparkae.tune.prepare import prepare_once
from sparkae.tune.progress import progress_callback
from sparkae.tune.ray_cluster import ray_session
from sparkae.tune.store import FINAL, append_record, failed_row, read_record
from sparkae.tune.trial import run_trial

log = logging.getLogger("sparkae")


@dataclass
class TuneResult:
    """What :func:`grid_search` found.

    Attributes
    ----------
    leaderboard : pandas.DataFrame
        One row per trial, best first (ascending validation MSE, else training MSE; failed
        trials last, with their error): ``trial``, the varying Params, ``train_mse``,
        ``validation_mse``, ``epochs``, ``wall_s``, ``status``, ``error``.
    best_params : dict
        The grid values of the best trial.
    best_model : AutoencoderModel or None
        The best trial's model (None when every trial failed).
    storage_path : str or None
        Where the record and the models are (None: a temporary directory, deleted).
    """

    leaderboard: pd.DataFrame
    best_params: Dict[str, Any] = field(default_factory=dict)
    best_model: Optional[AutoencoderModel] = None
    storage_path: Optional[str] = None


def grid_search(estimator: Autoencoder, train_df: DataFrame, param_grid: Dict[str, List[Any]],
                validation_df: Optional[DataFrame] = None, metric: str = "mse",
                search: str = "grid", num_samples: Optional[int] = None,
                max_concurrent_trials: Optional[int] = None,
                resources_per_trial: Optional[Dict[str, float]] = None,
                scheduler: Optional[str] = None, seed: Optional[int] = None,
                storage_path: Optional[str] = None,
                include_dashboard: bool = False) -> TuneResult:
    """Fit ``estimator`` once per combination of ``param_grid`` with Ray Tune.

    Parameters
    ----------
    estimator : Autoencoder
        The base settings; the grid overrides its Params per trial.
    train_df, validation_df : DataFrame
        Training rows; optional validation rows (the leaderboard is ranked by their MSE,
        else by the training MSE).
    param_grid : dict
        Autoencoder Param name -> list of candidates. List-valued Params take a list of
        lists: ``{"hidden": [[50], [300, 100, 300]], "activation": ["tanh"]}``.
    metric : {"mse"}
        Rank by the final epoch's MSE (validation when given, else training).
    search : {"grid", "random"}
        Every combination, or ``num_samples`` seeded draws from them.
    num_samples : int, optional
        Draws of ``search="random"``.
    max_concurrent_trials : int, optional
        Trials at a time (default: as many as the CPUs allow).
    resources_per_trial : dict, optional
        Ray resources of one trial, default ``{"cpu": 1}``; its ``cpu`` sets the trial's
        Spark cores and Torch threads.
    scheduler : {None, "asha"}
        ASHA stops poor trials early on their per-epoch MSE.
    seed : int, optional
        Seeds the random search, and the fits when the estimator has no ``seed``.
    storage_path : str, optional
        Keep the record (``record/``, one object per report) and every trial's model here
        (any location :mod:`sparkae.io` reaches, ``s3a://`` included); calling again with
        the same grid resumes: finished trials are not rerun. None: a temporary directory
        under the cache location.
    include_dashboard : bool, default False
        Start Ray's dashboard.

    Returns
    -------
    TuneResult
        ``leaderboard``, ``best_params``, ``best_model``.

    Raises
    ------
    ValueError
        A bad grid or argument (named), before Ray starts. A trial's own failure (e.g. an
        invalid Param value) is not raised: it is a leaderboard row with its error.
    KeyboardInterrupt
        Ctrl-C: Ray Tune ends the run, Ray is torn down and the finished trials stay in the
        record; call again with the same ``storage_path`` to resume.

    Examples
    --------
    >>> res = grid_search(Autoencoder(epochs=5, seed=1), train, {"hidden": [[50], [100]]},
    ...                   validation_df=valid)                    # doctest: +SKIP
    >>> res.leaderboard; res.best_model.transform(df)           # doctest: +SKIP
    """
    if metric != "mse":
        raise ValueError(f"metric: got {metric!r}, expected 'mse'")
    if scheduler not in (None, "asha"):
        raise ValueError(f"scheduler: got {scheduler!r}, expected None or 'asha'")
    if not isinstance(estimator, Autoencoder):
        raise ValueError(f"estimator: got {type(estimator).__name__}, expected an Autoencoder")
    resources = dict(resources_per_trial or {"cpu": 1})
    trial_cpus = max(1, int(resources.get("cpu", 1)))
    combos = expand_grid(param_grid, search, num_samples, seed)
    base = {k: v for k, v in estimator.param_values().items() if k not in OWNED}
    if seed is not None and base.get("seed") is None:
        base["seed"] = seed
    keys = [trial_key(dict(base, **c)) for c in combos]
    varying = varying_params(param_grid, combos)

    spark = train_df.sparkSession
    root = parse(storage_path or cache_root(spark, estimator.getOrDefault("cache_dir")),
                 "storage_path").text
    work = join(root, f"sparkae-tune-{uuid.uuid4().hex[:12]}")
    store = root if storage_path else work
    fs.makedirs(join(store, "models"), "storage_path")
    try:
        finished = {k for k, r in read_record(store).items() if r.get("status") in FINAL}
        todo = sorted({i for i, k in enumerate(keys) if k not in finished})
        if finished & set(keys):
            log.info("resuming from %s: %d of %d trials already finished", store,
                     len(set(keys) & finished), len(set(keys)))
        if todo:
            ctx = {"base": base, "combos": combos, "keys": keys,
                   "cpus": trial_cpus, "store": store,
                   "work": work, "cache_dir": join(work, "cache"),
                   "asha": scheduler == "asha", "seed": seed, "storage": fs.options()}
            _run_grid(spark, train_df, validation_df, ctx, todo, varying, resources,
                      max_concurrent_trials, include_dashboard)
        board, best = leaderboard(store, combos, keys, varying, validation_df is not None)
        best_model = AutoencoderModel.load(best["model"]) if best else None
        quantile = estimator.getOrDefault("anomaly_quantile")
        if best_model is not None and best_model.threshold is None and quantile is not None:
            # trials train without Spark: the quantile of the training errors is taken
            # here, once, for the model that is returned
            best_model.calibrate_threshold(train_df, quantile)
        best_params = dict(best["params"]) if best else {}
        if best is None:
            log.warning("every trial failed; see the leaderboard's error column")
    finally:
        fs.delete(work, "storage_path")
    return TuneResult(board, best_params, best_model, storage_path)


def _run_grid(spark: Any, train_df: DataFrame, validation_df: Optional[DataFrame],
              ctx: Dict[str, Any], todo: List[int], varying: List[str],
              resources: Dict[str, float], max_concurrent_trials: Optional[int],
              include_dashboard: bool) -> None:
    """Prepare the input, run trials ``todo`` on Ray, and complete their record (trials
    ASHA stopped, trials Ray itself failed); raise KeyboardInterrupt when some did not end.

    ``ctx`` is the trials' shared context (:func:`sparkae.tune.trial.run_trial`) less the
    prepared inputs, which are added here."""
    from ray import tune

    combos, keys, store = ctx["combos"], ctx["keys"], ctx["store"]
    t0 = time.perf_counter()
    prepared, prep_of = prepare_once(train_df, validation_df, ctx["base"], combos, todo,
                                     ctx["cache_dir"])
    log.info("tuning: prepared the input once in %.1f s (%d preparation(s)); %d trials to run",
             time.perf_counter() - t0, len(prepared), len(todo))
    ctx = dict(ctx, prepared=prepared, prep_of=prep_of)
    sched = None
    if ctx["asha"]:
        from ray.tune.schedulers import ASHAScheduler

        epochs = max(int(dict(ctx["base"], **c).get("epochs", 10)) for c in combos)
        sched = ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1,
                              reduction_factor=2)
    total = len(set(keys))
    progress = progress_callback(combos, varying, total,
                                 total - len({keys[i] for i in todo}))
    with ray_session(spark, include_dashboard) as (cpus, ray_dir):
        trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), resources)
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(todo)},
            # reuse_actors: a Ray worker runs trial after trial, importing Torch once
            tune_config=tune.TuneConfig(metric="mse", mode="min", scheduler=sched,
                                        max_concurrent_trials=max_concurrent_trials,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name="grid", storage_path=ray_dir, verbose=0,
                                      callbacks=[progress]))
        log.info("tuning: Ray up with %d CPUs; %d CPU(s) per trial", cpus, ctx["cpus"])
        grid = tuner.fit()
        # trials ASHA stopped end in "running": mark them, and record Ray-level failures
        rec = read_record(store)
        for res in grid:
            index = res.config.get("trial") if res.config else None
            if index is None:
                continue
            key = keys[index]
            last = rec.get(key)
            if res.error is not None and (last is None or last["status"] not in FINAL):
                append_record(store, failed_row(key, index, combos[index], str(res.error)))
            elif last is not None and last["status"] == "running":
                append_record(store, dict(last, status="stopped"))
    rec = read_record(store)
    left = [i for i in todo if (rec.get(keys[i]) or {}).get("status") not in FINAL]
    if left:  # Ray Tune ended the run on Ctrl-C (SIGINT) before these trials finished
        raise KeyboardInterrupt(f"grid interrupted: {len(left)} of {len(todo)} trials did not "
                                "finish; call again with the same storage_path to resume")
