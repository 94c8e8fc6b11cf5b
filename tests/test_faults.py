"""Faults on the standalone test cluster on 127.0.0.1 (a master and two 1-core workers):
an executor killed mid-scoring, the driver killed mid-scoring-job. Jobs run through
./spark-submit.sh as users run them; the processes are killed with SIGKILL, as the kernel's
OOM killer or a lost machine would. A rank killed mid-training, with its checkpoints on
S3, is tests/test_multihost.py's (ranks on two hosts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sparkae import Autoencoder
from sparkae.jobs import score_job, score_settings
from sparkae.scoring import DELAY_CONF
from tests.conftest import ROOT, snapshot

pytestmark = pytest.mark.cluster


def _env():
    return dict(os.environ, SPARKAE_VENV=os.path.dirname(os.path.dirname(sys.executable)))


def _submit(master, job, args, log_path, confs=(), env=None):
    cmd = ["./spark-submit.sh", "--master", master, "--conf", "spark.executor.memory=1g"]
    for c in confs:
        cmd += ["--conf", c]
    log = open(log_path, "w")
    return subprocess.Popen(cmd + [job] + list(args), cwd=ROOT, env=env or _env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc, log_path, timeout=600):
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return rc, Path(log_path).read_text()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int):
    out = []
    for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return out


def _descendants(pid: int):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        for c in _children(p):
            seen.append(c)
            todo.append(c)
    return seen


def _executors(work):
    """pids of the executor JVMs that the test cluster in folder ``work`` runs (never another
    run's)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and "CoarseGrainedExecutorBackend" in _cmdline(int(d)):
            try:
                cwd = os.readlink(f"/proc/{d}/cwd")
            except OSError:
                continue
            if cwd.startswith(os.path.realpath(work) + os.sep):
                pids.append(int(d))
    return pids


def _wait_for(predicate, timeout, what, log_path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{Path(log_path).read_text()[-4000:]}")


def _scoring_executor(work):
    """An executor of the cluster in ``work`` that runs Python scoring tasks right now (it
    has Python workers)."""
    for pid in _executors(work):
        if any("pyspark" in _cmdline(c) for c in _descendants(pid)):
            return pid
    return None


@pytest.fixture(scope="module")
def fault_env(mnist_sample, tmp_path_factory):
    """A small model and the bundled sample as 16 Parquet files."""
    root = tmp_path_factory.mktemp("faults")
    model = Autoencoder(hidden=[16], epochs=1, seed=4, anomaly_quantile=0.95).fit(mnist_sample)
    model.save(str(root / "model"))
    mnist_sample.select("id", "features").repartition(16).write.parquet(str(root / "input"))
    return root


def _score_args(root, out, date):
    return ["--model", str(root / "model"), "--input", str(root / "input"), "--output",
            str(out), "--id-cols", "id", "--run-date", date,
            "--outputs", "reconstruction_mse,is_anomaly", "--set", "scoring.batch_size=64"]


#: Slow batches (many small ones) so that the faults surely land mid-job, in one task per
#: input file (the workers' reader sizes its tasks by bytes, as Spark's scan does: the
#: sample's 16 small files would otherwise make one task per slot, all in one wave).
SLOW = [f"{DELAY_CONF}=0.4", "spark.sql.execution.arrow.maxRecordsPerBatch=100",
        "spark.task.maxFailures=4", "spark.sql.files.maxPartitionBytes=65536"]


def _committed_scores(out, date):
    """A Parquet file of scores that a task of the run for ``date`` has committed to the
    run's staging directory (files still being written lie under an ``attempt_`` folder)."""
    try:
        for path in Path(out).glob(f"_staging/run_date={date}.*/**/part-*"):
            if not any(part.startswith("attempt_") for part in path.parts):
                return path
    except OSError:   # a folder renamed while it is listed
        pass
    return None


def _scores(out, date):
    df = pd.read_parquet(Path(out) / f"run_date={date}")
    return df.sort_values("id").reset_index(drop=True)


def test_scoring_survives_a_killed_executor_and_a_killed_driver(spark, spark_cluster, fault_env,
                                                                tmp_path):
    root, out = fault_env, tmp_path / "scores"
    # an executor killed mid-scoring: Spark reruns its tasks and the run completes
    log_path = tmp_path / "executor.log"
    proc = _submit(spark_cluster, "jobs/score.py", _score_args(root, out, "2024-01-02"),
                   log_path, SLOW)
    victim = _wait_for(lambda: _scoring_executor(spark_cluster.work), 300,
                       "an executor running scoring tasks", log_path)
    _wait_for(lambda: _committed_scores(out, "2024-01-02"), 300, "a task's committed scores",
              log_path)
    assert proc.poll() is None, "the job ended before the fault was injected"
    os.kill(victim, signal.SIGKILL)
    rc, log = _finish(proc, log_path)
    assert rc == 0, log[-4000:]
    assert "sparkae: scored 5000 of 5000 rows for 2024-01-02" in log, log[-4000:]
    survived = _scores(out, "2024-01-02")
    assert len(survived) == 5000

    # the driver killed mid-job: the earlier partition intact, nothing partial visible
    before = snapshot(out)
    log_path = tmp_path / "driver.log"
    proc = _submit(spark_cluster, "jobs/score.py", _score_args(root, out, "2024-01-03"),
                   log_path, SLOW)
    _wait_for(lambda: _scoring_executor(spark_cluster.work), 300, "scoring tasks", log_path)
    _wait_for(lambda: _committed_scores(out, "2024-01-03"), 300, "a task's committed scores",
              log_path)
    assert proc.poll() is None, "the job ended before the fault was injected"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "run_date=2024-01-03").exists()
    after = {k: v for k, v in snapshot(out).items() if k in before}
    assert after == before, "a previous partition changed"
    visible = pd.read_parquet(out)
    assert sorted(visible["run_date"].astype(str).unique()) == ["2024-01-02"]
    assert len(visible) == 5000

    # the rerun, with no fault, completes (the job's own function, in this process: one
    # cluster app less); the run that lost an executor matches it
    flags = {"model": str(root / "model"), "input": str(root / "input"), "output": str(out),
             "id_cols": "id", "run_date": "2024-01-03",
             "outputs": "reconstruction_mse,is_anomaly"}
    summary = score_job.run_score(spark, score_settings.load(None, ["scoring.batch_size=64"],
                                                             flags))
    assert summary["rows"]["scored"] == 5000, summary
    clean = _scores(out, "2024-01-03")
    assert clean["id"].is_unique and clean["id"].tolist() == survived["id"].tolist()
    pd.testing.assert_series_equal(survived["reconstruction_mse"], clean["reconstruction_mse"],
                                   rtol=1e-6, atol=0)
    assert survived["is_anomaly"].tolist() == clean["is_anomaly"].tolist()
