"""Launch training ranks from the driver.

``num_workers=1`` trains in the driver process (:func:`~sparkae.train.rank.run_rank`, no
process group): the fastest path for small data and tests. ``num_workers=N`` starts N
ranks with PySpark's ``TorchDistributor``: N local processes on the driver when the master
is ``local[...]``, N barrier tasks on a cluster. Under Spark Connect TorchDistributor runs
the same way (local ranks start beside the Python client, which must see the materialized
data; see :func:`sparkae.data.converter.materialize`). Each rank runs
:func:`sparkae.train.worker.rank_main`: gradients averaged over gloo (CPU) or nccl
(GPU, the device Spark assigned to its task) before each step, its own shard of the
materialized Parquet, and rank 0 returns weights and history as safetensors bytes and JSON. Local runs
rendezvous on 127.0.0.1 (:mod:`sparkae.train.torchrun`).

The layout of the distributed path: :mod:`~sparkae.train.rank` (what a rank trains),
:mod:`~sparkae.train.worker` (a rank's process), :mod:`~sparkae.train.protocol` (the
messages between ranks and driver), :mod:`~sparkae.train.torchrun` (starting the rank
processes), :mod:`~sparkae.train.failures` (the driver's account of a failure) and this
module (the driver's side: task slots, settings, TorchDistributor).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Tuple

import torch

from sparkae.io.jars import local_cores, usable_cpus
from sparkae.data import held
from sparkae.data.converter import list_units, parquet_files
from sparkae.spark_private import executor_infos, max_concurrent_tasks, run_distributor
from sparkae.train.failures import RankFailedError, rank_failure
from sparkae.train.protocol import unpack_result
from sparkae.train.rank import TrainJob, run_rank
from sparkae.train.torchrun import run_torchrun
from sparkae.train.worker import rank_main

log = logging.getLogger("sparkae")

# Names importable from here for the estimator, the jobs and the tests.
__all__ = ["RankFailedError", "TrainJob", "launch", "rank_failure", "run_rank", "task_slots",
           "warn_slots"]


def launch(job: TrainJob) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    """Run ``job``: in this process for one worker, else through TorchDistributor.

    Parameters
    ----------
    job : TrainJob
        What to train, on how many workers.

    Returns
    -------
    tuple
        Rank 0's weights and the per-epoch history.

    Raises
    ------
    ValueError
        ``use_gpu`` without a visible GPU, or GPU settings Spark lacks.
    RankFailedError
        A rank failed (the message names it and quotes the end of its log).
    """
    if job.num_workers <= 1:
        return _launch_in_process(job)
    return _launch_distributed(job)


def _launch_in_process(job: TrainJob) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    device = torch.device("cpu")
    if job.use_gpu:
        if not torch.cuda.is_available():
            raise ValueError("Autoencoder param 'use_gpu': got True, but torch sees no CUDA "
                             "device on the driver (torch.cuda.is_available() is False)")
        device = torch.device("cuda", 0)
    previous = torch.get_num_threads()
    torch.set_num_threads(job.num_threads or driver_threads())
    try:
        return run_rank(job, device=device)
    finally:
        torch.set_num_threads(previous)


def driver_threads() -> int:
    """Torch threads of a rank that trains in the driver: the cores this process may run on
    (its CPU affinity, which containers and ``taskset`` narrow), at most N under a
    ``local[N]`` master, at most ``spark.driver.cores`` where that is set and at most
    ``OMP_NUM_THREADS`` where that is set (the usual way to say how many threads a
    process sharing its cores should use)."""
    cores = usable_cpus()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        cores = min(cores, int(omp))
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
    except Exception:  # noqa: BLE001 - no classic session in this process
        spark = None
    if spark is not None:
        if _is_local(spark):
            cores = min(cores, task_slots(spark)[0])
        else:
            driver = spark.conf.get("spark.driver.cores", None)
            if driver:
                cores = min(cores, int(driver))
    return max(1, cores)


def _is_local(spark: Any) -> bool:
    """A ``local`` / ``local[N]`` master (TorchDistributor's own test for local mode)."""
    master = spark.conf.get("spark.master", "") or ""
    return master == "local" or master.startswith("local[")


def task_slots(spark: Any) -> Tuple[int, int]:
    """``(total, free)`` task slots of the cluster (for a local master: its cores).

    Parameters
    ----------
    spark : SparkSession
        A classic session when the master is not local (the status tracker is the JVM's).

    Returns
    -------
    tuple of int
        Task slots for the default resource profile, and those no task runs in now.
    """
    n = local_cores(spark.conf.get("spark.master", "") or "")
    if n is not None:
        return n, n
    try:
        total = max_concurrent_tasks(spark)
    except Exception:  # noqa: BLE001 - older or unusual Sparks
        sc = spark.sparkContext
        cpus = int(sc.getConf().get("spark.task.cpus", "1"))
        total = sc.defaultParallelism // max(1, cpus)
    try:
        running = sum(int(e.numRunningTasks()) for e in executor_infos(spark))
    except Exception:  # noqa: BLE001
        running = 0
    return total, max(0, total - running)


def warn_slots(spark: Any, num_workers: int) -> None:
    """Log a warning when ``num_workers`` exceeds the task slots (a barrier stage waits
    for all of its tasks; a local run oversubscribes the cores).

    Parameters
    ----------
    spark : SparkSession
        The session the ranks will run in.
    num_workers : int
        The ranks to start.
    """
    try:
        total, free = task_slots(spark)
    except Exception as exc:  # noqa: BLE001 - a warning must never fail the fit
        log.debug("could not count task slots: %s", exc)
        return
    local = _is_local(spark)
    if local and num_workers > total:
        log.warning("num_workers=%d exceeds the %d cores of master %s: the ranks share cores "
                    "and train slower than fewer ranks would", num_workers, total,
                    spark.conf.get("spark.master"))
    elif not local and num_workers > total:
        log.warning("num_workers=%d exceeds the cluster's %d task slots: the barrier stage "
                    "cannot start until executors are added (Spark retries, then fails). "
                    "Lower num_workers or add executors", num_workers, total)
    elif not local and num_workers > free:
        log.warning("num_workers=%d but only %d of %d task slots are free: the barrier stage "
                    "waits until enough running tasks finish", num_workers, free, total)


def _threads_per_rank(job: TrainJob, spark: Any, local: bool) -> int:
    if job.num_threads:
        return job.num_threads
    if local:
        total, _ = task_slots(spark)
        return max(1, min(total, usable_cpus()) // job.num_workers)
    # the session's conf, not the SparkContext's: Spark Connect clients have no SparkContext
    return max(1, int(spark.conf.get("spark.task.cpus", "1") or 1))


def _spark_gpus(job: TrainJob, spark: Any, local: bool) -> bool:
    """Whether TorchDistributor should ask Spark for GPUs; raises when ``use_gpu`` cannot
    be met."""
    if not job.use_gpu:
        return False
    if local:
        try:
            spark_gpus = "gpu" in spark.sparkContext.resources
        except Exception:  # noqa: BLE001 - Spark Connect: no driver resources here
            spark_gpus = False
        if not spark_gpus and torch.cuda.device_count() < 1:
            raise ValueError("Autoencoder param 'use_gpu': got True, but the driver has no "
                             "GPU (no Spark 'gpu' resource and torch sees no CUDA device)")
        return spark_gpus
    if int(spark.conf.get("spark.task.resource.gpu.amount", "0") or 0) < 1:
        raise ValueError("Autoencoder param 'use_gpu': got True, but the cluster gives tasks "
                         "no GPU: set spark.task.resource.gpu.amount=1 (and "
                         "spark.executor.resource.gpu.amount) when starting Spark")
    return True


def _launch_distributed(job: TrainJob) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    from pyspark.ml.torch.distributor import TorchDistributor
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("num_workers > 1 needs an active SparkSession")
    train = [job.train_path] if isinstance(job.train_path, str) else job.train_path
    held.check_files(train + ([job.valid_path] if isinstance(job.valid_path, str)
                              else list(job.valid_path or [])))
    rows = sum(u.rows for u in list_units(
        parquet_files(job.train_path) if isinstance(job.train_path, str) else job.train_path))
    if rows < job.num_workers:
        raise ValueError(f"Autoencoder param 'num_workers': got {job.num_workers}, but the "
                         f"training data has {rows} rows; every rank needs at least one")
    local = _is_local(spark)
    warn_slots(spark, job.num_workers)
    spark_gpus = _spark_gpus(job, spark, local)
    job.threads_per_rank = _threads_per_rank(job, spark, local)
    run_dir = tempfile.mkdtemp(prefix="sparkae-run-") if local else None
    job.run_dir = run_dir
    distributor = TorchDistributor(num_processes=job.num_workers, local_mode=local,
                                   use_gpu=spark_gpus)
    log.info("starting %d ranks with TorchDistributor (%s mode, %s, %d threads per rank)",
             job.num_workers, "local" if local else "barrier",
             "GPU" if job.use_gpu else "CPU", job.threads_per_rank)
    t0 = time.perf_counter()
    try:
        result = run_distributor(distributor, rank_main, run_torchrun, job)
    except Exception as exc:  # noqa: BLE001 - turned into the failing rank's story
        raise rank_failure(exc, run_dir, job.num_workers) from None
    finally:
        if run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    if not isinstance(result, dict) or "weights" not in result:
        raise RankFailedError(f"rank 0 returned no result (got {type(result).__name__}); "
                              "see the ranks' output above", rank=0)
    state, history = unpack_result(result)
    wall = time.perf_counter() - t0
    trained = sum(h.get("seconds", 0.0) for h in history)
    log.info("%d ranks finished in %.1f s (%.1f s outside the training epochs: process start, "
             "rendezvous, data readers, result)", job.num_workers, wall, wall - trained)
    return state, history
