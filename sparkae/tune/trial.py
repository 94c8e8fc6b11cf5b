"""One trial of a grid: the fit a Ray worker runs, its reports to Ray Tune and the store.

A trial trains from the input the driver prepared once (:meth:`Autoencoder.fit_prepared`):
no Spark job and no JVM, except a local SparkSession when ``num_workers`` > 1 (the ranks
start from one). Without a scheduler a trial is one fit that reports once; with ASHA it
trains epoch by epoch (``epochs=e``, ``checkpoint_dir`` and ``resume=True`` for
e = 1..epochs: each call continues from the previous checkpoint) and reports every epoch's
MSE, so ASHA can stop it at a rung.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
import traceback
from typing import Any, Dict, Optional

from sparkae.estimator import Autoencoder
from sparkae.io import fs
from sparkae.io.uri import join
from sparkae.tune.store import append_record

log = logging.getLogger("sparkae")


def trial_session(cpus: int) -> Any:
    """A local SparkSession on 127.0.0.1 with ``cpus`` cores, UI off: what a trial with
    ``num_workers`` > 1 starts its ranks from."""
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


def run_trial(config: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    """Ray Tune's trainable: run trial ``config["trial"]`` of the grid described by ``ctx``.

    Parameters
    ----------
    config : dict
        Ray Tune's config of the trial: ``{"trial": index into ctx["combos"]}``.
    ctx : dict
        The grid, shared by every trial: ``base`` (the estimator's Param values),
        ``combos``, ``keys``, ``cpus`` (per trial), ``store``, ``work``, ``prepared`` and
        ``prep_of`` (the prepared inputs and which one each trial trains from),
        ``cache_dir``, ``asha``, ``seed`` and ``storage`` (the driver's file-system options).

    Notes
    -----
    A failed trial raises nothing: it reports ``status="error"`` with its error, which
    becomes a leaderboard row.
    """
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
        append_record(store, full)
        return full

    try:
        prepared = ctx["prepared"][ctx["prep_of"][index]]
        if isinstance(prepared, str):   # the driver could not prepare this trial's input
            tune.report(metrics(record("error", error=prepared)))
            return
        params.update(cache_dir=ctx["cache_dir"], keep_cache=True, num_threads=cpus)
        if int(params.get("num_workers") or 1) > 1:
            spark = trial_session(cpus)   # TorchDistributor starts the ranks from a session
        if not ctx["asha"]:
            model = Autoencoder(**params).fit_prepared(prepared)
            model.write().overwrite().save(model_dir)
            tune.report(metrics(record("ok", model)))
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
            tune.report(metrics(full))
        if done < epochs:
            record("ok", model)
    except Exception as exc:  # noqa: BLE001 - a failed trial is a leaderboard row
        msg = f"{type(exc).__name__}: {exc}".strip()
        log.debug("trial %d failed:\n%s", index, traceback.format_exc())
        full = record("error", error=msg[:2000])
        tune.report(metrics(full))
    finally:
        if spark is not None:
            spark.stop()


def metrics(row: Dict[str, Any]) -> Dict[str, Any]:
    """What a trial reports to Ray Tune for one record row: ``mse`` (validation, else
    training; infinity without one) to rank and schedule by, and the row's details."""
    mse = row["validation_mse"] if row["validation_mse"] is not None else row["train_mse"]
    return {"mse": float(mse) if mse is not None else float("inf"),
            "train_mse": row["train_mse"], "validation_mse": row["validation_mse"],
            "epochs": row["epochs"], "status": row["status"], "error": row["error"] or ""}
