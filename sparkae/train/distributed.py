"""Launch training ranks. The only module that touches TorchDistributor.

``num_workers=1`` trains in the driver process (:func:`run_rank`, no process group): the
fastest path for small data and tests. ``num_workers=N`` starts N ranks with PySpark's
``TorchDistributor``: N local processes on the driver when the master is ``local[...]``,
N barrier tasks on a cluster. Under Spark Connect TorchDistributor runs the same way
(local ranks start beside the Python client, which must see the materialized data; see
:func:`sparkae.data.converter.materialize`). Each rank runs :func:`sparkae.train.worker.rank_main`:
DistributedDataParallel over gloo (CPU) or nccl (GPU, the device Spark assigned to its
task), its own shard of the materialized Parquet, and rank 0 returns weights and
history as safetensors bytes and JSON. Local runs rendezvous on 127.0.0.1.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from sparkae.io import fs
from sparkae.data.converter import ParquetBatches, list_units, parquet_files, read_unit_arrow
from sparkae.nn.models import build_network
from sparkae.progress import EpochProgress
from sparkae.train import checkpoint as ckpt
from sparkae.train.loop import TrainConfig, train

log = logging.getLogger("sparkae")

#: Most output values (rows x modelled features) in one validation batch.
VALID_BATCH_VALUES = 16_000_000


@dataclass
class TrainJob:
    """Everything a rank needs, as plain picklable values."""

    train_path: Union[str, List[str]]              # materialized directory or its files
    valid_path: Optional[Union[str, List[str]]]
    spec: Dict[str, Any]
    scaling: Dict[str, Any]          # keep, shift, scale, fill (lists or arrays)
    config: TrainConfig
    batch_size: int
    seed: int
    num_threads: Optional[int] = None
    num_workers: int = 1
    use_gpu: bool = False
    loader: str = "arrow"            # resolved loader: "arrow" or "petastorm"
    sparse: bool = False             # CSR batches into the first layer
    checkpoint_dir: Optional[str] = None
    checkpoint_interval: int = 1
    resume_from: Optional[str] = None   # a checkpoint directory
    meta: Dict[str, Any] = field(default_factory=dict)   # stored with every checkpoint
    threads_per_rank: int = 1
    timeout_s: int = 1800            # collective timeout of the process group
    run_dir: Optional[str] = None    # local mode: where failing ranks leave their error
    extra: Dict[str, Any] = field(default_factory=dict)
    progress: str = "auto"           # the progress Param (sparkae.progress)
    storage: Optional[Dict[str, str]] = None   # sparkae.io settings from the driver's Spark


class RankFailedError(RuntimeError):
    """A training rank failed; ``rank``, ``error`` (type and message) and ``log_tail``."""

    def __init__(self, message: str, rank: Optional[int] = None, error: str = "",
                 log_tail: Optional[List[str]] = None) -> None:
        super().__init__(message)
        self.rank, self.error, self.log_tail = rank, error, log_tail or []


def _unit_reader(loader: str) -> Callable:
    if loader == "petastorm":
        from sparkae.data.petastorm import read_unit

        return read_unit
    return read_unit_arrow


def _to_device(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    t = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch)
    return t.to(device, non_blocking=True)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 9_176 + rank * 7_919) % (2**63 - 1)


def run_rank(job: TrainJob, rank: int = 0, world_size: int = 1,
             wrap: Optional[Callable[[torch.nn.Module], torch.nn.Module]] = None,
             reduce: Optional[Callable[[List[float]], List[float]]] = None,
             device: Optional[torch.device] = None) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    """Train one rank; return ``(state_dict, history)``.

    Parameters
    ----------
    job : TrainJob
    rank, world_size : int
        This rank's shard of the training data.
    wrap : callable, optional
        Wraps the network for the forward pass (DistributedDataParallel).
    reduce : callable, optional
        Sums floats across ranks (see :func:`sparkae.train.loop.train`).
    device : torch.device, optional
        Default CPU.
    """
    with fs.using(job.storage):   # reach the cache and checkpoints as the driver does
        return _run_rank(job, rank, world_size, wrap, reduce, device)


def _run_rank(job: TrainJob, rank: int, world_size: int, wrap: Optional[Callable],
              reduce: Optional[Callable], device: Optional[torch.device]):
    device = device or torch.device("cpu")
    size = job.spec["input_size"]
    torch.manual_seed(job.seed)
    net = build_network(job.spec)
    net.scaler.set_statistics(**job.scaling)
    resume_state = None
    if job.resume_from:
        epoch, resume_state, _ = ckpt.load(job.resume_from)
        net.load_state_dict(resume_state["model"])
        log.info("resuming after epoch %d from %s", epoch, job.resume_from)
    net.to(device)
    # mini_batch_size is the global batch: the ranks split it, so a step sees the same
    # number of rows (and the model the same dynamics) whatever num_workers is.
    rank_batch = -(-job.batch_size // world_size)
    reader = ParquetBatches(job.train_path, size, rank_batch, shuffle=True, seed=job.seed,
                            rank=rank, world_size=world_size, role="training data",
                            sparse=job.sparse, reader=_unit_reader(job.loader),
                            skip_missing=job.config.skip_missing)
    valid = None
    if job.valid_path:
        rows = max(1, min(4096, VALID_BATCH_VALUES // max(1, job.spec["kept"])))
        vreader = ParquetBatches(job.valid_path, size, rows, shuffle=False, role="validation_df",
                                 sparse=job.sparse, reader=_unit_reader(job.loader),
                                 skip_missing=job.config.skip_missing)
        valid = lambda: (_to_device(b, device) for b in vreader.epoch(0))  # noqa: E731

    def batches(epoch: int):
        # Dropout and noise draws depend on (seed, epoch, rank) only: a resumed fit repeats
        # the uninterrupted one exactly.
        torch.manual_seed(_epoch_seed(job.seed, epoch, rank))
        for b in reader.epoch(epoch):
            yield _to_device(b, device)

    epochs = job.config.epochs
    # Ranks of a distributed run write to a pipe the driver reads: log lines, not a bar.
    mode = "log" if world_size > 1 and job.progress == "bar" else job.progress
    progress = EpochProgress(mode, epochs, rank=rank,
                             start_epoch=len(resume_state["history"]) if resume_state else 0)

    def save(epoch: int, state: Dict[str, Any]) -> None:
        if epoch % job.checkpoint_interval == 0 or epoch == epochs:
            ckpt.save(job.checkpoint_dir, epoch, state, job.meta)

    model = wrap(net) if wrap is not None else net
    try:
        history = train(net, batches, job.config, valid, on_epoch=progress, model=model,
                        reduce=reduce, resume_state=resume_state,
                        checkpoint=save if job.checkpoint_dir and rank == 0 else None,
                        rank=rank)
    finally:
        progress.close()
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}, history


def launch(job: TrainJob) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    """Run ``job``: in this process for one worker, else through TorchDistributor.

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
    torch.set_num_threads(job.num_threads or os.cpu_count() or 1)
    try:
        return run_rank(job, device=device)
    finally:
        torch.set_num_threads(previous)


# -- TorchDistributor ---------------------------------------------------------------------

def _run_torchrun(input_params: Dict[str, Any], train_path: str, *args: Any,
                  **kwargs: Any) -> None:
    """TorchDistributor's file runner, with the local rendezvous pinned to 127.0.0.1
    (its own ``--standalone`` uses "localhost")."""
    from pyspark.ml.torch.distributor import TorchDistributor

    if input_params["local_mode"]:
        _launch_local(int(input_params["num_processes"]), train_path, [str(a) for a in args])
        return
    cmd = TorchDistributor._create_torchrun_command(input_params, train_path, *args)
    _execute(cmd, input_params.get("log_streaming_client"))


#: Env var naming the rendezvous store of a local run (a ``file://`` URL).
STORE_ENV = "SPARKAE_RENDEZVOUS"


def _launch_local(world: int, train_path: str, args: List[str]) -> None:
    """Start ``world`` rank processes on this machine, without torchrun.

    torchrun's rendezvous store is a TCP server that listens on every interface; here the
    ranks meet through a file store in a private temporary directory instead, so a local
    run opens no listener beyond the loopback-bound gloo pairs. The ranks' output is
    streamed to this process's stdout. When a rank fails, the others are stopped and the
    error carries torchrun-style root-cause lines (rank, exit code, signal).
    """
    import subprocess
    import threading

    store_dir = tempfile.mkdtemp(prefix="sparkae-rendezvous-")
    base = dict(os.environ, WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                GROUP_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="0",
                GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
                OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    base[STORE_ENV] = "file://" + os.path.join(store_dir, "store")
    procs: List[Any] = []
    failed: List[Tuple[int, int, int]] = []   # (rank, exit code, pid), first failure first
    lock = threading.Lock()
    tails: Dict[int, List[str]] = {}

    def pump(rank: int, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace")
            tails.setdefault(rank, []).append(line)
            del tails[rank][:-40]
            with lock:
                sys.stdout.write(line)
                sys.stdout.flush()

    try:
        for rank in range(world):
            env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
            p = subprocess.Popen([sys.executable, train_path, *args], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            procs.append(p)
        pumps = [threading.Thread(target=pump, args=(r, p.stdout), daemon=True)
                 for r, p in enumerate(procs)]
        for t in pumps:
            t.start()
        while True:
            codes = [p.poll() for p in procs]
            for rank, code in enumerate(codes):
                if code not in (None, 0) and rank not in [f[0] for f in failed]:
                    failed.append((rank, code, procs[rank].pid))
            if failed or all(c is not None for c in codes):
                break
            time.sleep(0.1)
        if failed:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            deadline = time.time() + 10
            for p in procs:
                try:
                    p.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for t in pumps:
            t.join(timeout=5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(store_dir, ignore_errors=True)
    if failed:
        rank, code, pid = failed[0]
        lines = [f"Root Cause (first observed failure):\n  rank      : {rank} (local_rank: "
                 f"{rank})\n  exitcode  : {code} (pid: {pid})\n"]
        for r in sorted(tails):
            lines.append(f"last lines of rank {r}:\n" + "".join(tails[r][-20:]))
        raise RuntimeError("sparkae: training ranks failed:\n" + "".join(lines))


#: torchrun's report of a failed rank: its global rank and exit code (negative: a signal).
_ROOT_CAUSE = re.compile(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)"
                         r"[^\n]*?(?:\((SIG\w+)\))?\s*$", re.M)


def _execute(cmd: List[str], client: Any = None) -> None:
    """Run the torchrun command as TorchDistributor does (its output streamed to the driver),
    but fail when a rank failed: TorchDistributor's process wrapper exits 0 even then, and
    its generic error loses which rank failed and why. The error raised here carries the
    ranks' failure reports and torchrun's root-cause lines, which reach the driver."""
    import collections
    import subprocess

    from sparkae.train.worker import MARKER

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.PIPE, env=os.environ)
    proc.stdin.close()
    tail: collections.deque = collections.deque(maxlen=60)
    keep: List[str] = []
    block: List[str] = []
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace")
            tail.append(line)
            if MARKER in line:
                keep.append(line)
            if "Root Cause" in line or block:
                block.append(line)
                if len(block) > 12:
                    keep.extend(block)
                    block = []
            same_node = (client is not None and not client.failed and
                         client.sock.getsockname()[0] == client.sock.getpeername()[0])
            if not same_node:
                sys.stdout.write(line)
            if client is not None:
                client.send(line.rstrip())
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
    keep.extend(block)
    text = "".join(tail)
    if proc.returncode != 0 or keep or "ChildFailedError" in text:
        raise RuntimeError(f"sparkae: training ranks failed on host {_task_host()} (return code "
                           f"{proc.returncode}):\n" + "".join(keep) + "\nlast lines:\n" + text)


def _task_host() -> str:
    """``name (address)`` of the executor that runs this barrier task: the host of the
    ranks it started (their failure names it; the driver cannot tell otherwise)."""
    import socket

    name = socket.gethostname()
    try:
        from pyspark import BarrierTaskContext

        ctx = BarrierTaskContext.get()
        address = ctx.getTaskInfos()[ctx.partitionId()].address.rsplit(":", 1)[0]
    except Exception:  # noqa: BLE001 - not in a barrier task: the name is all there is
        address = ""
    return f"{name} ({address})" if address and address != name else name


#: The host :func:`_execute` names in a failed task's error (not the source line of the
#: ``raise`` that a Python traceback in the same text quotes).
_FAILED_HOST = re.compile(r"sparkae: training ranks failed on host ([^{}\n]+?) \(return code")


def _is_local(spark: Any) -> bool:
    """A ``local`` / ``local[N]`` master (TorchDistributor's own test for local mode)."""
    master = spark.conf.get("spark.master", "") or ""
    return master == "local" or master.startswith("local[")


def task_slots(spark: Any) -> Tuple[int, int]:
    """``(total, free)`` task slots of the cluster (for a local master: its cores)."""
    master = spark.conf.get("spark.master", "") or ""
    m = re.match(r"local\[(\d+|\*)", master)
    if master == "local" or m:
        if master == "local":
            return 1, 1
        n = (os.cpu_count() or 1) if m.group(1) == "*" else int(m.group(1))
        return n, n
    sc = spark.sparkContext
    jsc = sc._jsc.sc()
    try:
        rp = jsc.resourceProfileManager().defaultResourceProfile()
        total = int(jsc.maxNumConcurrentTasks(rp))
    except Exception:  # noqa: BLE001 - older or unusual Sparks
        cpus = int(sc.getConf().get("spark.task.cpus", "1"))
        total = sc.defaultParallelism // max(1, cpus)
    try:
        running = sum(int(e.numRunningTasks()) for e in jsc.statusTracker().getExecutorInfos())
    except Exception:  # noqa: BLE001
        running = 0
    return total, max(0, total - running)


def warn_slots(spark: Any, num_workers: int) -> None:
    """Log a warning when ``num_workers`` exceeds the task slots (a barrier stage waits
    for all of its tasks; a local run oversubscribes the cores)."""
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
        return max(1, min(total, os.cpu_count() or 1) // job.num_workers)
    # the session's conf, not the SparkContext's: Spark Connect clients have no SparkContext
    return max(1, int(spark.conf.get("spark.task.cpus", "1") or 1))


def _launch_distributed(job: TrainJob) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    from pyspark.ml.torch.distributor import TorchDistributor
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("num_workers > 1 needs an active SparkSession")
    rows = sum(u.rows for u in list_units(
        parquet_files(job.train_path) if isinstance(job.train_path, str) else job.train_path))
    if rows < job.num_workers:
        raise ValueError(f"Autoencoder param 'num_workers': got {job.num_workers}, but the "
                         f"training data has {rows} rows; every rank needs at least one")
    local = _is_local(spark)
    warn_slots(spark, job.num_workers)
    spark_gpus = False
    if job.use_gpu:
        if local:
            try:
                spark_gpus = "gpu" in spark.sparkContext.resources
            except Exception:  # noqa: BLE001 - Spark Connect: no driver resources here
                spark_gpus = False
            if not spark_gpus and torch.cuda.device_count() < 1:
                raise ValueError("Autoencoder param 'use_gpu': got True, but the driver has no "
                                 "GPU (no Spark 'gpu' resource and torch sees no CUDA device)")
        elif int(spark.conf.get("spark.task.resource.gpu.amount", "0") or 0) < 1:
            raise ValueError("Autoencoder param 'use_gpu': got True, but the cluster gives tasks "
                             "no GPU: set spark.task.resource.gpu.amount=1 (and "
                             "spark.executor.resource.gpu.amount) when starting Spark")
        spark_gpus = spark_gpus or not local
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
        result = distributor._run(_worker_entry(), _run_torchrun, job)
    except Exception as exc:  # noqa: BLE001 - turned into the failing rank's story
        raise rank_failure(exc, run_dir, job.num_workers) from None
    finally:
        if run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    if not isinstance(result, dict) or "weights" not in result:
        raise RankFailedError(f"rank 0 returned no result (got {type(result).__name__}); "
                              "see the ranks' output above", rank=0)
    from sparkae.train.worker import unpack_result

    state, history = unpack_result(result)
    wall = time.perf_counter() - t0
    trained = sum(h.get("seconds", 0.0) for h in history)
    log.info("%d ranks finished in %.1f s (%.1f s outside the training epochs: process start, "
             "rendezvous, data readers, result)", job.num_workers, wall, wall - trained)
    return state, history


def _worker_entry() -> Callable:
    from sparkae.train.worker import rank_main

    return rank_main


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def rank_failure(exc: BaseException, run_dir: Optional[str], world: int) -> Exception:
    """The error to raise for a failed distributed run: the first failing rank, its error
    and the last lines of its log when known, else the launcher's own error."""
    from sparkae.train.worker import MARKER

    reports: List[Dict[str, Any]] = []
    for path in glob.glob(os.path.join(run_dir or "", "error-rank*.json")) if run_dir else []:
        try:
            with open(path) as f:
                reports.append(json.load(f))
        except (OSError, ValueError):
            pass
    if not reports:
        for line in str(exc).split("\n"):
            idx = line.find(MARKER)
            if idx >= 0:
                try:
                    reports.append(json.loads(line[idx + len(MARKER):]))
                except ValueError:
                    pass
    reported = {r.get("rank") for r in reports}
    found = _FAILED_HOST.search(str(exc))
    host = f" on host {found.group(1)}" if found else ""   # the failing task's ranks' host
    killed = []
    for m in _ROOT_CAUSE.finditer(str(exc)):
        rank, code, name = int(m.group(1)), int(m.group(2)), m.group(3)
        if code < 0 and rank not in reported and rank not in [k[0] for k in killed]:
            killed.append((rank, -code, name or _signal_name(-code)))
    if killed:
        rank, signum, name = killed[0]
        others = sorted(reported | {k[0] for k in killed[1:]})
        also = f" (rank(s) {', '.join(map(str, others))} failed after it)" if others else ""
        return RankFailedError(
            f"training failed on rank {rank} of {world}: its process was killed by signal "
            f"{signum} ({name}){host}, e.g. out of memory or killed by a user or the "
            f"system{also}. "
            "Checkpoints (checkpoint_dir) let fit(..., resume=True) continue from the last "
            "complete epoch.", rank=rank, error=f"killed by {name}")
    if not reports:
        text = str(exc).strip()
        return RankFailedError(f"distributed training with {world} ranks failed before a rank "
                               f"reported an error: {type(exc).__name__}: "
                               f"{text[-3000:]}")
    from sparkae.train.worker import lost_peer

    # the earliest report, but a rank that only lost its peer is a consequence: a rank
    # with its own error comes first
    reports.sort(key=lambda r: (lost_peer(r.get("message", "")),
                                r.get("time", 0)))
    first = reports[0]
    tail = "\n".join("    " + line for line in first.get("tail", [])[-40:])
    others = sorted({r["rank"] for r in reports[1:]} - {first["rank"]})
    also = f" (rank(s) {', '.join(map(str, others))} failed after it)" if others else ""
    if lost_peer(first.get("message", "")):
        also += (" (this rank lost its connection to another rank, which failed or was "
                 "killed first; that rank's own error did not reach the driver)")
    where = f"rank {first['rank']} ran{host}\n" if host else ""
    message = (f"training failed on rank {first['rank']} of {first.get('world_size', world)}: "
               f"{first['type']}: {first['message']}{also}\n{where}"
               f"last lines of rank {first['rank']}'s log:\n{tail}")
    return RankFailedError(message, rank=first["rank"],
                           error=f"{first['type']}: {first['message']}",
                           log_tail=first.get("tail", []))
