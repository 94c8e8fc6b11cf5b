"""sparkae on three hosts: network namespaces made by the test, each with its own
address, host name, /tmp and working directory (tests/netns_cluster.py; Spark and moto on
them: tests/netns_spark.py; what they do on the network: tests/netns_observe.py). Host ``a``
(10.213.0.1) runs the Spark master, moto's S3 server and the drivers; ``b`` and ``c`` run
one 1-core Spark worker each. Every path the jobs share is on s3a://.

- the train job with two ranks, one on ``b`` and one on ``c`` (gloo between them); a rank
  killed on ``c`` mid-fit fails the job with an error naming ``c``; ``--resume`` completes;
- the score job end to end;
- a tune grid through Ray on Spark, whose worker nodes run on ``b`` and ``c``;
- nothing binds or connects beyond loopback and 10.213.0.0/24 (the hosts' sockets and
  Ray's logs), and nothing is left when the module ends.

Needs root (CI runs as root): where the kernel refuses namespaces the tests fail under
CI=true with the reason, and skip with it otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import sys
import time
import uuid
from types import SimpleNamespace

import pytest

from tests.netns_cluster import ROOT, Hosts, namespace_support, root_links
from tests.netns_observe import Observer, addresses_in, allowed
from tests.netns_spark import Cluster, fetch_s3a_jars, s3a_jars
from tests.conftest import unavailable

pytestmark = pytest.mark.multihost

#: Rows of the bundled sample the jobs read (written to s3a:// as 4 Parquet files).
ROWS = 3000
RUN_DATE = "2024-06-01"
#: Ray's line when it cannot find its IP by a UDP connect() to public DNS servers (what it
#: does before it falls back to the host name): the namespaces have no route there.
RAY_IP_PROBE = "Failed to determine local IP via external connectivity to"
#: Who may listen on 0.0.0.0 / :: (a process's command line holds the key): Ray's and
#: torch's servers and PySpark's TorchDistributor bind every interface by design.
WILDCARD_OWNERS = {
    "/ray/core/src/ray/": "Ray's GCS and raylets (gRPC servers on every interface)",
    "ray::": "Ray's workers (their core worker gRPC server)",
    "jobs/tune.py": "the Ray driver's core worker, in the tune job's driver",
    "torch.distributed.run": "torchrun's rendezvous store (c10d TCPStore) on rank 0's host",
    "jobs/train.py": "TorchDistributor's log streaming server (PySpark binds 0.0.0.0)",
}
#: Train epochs: enough that a rank can be killed after the first checkpoint, mid-fit.
EPOCHS = 10


_MAKE_INPUT = """
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from pyarrow import fs as pafs
from sparkae.datasets import load_mnist_arrays, mnist_sample_paths
endpoint, dest, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
images, labels = load_mnist_arrays(*mnist_sample_paths())
idx = np.random.default_rng(0).permutation(len(images))[:n]
s3 = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="testing",
                       secret_key="testing", region="us-east-1")
for p, rows in enumerate(np.array_split(idx, 4)):
    feats = pa.array(list(images[rows].reshape(len(rows), -1).astype(np.float32)),
                     type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": rows.astype(np.int64), "label": labels[rows].astype(np.int32),
                             "features": feats}), f"{dest}/part-{p:05d}.parquet", filesystem=s3)
"""


@pytest.fixture(scope="module")
def mh(tmp_path_factory):
    """The three hosts, the Spark cluster and moto, and the input table on s3a://; all
    torn down at the end of the module (also when a test or the setup fails)."""
    reason = namespace_support()
    if reason:
        unavailable(f"multihost: {reason}")
    try:
        import moto.server  # noqa: F401
        import ray  # noqa: F401
    except ImportError as exc:
        unavailable(f"multihost: needs moto[server] and ray[tune] (sparkae[dev,tune]): {exc}")
    try:
        s3a_jars()
    except FileNotFoundError:
        output = fetch_s3a_jars()   # once per machine, as the s3 tests' session does
        try:
            s3a_jars()
        except FileNotFoundError as exc:
            unavailable(f"multihost: {exc}; Ivy said:\n{output[-3000:]}")
    hosts = Hosts(tmp_path_factory.mktemp("multihost"))
    observer = None
    try:
        hosts.up()
        observer = Observer(hosts).start()
        bucket = f"mh-{uuid.uuid4().hex[:8]}"

        def write_input(c):   # the input table on s3a://, while the workers start
            c.bucket(bucket)
            hosts.run("a", [sys.executable, "-c", _MAKE_INPUT, f"{c.a}:{c.S3_PORT}",
                            f"{bucket}/input", str(ROWS)], env=c.env("a"))

        cluster = Cluster(hosts).start(while_workers_start=write_input)
        yield SimpleNamespace(hosts=hosts, cluster=cluster, observer=observer, bucket=bucket,
                              s3=f"s3a://{bucket}")
    finally:
        if observer is not None:
            observer.stop()
            observer.dump(hosts.base / "sockets.json")
        hosts.down()
        left = hosts.leftovers()
        # the hosts' disks (Spark's work dirs, Ray's spill) go; the logs stay for a look
        for h in hosts.names:
            _rmtree(hosts.dir(h) / "tmp")
        if left:
            raise RuntimeError(f"namespaces left after the teardown: {left}")


def _rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _run(mh, name, job, args, timeout=600):
    proc = mh.cluster.submit(name, job, args)
    try:
        rc = mh.hosts.finish(proc, timeout)
    except Exception:
        pytest.fail(f"{job} did not finish within {timeout} s:\n{mh.hosts.log('a', name)[-6000:]}")
    return rc, mh.hosts.log("a", name)


def _wait_for(predicate, timeout, what, log="", proc=None):
    """``predicate()`` once true; fails after ``timeout`` s or when ``proc`` has ended."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            what += f" (the job exited {proc.returncode} first)"
            break
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}:\n{log()[-5000:] if callable(log) else log}")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _rank_processes(mh, host):
    """pids of the training ranks on ``host``: the Python children of its torchrun."""
    pids = mh.hosts.pids(host)
    runs = [p for p in pids if "torch.distributed.run" in _cmdline(p)]
    ranks = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in runs and "python" in _cmdline(p):
            ranks.append(p)
    return ranks


def _train_args(mh, *extra):
    s3 = mh.s3
    return ["--set", "input.source=parquet", "--set", f"input.path={s3}/input",
            "--set", "model.num_workers=2", "--set", f"model.epochs={EPOCHS}",
            "--set", "model.hidden=[8]", "--set", f"model.cache_dir={s3}/cache",
            "--set", f"model.checkpoint_dir={s3}/ck", "--set", f"output.dir={s3}/train",
            "--set", "output.report=false", *extra]


def _checkpoints(mh):
    return sorted({int(m.group(1)) for k in mh.cluster.s3_keys(mh.bucket, "ck/")
                   for m in [re.match(r"ck/epoch-(\d+)/_manifest\.json$", k)] if m})


def test_train_on_two_hosts_a_rank_killed_on_c_and_resume(mh):
    """Ranks on b and c over gloo, cache and checkpoints on s3a://; SIGKILL the rank on c
    after the first checkpoint: the job fails naming host c; --resume finishes the fit."""
    hosts = mh.hosts
    proc = mh.cluster.submit("train-killed", "train.py", _train_args(mh))
    log = lambda: hosts.log("a", "train-killed")  # noqa: E731
    try:
        # the ranks run on b and c: a torchrun with its rank on each
        _wait_for(lambda: _rank_processes(mh, "b") and _rank_processes(mh, "c"), 420,
                  "a rank on each of b and c", log, proc)
        _wait_for(lambda: _checkpoints(mh), 300, "the first checkpoint on s3a://", log, proc)
        victims = _rank_processes(mh, "c")
        assert victims, "the rank on c is gone before the fault"
        assert proc.poll() is None, "the job ended before the fault"
        os.kill(victims[0], signal.SIGKILL)
        rc = hosts.finish(proc, 300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log()
    assert rc != 0, out[-5000:]
    failure = re.search(r"train: training failed on rank ([01]) of 2: its process was killed "
                        r"by signal 9 \(SIGKILL\) on host (.+?),", out)
    assert failure, out[-5000:]
    assert failure.group(2) == f"sae-c ({hosts.addr('c')})", failure.group(0)
    done = _checkpoints(mh)[-1]
    assert 1 <= done < EPOCHS, done

    rc, out = _run(mh, "train-resumed", "train.py", _train_args(mh, "--resume"))
    assert rc == 0, out[-6000:]
    assert f"resuming after epoch {done}" in out, out[-6000:]
    # both ranks rendezvoused at rank 0's host (b or c), none on loopback
    masters = set(re.findall(r"rendezvous through master (\S+):\d+", out))
    assert len(masters) == 1 and masters <= {hosts.addr("b"), hosts.addr("c")}, out[-6000:]
    summary = json.loads(mh.cluster.s3_get(mh.bucket, "train/summary.json"))
    assert summary["epochs"] == EPOCHS
    assert summary["rows"]["scored"] == ROWS
    assert "train/model/_manifest.json" in mh.cluster.s3_keys(mh.bucket, "train/model/")
    # the ranks talked between b and c directly (rendezvous and gloo), on their addresses
    pairs = mh.observer.connections()["b"]
    assert (hosts.addr("b"), hosts.addr("c")) in pairs, pairs


def test_score_job_on_the_cluster(mh):
    """The model of the train test scores the s3a:// table into an s3a:// partition; both
    executors (b and c) run scoring tasks."""
    s3 = mh.s3
    assert "train/model/_manifest.json" in mh.cluster.s3_keys(mh.bucket, "train/model/"), \
        "no model: the train test (which writes it) failed or did not run"
    rc, out = _run(mh, "score", "score.py",
                   ["--model", f"{s3}/train/model", "--input", f"{s3}/input",
                    "--output", f"{s3}/scores", "--id-cols", "id", "--run-date", RUN_DATE,
                    "--outputs", "reconstruction_mse,deep_features"])
    assert rc == 0, out[-6000:]
    assert f"scored {ROWS} of {ROWS} rows for {RUN_DATE}" in out, out[-4000:]
    keys = mh.cluster.s3_keys(mh.bucket, "scores/")
    assert any(k.startswith(f"scores/run_date={RUN_DATE}/") and k.endswith(".parquet")
               for k in keys), keys
    summary = json.loads(mh.cluster.s3_get(mh.bucket, f"scores/_runs/run_date={RUN_DATE}.json"))
    assert summary["rows"]["scored"] == ROWS
    for h in Cluster.WORKERS:   # each worker's newest executor ran tasks of this job
        apps = sorted((mh.hosts.dir(h) / "work" / "spark-work").glob("app-*"))
        stderr = "".join(p.read_text(errors="replace") for p in apps[-1].glob("*/stderr"))
        assert "Finished task" in stderr, f"no task ran on {h}"


def _ray_processes(mh):
    marks = ("raylet", "gcs_server", "ray::", "default_worker.py", "start_ray_node",
             "ray/dashboard", "ray.util.spark", "ray/autoscaler")
    return {h: [(p, _cmdline(p)[:200]) for p in mh.hosts.pids(h)
                if any(m in _cmdline(p) for m in marks)] for h in mh.hosts.names}


def test_tune_grid_with_ray_on_spark_worker_nodes_on_b_and_c(mh):
    """Ray on Spark: the head on a (spark.driver.host), a worker node on each of b and c;
    the trials run on the worker nodes, never on the head; Ray is gone afterwards. (Which
    worker node runs which trial is Ray's choice: a trial that ends before the other's
    actor has started leaves its actor to run the next one, on the same node.)"""
    s3 = mh.s3
    rc, out = _run(mh, "tune", "tune.py",
                   ["--config", str(ROOT / "conf" / "grid_hidden.yaml"),
                    "--set", "input.source=parquet", "--set", f"input.path={s3}/input",
                    "--set", "model.epochs=1", "--set", "grid.hidden=[[8],[4]]",
                    "--set", "tune.max_concurrent_trials=2", "--set", f"output.dir={s3}/tune"])
    assert rc == 0, out[-8000:]
    hosts = mh.hosts
    assert "starting Ray on Spark on the workers of" in out, out[-6000:]
    # Ray's own view of its nodes, as the driver logged it: the head on a, workers on b, c
    nodes = re.search(r"tuning: Ray nodes: (.*)", out)
    assert nodes, out[-6000:]
    assert set(re.findall(r"(\d+\.\d+\.\d+\.\d+) \(\d+ CPU", nodes.group(1))) == \
        {hosts.addr(h) for h in hosts.names}, nodes.group(0)
    board = list(csv.DictReader(io.StringIO(
        mh.cluster.s3_get(mh.bucket, "tune/leaderboard.csv").decode())))
    assert [r["status"] for r in board] == ["ok", "ok"], board
    # where each trial ran, from Ray's runtime context in the trial (the trial record)
    placed = set()
    for key in mh.cluster.s3_keys(mh.bucket, "tune/trials/record/"):
        row = json.loads(mh.cluster.s3_get(mh.bucket, key))
        if row["status"] == "ok":
            placed.add(row["node_ip"])
    assert placed and placed <= {hosts.addr("b"), hosts.addr("c")}, placed
    # each worker node kept its logs on its own host (copied before Ray removed them)
    for h in Cluster.WORKERS:
        raylet = list((mh.observer.ray_logs / h).glob("ray-*/session_*/logs/raylet.out"))
        assert raylet and hosts.addr(h) in raylet[0].read_text(errors="replace"), h
    # Ray is torn down on every host
    _wait_for(lambda: not any(_ray_processes(mh).values()), 60, "Ray to shut down",
              lambda: json.dumps(_ray_processes(mh)))


def test_traffic_stays_on_loopback_and_the_hosts_network(mh):
    """Every socket seen on the hosts (sampled all along) and every address in Ray's logs
    is loopback, the unspecified address (a bind inside a namespace whose only addresses
    are its own) or 10.213.0.0/24; each namespace has no other address and no route out."""
    hosts, obs = mh.hosts, mh.observer
    obs.sample()
    assert obs.samples > 10 and not obs.errors, obs.errors[:5]
    for h in hosts.names:
        assert sorted(hosts.interfaces(h)) == sorted(["127.0.0.1", "::1", hosts.addr(h)]), \
            hosts.interfaces(h)
        assert "default" not in hosts.routes(h)
    assert root_links() == hosts.root_links_before   # nothing was added to the machine's
    assert not obs.outside(), obs.outside()[:20]
    listeners = obs.listeners()
    assert (hosts.addr("a"), Cluster.MASTER_PORT) in listeners["a"]
    assert any(ip == hosts.addr("b") for ip, _ in listeners["b"]), listeners["b"]
    # Ray's logs name only the hosts' addresses (and loopback)
    logs = list(obs.ray_logs.rglob("*"))
    files = [p for p in logs if p.is_file()]
    assert files, "no Ray log was captured"
    seen, probes = set(), []
    for p in files:
        for line in p.read_text(errors="replace").splitlines():
            if RAY_IP_PROBE in line:   # a UDP connect() that found no route: nothing sent
                probes.append(line)
                continue
            seen |= addresses_in(line)
    outside = sorted(a for a in seen if not allowed(a))
    assert not outside, outside
    assert {hosts.addr(h) for h in ("b", "c")} <= seen, sorted(seen)
    # listeners on the unspecified address: confined to the namespaces here, but on a real
    # host they listen on every interface; only these third-party ones are expected
    unknown = {h: {k: v for k, v in w.items() if not any(m in v for m in WILDCARD_OWNERS)}
               for h, w in obs.wildcard.items()}
    assert not any(unknown.values()), unknown


def test_a_failed_rank_is_named_with_its_host():
    """The host the failing barrier task named reaches the error (not the ``raise`` line
    that the Python traceback in the same text quotes); a local run names none."""
    from sparkae.train.distributed import rank_failure
    from sparkae.train.worker import MARKER

    root_cause = ("Root Cause (first observed failure):\n[0]:\n  host      : sae-c\n"
                  "  rank      : 1 (local_rank: 0)\n  exitcode  : -9 (pid: 887)\n")
    quoted = ('    raise RuntimeError(f"sparkae: training ranks failed on host {_task_host()} '
              '(return code "\n')
    task = "sparkae: training ranks failed on host sae-c (10.213.0.3) (return code 1):\n"
    err = rank_failure(RuntimeError(quoted + "RuntimeError: " + task + root_cause), None, 2)
    assert str(err).startswith("training failed on rank 1 of 2: its process was killed by "
                               "signal 9 (SIGKILL) on host sae-c (10.213.0.3), ")
    own = ('{"rank": 0, "world_size": 2, "type": "ValueError", "message": "bad batch", '
           '"tail": ["x"], "time": 2.0}')
    err = rank_failure(RuntimeError(task + MARKER + own + "\n"), None, 2)
    assert "ValueError: bad batch\nrank 0 ran on host sae-c (10.213.0.3)\n" in str(err)
    assert " on host " not in str(rank_failure(RuntimeError(root_cause), None, 2))
