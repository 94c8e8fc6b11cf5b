"""Start the rank processes of a distributed run, where TorchDistributor runs its launcher.

:func:`run_torchrun` is the file runner handed to TorchDistributor: in local mode it runs
on the driver and starts the ranks itself (:func:`launch_local`, a file-store rendezvous,
no torchrun); on a cluster it runs in each barrier task and starts torchrun there
(:func:`execute`). Either way a failed rank makes the runner raise an error whose text
carries the ranks' reports and torchrun-style root-cause lines, which
:func:`sparkae.train.failures.rank_failure` reads on the driver.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Tuple

from sparkae.spark_private import execute_command, torchrun_command
from sparkae.train.protocol import MARKER, STORE_ENV, task_failure_header

#: Lines of each local rank's output kept for the error of a failed run.
_LOCAL_TAIL = 40
#: Lines of torchrun's output that follow its "Root Cause" header (the failed rank's report).
_ROOT_CAUSE_LINES = 12


def run_torchrun(input_params: Dict[str, Any], train_path: str, *args: Any,
                 **kwargs: Any) -> None:
    """TorchDistributor's file runner, with the local rendezvous pinned to 127.0.0.1
    (its own ``--standalone`` uses "localhost").

    Parameters
    ----------
    input_params : dict
        TorchDistributor's settings (``local_mode``, ``num_processes``,
        ``log_streaming_client``, ...).
    train_path : str
        The training script TorchDistributor wrote.
    *args
        The script's arguments.
    """
    if input_params["local_mode"]:
        launch_local(int(input_params["num_processes"]), train_path, [str(a) for a in args])
        return
    cmd = torchrun_command(input_params, train_path, *args)
    execute(cmd, input_params.get("log_streaming_client"))


def launch_local(world: int, train_path: str, args: List[str]) -> None:
    """Start ``world`` rank processes on this machine, without torchrun.

    torchrun's rendezvous store is a TCP server that listens on every interface; here the
    ranks meet through a file store in a private temporary directory instead, so a local
    run opens no listener beyond the loopback-bound gloo pairs. The ranks' output is
    streamed to this process's stdout. When a rank fails, the others are stopped and the
    error carries torchrun-style root-cause lines (rank, exit code, signal).

    Raises
    ------
    RuntimeError
        A rank exited with a non-zero code.
    """
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
            del tails[rank][:-_LOCAL_TAIL]
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
            _stop(procs)
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


def _stop(procs: List[Any]) -> None:
    """Terminate the ranks still running; kill those that outlive a 10 s grace."""
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


def execute(cmd: List[str], client: Any = None) -> None:
    """Run the torchrun command as TorchDistributor does (its output streamed to the driver),
    but fail when a rank failed.

    TorchDistributor's process wrapper exits 0 even then, and its generic error loses which
    rank failed and why. The error raised here carries the ranks' failure reports and
    torchrun's root-cause lines, which reach the driver.

    Raises
    ------
    RuntimeError
        torchrun failed or a rank reported a failure; the text starts with
        :func:`~sparkae.train.protocol.task_failure_header`.
    """
    keep: List[str] = []
    block: List[str] = []

    def collect(line: str) -> None:
        if MARKER in line:
            keep.append(line)
        if "Root Cause" in line or block:
            block.append(line)
            if len(block) > _ROOT_CAUSE_LINES:
                keep.extend(block)
                block.clear()

    code, text = execute_command(cmd, client, on_line=collect)
    keep.extend(block)
    if code != 0 or keep or "ChildFailedError" in text:
        raise RuntimeError(task_failure_header(task_host(), code) + "".join(keep)
                           + "\nlast lines:\n" + text)


def task_host() -> str:
    """``name (address)`` of the executor that runs this barrier task: the host of the
    ranks it started (their failure names it; the driver cannot tell otherwise)."""
    name = socket.gethostname()
    try:
        from pyspark import BarrierTaskContext

        ctx = BarrierTaskContext.get()
        address = ctx.getTaskInfos()[ctx.partitionId()].address.rsplit(":", 1)[0]
    except Exception:  # noqa: BLE001 - not in a barrier task: the name is all there is
        address = ""
    return f"{name} ({address})" if address and address != name else name
