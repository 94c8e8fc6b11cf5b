"""The body of one training rank in its own process (under torchrun / TorchDistributor).

:func:`rank_main` joins the process group (gloo on CPU, nccl on GPU; rendezvous on
127.0.0.1 for local runs), trains its shard through :func:`sparkae.train.rank.run_rank`
with its gradients averaged over the ranks (:mod:`sparkae.train.gradsync`), and on rank 0
returns the weights as safetensors bytes and the history as JSON text (:func:`sparkae.train.protocol.pack_result`).
Everything the rank prints is also kept in a short tail; if the rank fails, its report
(rank, error, traceback, the tail; :func:`sparkae.train.protocol.write_report`) goes to
its output and, in local mode, a file in the run directory, so that the driver can say
which rank failed and why (:func:`sparkae.train.failures.rank_failure`).
"""

from __future__ import annotations

import collections
import datetime
import io
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Deque, Dict, List, Optional

import torch

from sparkae.train.gradsync import averaged_gradients, broadcast_parameters
from sparkae.train.protocol import (MARKER, STORE_ENV, TAIL_LINES, lost_peer, pack_result,
                                    unpack_result, write_report)
from sparkae.train.rank import TrainJob, run_rank

log = logging.getLogger("sparkae")

# MARKER, lost_peer, pack_result and unpack_result are the protocol's; importable from
# here too, where the rank that uses them lives.
__all__ = ["MARKER", "PEER_LOST_GRACE_S", "TAIL_LINES", "lost_peer", "pack_result",
           "rank_main", "unpack_result"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Tee(io.TextIOBase):
    """A text stream that writes through and remembers the last lines."""

    def __init__(self, stream: Any, tail: Deque[str]) -> None:
        super().__init__()
        self.stream, self.tail, self.partial = stream, tail, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        self.tail.extend(lines)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:  # some libraries ask
        return False


#: Seconds a rank that lost a peer waits before failing (see :func:`rank_main`).
PEER_LOST_GRACE_S = 5.0


def _report(exc: BaseException, rank: int, world: int, tail: Deque[str],
            run_dir: Optional[str]) -> None:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    for line in "".join(tb).rstrip().split("\n"):
        tail.append(line)
    write_report({"rank": rank, "world_size": world, "type": type(exc).__name__,
                  "message": str(exc), "time": time.time(), "tail": list(tail)[-TAIL_LINES:]},
                 run_dir)


def _setup_logging(rank: int, tail: Deque[str]) -> None:
    sys.stdout = _Tee(sys.__stdout__, tail)
    sys.stderr = _Tee(sys.__stderr__, tail)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"[rank {rank}] %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("sparkae")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _watch_launcher(rank: int) -> None:
    """End this rank when its launcher (the torchrun agent) is gone: torchrun starts ranks
    in sessions of their own, so a killed launcher would otherwise leave them training."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                try:   # the launcher's pipe may be gone with it
                    sys.__stderr__.write(f"[rank {rank}] the launcher (pid {parent}) is gone; "
                                         "stopping\n")
                    sys.__stderr__.flush()
                finally:
                    os._exit(1)

    threading.Thread(target=watch, name="sparkae-launcher-watch", daemon=True).start()


def _device(use_gpu: bool, local_rank: int) -> torch.device:
    if not use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("use_gpu=True but this rank sees no CUDA device "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def rank_main(job: TrainJob) -> Optional[Dict[str, Any]]:
    """Train one rank of ``job`` in this process, inside a process group.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment torchrun (or
    :func:`sparkae.train.torchrun.launch_local`) sets. A failure is reported (see the
    module's docstring) and ends the process with exit code 1; ranks other than their
    torchrun's local rank 0 end their process once done.

    Parameters
    ----------
    job : TrainJob
        What to train.

    Returns
    -------
    dict or None
        Rank 0's :func:`~sparkae.train.protocol.pack_result`; None on other ranks.
    """
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    tail: Deque[str] = collections.deque(maxlen=4 * TAIL_LINES)
    _setup_logging(rank, tail)
    _watch_launcher(rank)
    payload = None
    try:
        if os.environ.get("MASTER_ADDR", "") in _LOOPBACK:
            os.environ["MASTER_ADDR"] = "127.0.0.1"
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        device = _device(job.use_gpu, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=job.timeout_s)
        store = os.environ.get(STORE_ENV)
        if store:   # a local run: a file store, no TCP rendezvous server
            dist.init_process_group(backend, init_method=store, rank=rank, world_size=world,
                                    timeout=timeout)
        else:
            dist.init_process_group(backend, timeout=timeout)
        torch.set_num_threads(job.threads_per_rank)
        where = ("a file store" if store else
                 f"master {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}")
        log.info("rank %d/%d on %s (%s, %d threads, rendezvous through %s)", rank, world,
                 device, backend, torch.get_num_threads(), where)

        def wrap(net: torch.nn.Module) -> torch.nn.Module:
            # every rank starts from rank 0's weights; the gradients are averaged before
            # each optimizer step (sparkae.train.gradsync: DistributedDataParallel's
            # work, without its 5 s import of torch._dynamo in every rank)
            return broadcast_parameters(net)

        def reduce(values: List[float]) -> List[float]:
            t = torch.tensor(values, dtype=torch.float64, device=device)
            dist.all_reduce(t)
            return t.tolist()

        with averaged_gradients(world):
            state, history = run_rank(job, rank, world, wrap=wrap, reduce=reduce,
                                      device=device)
        if rank == 0:
            payload = pack_result(state, history)
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then the rank ends
        _report(exc, rank, world, tail, job.run_dir)
        logging.shutdown()
        if world > 1 and lost_peer(str(exc)):
            # another rank died first: give its own failure (the root cause, e.g. a kill
            # signal) time to reach the driver before this one ends its task
            time.sleep(PEER_LOST_GRACE_S)
        os._exit(1)
    if local_rank != 0:
        # Ranks that share a torchrun with local rank 0 (local mode, several GPUs per task)
        # end here: the result file TorchDistributor reads back is local rank 0's to write.
        sys.__stdout__.flush()
        sys.__stderr__.flush()
        os._exit(0)
    return payload
