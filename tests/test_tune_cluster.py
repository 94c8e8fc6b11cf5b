"""A grid on the standalone test cluster on 127.0.0.1 (issue 6): the input prepared by the
cluster, the trials run by Ray, every listener opened on loopback, Ray torn down at the end.

The driver is on loopback, so sparkae runs Ray on 127.0.0.1 instead of Ray on Spark (whose
worker nodes cannot join a head over loopback: ``ray start --address`` resolves 127.0.0.1 to
the machine's outward address). Ray on Spark proper needs a cluster with routable
addresses; it is not exercised here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT
from tests.test_guarantees import _listening

pytest.importorskip("ray")
pytestmark = pytest.mark.cluster


def _all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ray_processes():
    out = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray/core/src/ray" in cmd or "raylet" in cmd or "gcs_server" in cmd:
            out.append(pid)
    return out


def test_grid_with_ray_on_spark_on_the_standalone_cluster(spark_cluster, tmp_path):
    import ipaddress

    before = _listening(_all_pids())
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(_listening(_all_pids()))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    try:
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "tune_cluster_driver.py"),
                               spark_cluster, str(tmp_path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
    finally:
        stop.set()
        watcher.join()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "is on loopback: Ray runs on 127.0.0.1 with 2 CPU(s)" in output, output[-4000:]
    board = result["board"]
    assert [r["status"] for r in board] == ["ok", "ok"]
    assert board[0]["validation_mse"] <= board[1]["validation_mse"]
    assert result["scored"] == result["valid_rows"] > 0
    # every listener the grid opened (Ray head, raylets, workers, Spark) is on loopback
    new = seen - before

    def loopback(addr):
        ip = ipaddress.ip_address(addr)
        return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None
                                  and ip.ipv4_mapped.is_loopback)

    assert new, "no new listener was seen (the watcher is broken)"
    outside = sorted(a for a in new if not loopback(a[0]))
    assert not outside, f"listeners beyond loopback: {outside}"
    # Ray is torn down: no Ray process is left once the driver has exited
    deadline = time.time() + 60
    while _ray_processes() and time.time() < deadline:
        time.sleep(1)
    assert not _ray_processes(), "Ray processes left after the grid"
