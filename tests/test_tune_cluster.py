"""A grid on the standalone test cluster on 127.0.0.1: the input prepared by the cluster, the
trials run by Ray, every listener opened on loopback, Ray torn down at the end.

The driver is on loopback, so sparkae runs Ray on 127.0.0.1 instead of Ray on Spark (whose
worker nodes cannot join a head over loopback: ``ray start --address`` resolves 127.0.0.1 to
the machine's outward address). Ray on Spark proper needs a cluster with routable
addresses; it is not exercised here."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from typing import Iterable, List, Optional

import pytest

from tests.conftest import ROOT, listening_sockets

pytest.importorskip("ray")
pytestmark = pytest.mark.cluster

#: Environment variable that marks the driver of this test and every process it starts
#: (Ray's head, raylets and workers inherit it), so other Ray instances on the machine
#: do not count as ours.
MARK = "SPARKAE_TUNE_CLUSTER_TEST"
#: The line the driver logs once Ray is up (sparkae.tune.search).
RAY_UP = "tuning: Ray up with"


def _all_pids() -> List[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ray_processes(mark: str) -> List[int]:
    """Live Ray processes (head, raylet, workers) whose environment carries ``MARK=mark``."""
    out = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            if not ("ray/core/src/ray" in cmd or "raylet" in cmd or "gcs_server" in cmd):
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"{MARK}={mark}".encode() not in f.read().split(b"\0"):
                    continue
        except OSError:   # gone meanwhile, or not ours to read
            continue
        out.append(pid)
    return out


def _wait_exit(pids: Iterable[int], timeout: float) -> None:
    """Wait until every process of ``pids`` has exited (a pidfd becomes readable when its
    process ends), or until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)


def _loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None
                              and ip.ipv4_mapped.is_loopback)


def test_grid_on_a_loopback_cluster_keeps_ray_on_127_0_0_1_and_tears_it_down(spark_cluster,
                                                                            tmp_path):
    mark = uuid.uuid4().hex
    before = listening_sockets(_all_pids())
    seen, ray_pids, stop, ray_up = set(), set(), threading.Event(), threading.Event()

    def watch() -> None:
        # samples every listener (and our Ray processes) until the driver has exited
        while not stop.is_set():
            seen.update(listening_sockets(_all_pids()))
            ray_pids.update(_ray_processes(mark))
            stop.wait(0.2)

    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               **{MARK: mark})
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "tune_cluster_driver.py"),
                             spark_cluster, str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out_lines: List[str] = []
    err_lines: List[str] = []
    up_listeners: Optional[set] = None

    def read_stdout() -> None:
        out_lines.extend(proc.stdout)

    def read_stderr() -> None:
        nonlocal up_listeners
        for line in proc.stderr:
            err_lines.append(line)
            if RAY_UP in line and not ray_up.is_set():
                # Ray's head, raylet and workers are listening now
                up_listeners = listening_sockets(_all_pids())
                ray_pids.update(_ray_processes(mark))
                ray_up.set()

    threads = [threading.Thread(target=f, daemon=True) for f in (watch, read_stdout, read_stderr)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop.set()
        for t in threads:
            t.join(timeout=60)
    out = "".join(out_lines)
    output = out + "".join(err_lines)
    assert proc.returncode == 0, output[-6000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert "is on loopback: Ray runs on 127.0.0.1 with 2 CPU(s)" in output, output[-4000:]
    assert ray_up.is_set(), f"the driver never logged {RAY_UP!r}:\n{output[-4000:]}"
    board = result["board"]
    assert [r["status"] for r in board] == ["ok", "ok"]
    assert board[0]["validation_mse"] <= board[1]["validation_mse"]
    assert result["scored"] == result["valid_rows"] > 0
    # every listener the grid opened (Ray head, raylets, workers, Spark) is on loopback
    new = (seen | up_listeners) - before
    assert up_listeners - before, "no new listener while Ray was up (the scan is broken)"
    outside = sorted(a for a in new if not _loopback(a[0]))
    assert not outside, f"listeners beyond loopback: {outside}"
    # Ray is torn down: every Ray process of the grid ends once the driver has exited
    assert ray_pids, "no Ray process of the grid was seen (the scan is broken)"
    _wait_exit(ray_pids | set(_ray_processes(mark)), timeout=60)
    assert not _ray_processes(mark), "Ray processes left after the grid"
