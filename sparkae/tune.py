"""Hyperparameter grids with Ray Tune: ``grid_search`` fits one Autoencoder per combination.

Design (issue 6):

- **Data once.** The driver prepares the input (feature checks, statistics) and
  materializes it as Parquet once (:func:`sparkae.estimator.prepare_input`, once per
  distinct preparation: trials that vary only training Params share one) under a work
  directory. Each trial trains from it with :meth:`Autoencoder.fit_prepared`: no Spark
  job and no JVM in the trial (a trial with ``num_workers`` > 1 opens a local SparkSession
  only to start its ranks). No trial re-reads the source table.
- **Ray.** On a local Spark master: a local Ray instance on 127.0.0.1 sized from the
  master (``local[N]``), dashboard off. On a cluster master (``spark://``, ``yarn``, ...):
  Ray on Spark (``ray.util.spark.setup_ray_cluster``) sized from the cluster; then the
  work directory must be a path every worker sees (``storage_path``, else the cache root:
  the ``cache_dir`` Param or ``spark.sparkae.cacheDir``). Ray is always torn down at the
  end, also on errors and Ctrl-C. A Ray instance already running in the process
  (``ray.is_initialized()``) is used as is and left running.
- **Record.** Every report of a trial is one small JSON object
  ``<store>/record/<key>-<time>-<id>.json`` (key = a hash of all the trial's Param values;
  one object each, since object stores cannot append). The store is any location
  :mod:`sparkae.io` reaches (``s3a://`` included). With ``storage_path``, a later call with
  the same grid skips every trial whose last record is final (ok, error, stopped): that is
  the resume.
- **ASHA.** With ``scheduler="asha"`` a trial trains epoch by epoch (``fit_prepared``
  with ``epochs=e``, ``checkpoint_dir`` and ``resume=True`` for e = 1..epochs: each call
  continues from the previous checkpoint) and reports the MSE of every epoch, so ASHA can
  stop it at a rung; without a scheduler a trial is one fit that reports once.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import pandas as pd
from pyspark.sql import DataFrame

from sparkae.estimator import Autoencoder, AutoencoderModel
from sparkae.io import fs
from sparkae.io.uri import join, parse
from sparkae.params import AutoencoderParams, check_known

log = logging.getLogger("sparkae")

RECORD = "record"
FINAL = ("ok", "error", "stopped")
#: Params that take a list value: their grid candidates must be lists.
LIST_PARAMS = ("hidden", "hidden_dropout_ratios", "features_cols", "outputs")
#: Params a trial sets itself.
_OWNED = ("cache_dir", "keep_cache", "checkpoint_dir", "num_threads")


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


# ---------------------------------------------------------------------------------------
# The grid

def expand_grid(param_grid: Dict[str, List[Any]], search: str = "grid",
                num_samples: Optional[int] = None, seed: Optional[int] = None
                ) -> List[Dict[str, Any]]:
    """The combinations to try: the full product (``search="grid"``) or ``num_samples``
    draws from it (``search="random"``, seeded, without repeats while combinations last).

    Raises
    ------
    ValueError
        Unknown Param names (with the closest), a value that is not a list of candidates,
        a list-valued Param whose candidates are not lists, a bad ``search``/``num_samples``.
    """
    if not isinstance(param_grid, dict) or not param_grid:
        raise ValueError(f"param_grid: got {param_grid!r}, expected a non-empty mapping of "
                         "Param name to a list of candidate values")
    known = [p.name for p in AutoencoderParams().params]
    check_known(list(param_grid), known, "param_grid")
    for name, values in param_grid.items():
        if name in _OWNED:
            raise ValueError(f"param_grid: '{name}' is set by grid_search itself")
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"param_grid['{name}']: got {values!r}, expected a non-empty list "
                             "of candidate values")
        if name in LIST_PARAMS and not all(isinstance(v, (list, tuple)) or v is None
                                           for v in values):
            raise ValueError(f"param_grid['{name}']: got {values!r}; '{name}' takes a list, so "
                             f"give a list of lists, e.g. [[100], [300, 100, 300]]")
    names = list(param_grid)
    combos = [dict(zip(names, (list(v) if isinstance(v, tuple) else v for v in vals)))
              for vals in itertools.product(*(param_grid[n] for n in names))]
    if search == "grid":
        if num_samples is not None:
            raise ValueError("num_samples: only for search='random'")
        return combos
    if search != "random":
        raise ValueError(f"search: got {search!r}, expected 'grid' or 'random'")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: got {num_samples!r}, expected an integer >= 1 with "
                         "search='random'")
    rng = random.Random(seed)
    picked: List[Dict[str, Any]] = []
    while len(picked) < num_samples:
        pool = list(combos)
        rng.shuffle(pool)
        picked.extend(pool[:num_samples - len(picked)])
    return picked


def trial_key(values: Dict[str, Any]) -> str:
    """A stable key for a trial's full Param values (what the record is keyed by)."""
    text = json.dumps({k: v for k, v in sorted(values.items()) if k not in _OWNED},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# The record

def read_record(store: str) -> Dict[str, Dict[str, Any]]:
    """The last record of each trial key in ``store`` (empty without a record)."""
    folder = join(store, RECORD)
    rows = []
    for name in fs.listdir(folder, "storage_path"):
        if not name.endswith(".json"):
            continue
        try:
            rows.append(json.loads(fs.read_bytes(join(folder, name), "storage_path")))
        except (ValueError, FileNotFoundError):  # removed meanwhile, or not ours
            continue
    out: Dict[str, Dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r.get("written", 0.0), r.get("seq", 0))):
        out[row["key"]] = row
    return out


_SEQ = itertools.count()


def _append(store: str, row: Dict[str, Any]) -> None:
    stamped = dict(row, written=time.time(), seq=next(_SEQ))
    name = f"{row['key']}-{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    fs.write_bytes(join(store, RECORD, name), json.dumps(stamped, default=str).encode(),
                   "storage_path")


# ---------------------------------------------------------------------------------------
# One trial (runs in a Ray worker)

def _trial_session(cpus: int):
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{cpus}]").appName("sparkae-tune-trial")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.sql.shuffle.partitions", str(cpus))
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.ui.showConsoleProgress", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _run_trial(config: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    with fs.using(ctx["storage"]):   # this Ray worker reaches the store as the driver does
        _trial(config, ctx)


def _trial(config: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    import ray
    from ray import tune

    index = config["trial"]
    params = dict(ctx["base"], **ctx["combos"][index])
    key = ctx["keys"][index]
    cpus = ctx["cpus"]
    store = ctx["store"]
    model_dir = join(store, "models", key)
    # where Ray placed the trial (its node), kept in the record
    row = {"key": key, "trial": index, "params": ctx["combos"][index],
           "node_ip": ray.util.get_node_ip_address(),
           "node_id": ray.get_runtime_context().get_node_id()}
    t0 = time.perf_counter()
    spark = None

    def record(status: str, model=None, error: Optional[str] = None) -> Dict[str, Any]:
        s = model.summary if model is not None else None
        full = dict(row, status=status, error=error, wall_s=round(time.perf_counter() - t0, 3),
                    train_mse=s.train_mse if s else None,
                    validation_mse=s.validation_mse if s else None,
                    epochs=s.epochs if s else 0,
                    model=model_dir if model is not None else None)
        _append(store, full)
        return full

    try:
        prepared = ctx["prepared"][ctx["prep_of"][index]]
        if isinstance(prepared, str):   # the driver could not prepare this trial's input
            tune.report(_metrics(record("error", error=prepared)))
            return
        params.update(cache_dir=ctx["cache_dir"], keep_cache=True, num_threads=cpus)
        if int(params.get("num_workers") or 1) > 1:
            spark = _trial_session(cpus)   # TorchDistributor starts the ranks from a session
        if not ctx["asha"]:
            model = Autoencoder(**params).fit_prepared(prepared)
            model.write().overwrite().save(model_dir)
            tune.report(_metrics(record("ok", model)))
            return
        epochs = int(params.get("epochs", 10))
        params["checkpoint_dir"] = join(ctx["work"], "checkpoints", key)
        if params.get("seed") is None:
            params["seed"] = ctx["seed"] if ctx["seed"] is not None else random.randrange(2**31)
        done = 0
        for epoch in range(1, epochs + 1):
            model = Autoencoder(**dict(params, epochs=epoch)).fit_prepared(
                prepared, resume=epoch > 1)
            if model.summary.epochs <= done:  # the loop stopped early (stopping_rounds)
                break
            done = model.summary.epochs
            model.write().overwrite().save(model_dir)
            # "running" until the end: a trial ASHA stops is marked "stopped" by the driver
            full = record("ok" if epoch == epochs else "running", model)
            tune.report(_metrics(full))
        if done < epochs:
            record("ok", model)
    except Exception as exc:  # noqa: BLE001 - a failed trial is a leaderboard row
        msg = f"{type(exc).__name__}: {exc}".strip()
        log.debug("trial %d failed:\n%s", index, traceback.format_exc())
        full = record("error", error=msg[:2000])
        tune.report(_metrics(full))
    finally:
        if spark is not None:
            spark.stop()


def _metrics(row: Dict[str, Any]) -> Dict[str, Any]:
    mse = row["validation_mse"] if row["validation_mse"] is not None else row["train_mse"]
    return {"mse": float(mse) if mse is not None else float("inf"),
            "train_mse": row["train_mse"], "validation_mse": row["validation_mse"],
            "epochs": row["epochs"], "status": row["status"], "error": row["error"] or ""}


# ---------------------------------------------------------------------------------------
# Ray

def _local_cpus(master: str) -> Optional[int]:
    if not master.startswith("local"):
        return None
    inside = master[master.find("[") + 1:master.find("]")] if "[" in master else "1"
    inside = inside.split(",")[0].strip()
    return os.cpu_count() or 1 if inside == "*" else max(1, int(inside))


def _loopback_driver(spark: Any) -> bool:
    """True when ``spark.driver.host`` resolves to a loopback address."""
    import ipaddress
    import socket

    host = spark.sparkContext.getConf().get("spark.driver.host", "") or ""
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback if host else False
    except (OSError, ValueError):
        return False


def _executor_resources(spark: Any) -> tuple:
    """``(cpus, gpus)`` of one executor: what a Ray worker node on it may take.

    Ray on Spark's default is the worker machine's physical cores, which a task cannot get
    when an executor has fewer (a standalone worker started with ``--cores 1``): its
    worker-node job would wait for ever. ``spark.executor.cores`` when set, else the
    cluster's task slots times ``spark.task.cpus`` over its executors."""
    from sparkae.train.distributed import task_slots

    conf = spark.sparkContext.getConf()
    gpus = int(float(conf.get("spark.executor.resource.gpu.amount", "0") or 0))
    if conf.get("spark.executor.cores"):
        return max(1, int(conf.get("spark.executor.cores"))), gpus
    total, _ = task_slots(spark)
    task_cpus = int(conf.get("spark.task.cpus", "1") or 1)
    executors = max(1, len(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()) - 1)
    return max(1, total * task_cpus // executors), gpus


@contextlib.contextmanager
def ray_for(spark: Any, include_dashboard: bool = False) -> Iterator[int]:
    """Start Ray for ``spark``'s master and yield its CPU count; tear it down at the end.

    A local master gets a local Ray on 127.0.0.1 with the master's cores; any other master
    gets Ray on Spark sized from the cluster. An already initialized Ray is used as is.
    """
    master = spark.sparkContext.master
    cpus = _local_cpus(master)
    if cpus is None and _loopback_driver(spark):
        # A cluster whose driver is on loopback is on one machine. Ray worker nodes cannot
        # join a head over loopback (`ray start --address` resolves 127.0.0.1 to the
        # machine's outward address, or refuses in single-node mode), so Ray runs locally
        # on 127.0.0.1 with the cluster's task slots, capped at the machine's cores.
        from sparkae.train.distributed import task_slots

        cpus = max(1, min(task_slots(spark)[0], os.cpu_count() or 1))
        log.info("tuning: the Spark driver of %s is on loopback: Ray runs on 127.0.0.1 "
                 "with %d CPU(s) instead of Ray on Spark", master, cpus)
    if cpus is not None and "ray" not in sys.modules:
        # Ray reads this at import: without it, "127.0.0.1" is resolved to the machine's
        # outward address and Ray's servers listen there. Child processes inherit it.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        yield int(ray.cluster_resources().get("CPU", 1))
        return
    if cpus is not None and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None:
        # Ray was imported before us: same effect for this process and Ray's children
        from ray._private import ray_constants

        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
    cluster = False
    try:
        if cpus is not None:
            ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=cpus,
                     include_dashboard=include_dashboard, log_to_driver=False,
                     logging_level=logging.WARNING, object_store_memory=256 * 1024**2)
        else:
            from ray.util.spark import MAX_NUM_WORKER_NODES, setup_ray_cluster

            cluster = True
            bindir = os.path.dirname(sys.executable)
            if shutil.which("ray") is None and os.path.exists(os.path.join(bindir, "ray")):
                # Ray on Spark runs the `ray` command found on PATH (a virtual environment's
                # Python may be run without it); the executors need it on their PATH too
                os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
            node_cpus, node_gpus = _executor_resources(spark)
            log.info("tuning: starting Ray on Spark on the workers of %s (a Ray node per "
                     "executor: %d CPU(s), %d GPU(s))", master, node_cpus, node_gpus)
            address, _ = setup_ray_cluster(
                max_worker_nodes=MAX_NUM_WORKER_NODES,
                num_cpus_worker_node=node_cpus, num_gpus_worker_node=node_gpus,
                head_node_options={"include_dashboard": include_dashboard})
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            log.info("tuning: Ray nodes: %s", _describe_nodes(ray.nodes()))
        yield cpus
    finally:
        ray.shutdown()
        if cluster:
            from ray.util.spark import shutdown_ray_cluster

            with contextlib.suppress(Exception):
                shutdown_ray_cluster()


def _describe_nodes(nodes: List[Dict[str, Any]]) -> str:
    """``10.0.0.1 (0 CPU, head), 10.0.0.2 (1 CPU), ...``: the alive nodes of ``ray.nodes()``."""
    out = []
    for n in nodes:
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        head = ", head" if "node:__internal_head__" in res else ""
        out.append(f"{n.get('NodeManagerAddress')} ({int(res.get('CPU', 0))} CPU{head})")
    return ", ".join(out)


def _progress_callback(combos: List[Dict[str, Any]], varying: List[str], total: int,
                       already: int):
    from ray.tune import Callback

    class Progress(Callback):
        """One line per finished trial (Ray's own output is off)."""

        def __init__(self) -> None:
            self.done = already
            self.seen: set = set()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trial, trial.last_result or {})

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, {"status": "error", "error": "the Ray worker failed"})

        def _line(self, trial, res):
            if trial.trial_id in self.seen:
                return
            self.seen.add(trial.trial_id)
            self.done += 1
            combo = combos[trial.config["trial"]]
            what = " ".join(f"{k}={combo[k]}" for k in varying)
            status = res.get("status", "?")
            if status == "running":
                status = "stopped"
            mse = res.get("mse")
            score = f"mse={mse:.6g}" if isinstance(mse, float) and math.isfinite(mse) else ""
            tail = res.get("error") or ""
            log.info("[%d/%d] %-40s %-16s epochs=%s %s %s", self.done, total, what, score,
                     res.get("epochs", "?"), status, tail[:120])

    return Progress()


# ---------------------------------------------------------------------------------------
# The entry point

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
    base = {k: v for k, v in estimator.param_values().items() if k not in _OWNED}
    if seed is not None and base.get("seed") is None:
        base["seed"] = seed
    keys = [trial_key(dict(base, **c)) for c in combos]
    varying = [k for k in param_grid if len({json.dumps(c[k], default=str) for c in combos}) > 1]
    varying = varying or list(param_grid)

    spark = train_df.sparkSession
    from sparkae.data.cache import cache_root

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
            _run_grid(spark, train_df, validation_df, base, combos, keys, todo, varying,
                      work, store, trial_cpus, resources, max_concurrent_trials, scheduler,
                      seed, include_dashboard)
        board, best = _leaderboard(store, combos, keys, varying, validation_df is not None)
        best_model = AutoencoderModel.load(best["model"]) if best else None
        quantile = estimator.getOrDefault("anomaly_quantile")
        if best_model is not None and best_model.threshold is None and quantile is not None:
            # trials train without Spark: the quantile of the training errors is taken
            # here, once, for the model that is returned
            best_model._threshold = best_model.error_quantile(train_df, quantile)
        best_params = dict(best["params"]) if best else {}
        if best is None:
            log.warning("every trial failed; see the leaderboard's error column")
    finally:
        fs.delete(work, "storage_path")
    return TuneResult(board, best_params, best_model, storage_path)


def _run_grid(spark, train_df, validation_df, base, combos, keys, todo, varying, work,
              store, trial_cpus, resources, max_concurrent_trials, scheduler, seed,
              include_dashboard) -> None:
    from ray import tune

    t0 = time.perf_counter()
    cache_dir = join(work, "cache")
    prepared, prep_of = _prepare_once(train_df, validation_df, base, combos, todo, cache_dir)
    log.info("tuning: prepared the input once in %.1f s (%d preparation(s)); %d trials to run",
             time.perf_counter() - t0, len(prepared), len(todo))
    ctx = {"base": base, "combos": combos, "keys": keys, "cpus": trial_cpus, "store": store,
           "work": work, "prepared": prepared, "prep_of": prep_of, "cache_dir": cache_dir,
           "asha": scheduler == "asha", "seed": seed, "storage": fs.options()}
    sched = None
    if scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        epochs = max(int(dict(ctx["base"], **c).get("epochs", 10)) for c in combos)
        sched = ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1,
                              reduction_factor=2)
    # Ray's own results stay on this machine (sparkae keeps its record in the store);
    # removed after Ray is down, also when Ray fails to start
    ray_dir = tempfile.mkdtemp(prefix="sparkae-ray-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, ray_dir, True)
        cpus = stack.enter_context(ray_for(spark, include_dashboard))
        stack.enter_context(_env(RAY_AIR_NEW_OUTPUT="0"))
        trainable = tune.with_resources(tune.with_parameters(_run_trial, ctx=ctx), resources)
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(todo)},
            # reuse_actors: a Ray worker runs trial after trial, importing Torch once
            tune_config=tune.TuneConfig(metric="mse", mode="min", scheduler=sched,
                                        max_concurrent_trials=max_concurrent_trials,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name="grid", storage_path=ray_dir,
                                      verbose=0, callbacks=[_progress_callback(
                                          combos, varying, len(set(keys)),
                                          len(set(keys)) - len({keys[i] for i in todo}))]))
        log.info("tuning: Ray up with %d CPUs; %d CPU(s) per trial", cpus, trial_cpus)
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
                _append(store, {"key": key, "trial": index, "params": combos[index],
                                "status": "error", "error": str(res.error)[:2000],
                                "wall_s": None, "train_mse": None, "validation_mse": None,
                                "epochs": 0, "model": None})
            elif last is not None and last["status"] == "running":
                _append(store, dict(last, status="stopped"))
    rec = read_record(store)
    left = [i for i in todo if (rec.get(keys[i]) or {}).get("status") not in FINAL]
    if left:  # Ray Tune ended the run on Ctrl-C (SIGINT) before these trials finished
        raise KeyboardInterrupt(f"grid interrupted: {len(left)} of {len(todo)} trials did not "
                                "finish; call again with the same storage_path to resume")


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the block (RAY_AIR_NEW_OUTPUT=0 with verbose=0: Ray
    Tune prints nothing; the progress lines are ours)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _prepare_once(train_df: DataFrame, validation_df: Optional[DataFrame],
                  base: Dict[str, Any], combos: List[Dict[str, Any]], todo: List[int],
                  cache_dir: str) -> tuple:
    """Prepare and materialize the input once per distinct preparation (usually one for the
    whole grid) on the driver. Returns the prepared inputs (a :class:`PreparedInput`, or the
    error text when preparing failed: those trials are reported with it) and, per trial
    index, which one it trains from."""
    from sparkae.estimator import prepare_input, preparation_key

    prepared: List[Any] = []
    by_key: Dict[str, int] = {}
    prep_of: Dict[int, int] = {}
    for i in todo:
        try:
            values = Autoencoder(**dict(base, **combos[i], cache_dir=cache_dir,
                                        keep_cache=True)).param_values()
            pkey = preparation_key(values)
        except Exception as exc:  # noqa: BLE001 - a bad value: the trial reports it
            prep_of[i] = len(prepared)
            prepared.append(f"{type(exc).__name__}: {exc}"[:2000])
            continue
        if pkey not in by_key:
            by_key[pkey] = len(prepared)
            try:
                prepared.append(prepare_input(train_df, values, validation_df))
            except Exception as exc:  # noqa: BLE001 - e.g. a missing features_col
                prepared.append(f"{type(exc).__name__}: {exc}"[:2000])
        prep_of[i] = by_key[pkey]
    return prepared, prep_of


def _leaderboard(store: str, combos: List[Dict[str, Any]], keys: List[str],
                 varying: List[str], has_valid: bool):
    rec = read_record(store)
    rows, seen = [], set()
    for index, (combo, key) in enumerate(zip(combos, keys)):
        if key in seen:
            continue
        seen.add(key)
        r = rec.get(key) or {"status": "not run", "error": None, "train_mse": None,
                             "validation_mse": None, "epochs": 0, "wall_s": None,
                             "model": None}
        rows.append(dict({"trial": index}, **{k: combo[k] for k in varying},
                         train_mse=r.get("train_mse"), validation_mse=r.get("validation_mse"),
                         epochs=r.get("epochs"), wall_s=r.get("wall_s"), status=r["status"],
                         error=r.get("error"), _model=r.get("model"),
                         _params=combo))
    board = pd.DataFrame(rows)
    by = "validation_mse" if has_valid else "train_mse"
    board[by] = pd.to_numeric(board[by])
    board["_failed"] = board["status"].isin(["error", "not run"])
    board = board.sort_values(["_failed", by], na_position="last", kind="stable")
    best = None
    for _, r in board.iterrows():
        if not r["_failed"] and r["_model"] and fs.isdir(r["_model"], "storage_path"):
            best = {"model": r["_model"], "params": r["_params"]}
            break
    board = board.drop(columns=["_failed", "_model", "_params"]).reset_index(drop=True)
    return board, best
