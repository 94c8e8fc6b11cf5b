"""Ray for a Spark master: start it, size it, and tear it down.

On a local master (``local[N]``): a local Ray instance on 127.0.0.1 with the master's
cores, dashboard off. On a cluster master (``spark://``, ``yarn``, ...): Ray on Spark
(``ray.util.spark.setup_ray_cluster``) sized from the cluster, except when the driver is on
loopback (then the cluster is on one machine and Ray runs locally, see :func:`ray_for`).
Ray is always torn down at the end, also on errors and Ctrl-C. A Ray instance already
running in the process (``ray.is_initialized()``) is used as is and left running.

Ray is imported only inside these functions: it is an optional dependency, and some of
its settings must be in the environment before its first import.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

from sparkae.io.jars import usable_cpus
from sparkae.spark_private import executor_infos
from sparkae.train.distributed import task_slots

log = logging.getLogger("sparkae")


def _local_cpus(master: str) -> Optional[int]:
    """Cores of a local master (``local``, ``local[N]``, ``local[*]``, ``local[N,F]``);
    None for any other master."""
    if not master.startswith("local"):
        return None
    inside = master[master.find("[") + 1:master.find("]")] if "[" in master else "1"
    inside = inside.split(",")[0].strip()
    return usable_cpus() if inside == "*" else max(1, int(inside))


def _loopback_driver(spark: Any) -> bool:
    """True when ``spark.driver.host`` resolves to a loopback address."""
    host = spark.sparkContext.getConf().get("spark.driver.host", "") or ""
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback if host else False
    except (OSError, ValueError):
        return False


def _executor_resources(spark: Any) -> Tuple[int, int]:
    """``(cpus, gpus)`` of one executor: what a Ray worker node on it may take.

    Ray on Spark's default is the worker machine's physical cores, which a task cannot get
    when an executor has fewer (a standalone worker started with ``--cores 1``): its
    worker-node job would wait for ever. ``spark.executor.cores`` when set, else the
    cluster's task slots times ``spark.task.cpus`` over its executors."""
    conf = spark.sparkContext.getConf()
    gpus = int(float(conf.get("spark.executor.resource.gpu.amount", "0") or 0))
    if conf.get("spark.executor.cores"):
        return max(1, int(conf.get("spark.executor.cores"))), gpus
    total, _ = task_slots(spark)
    task_cpus = int(conf.get("spark.task.cpus", "1") or 1)
    # the status tracker lists the driver as one of the executors
    executors = max(1, len(executor_infos(spark)) - 1)
    return max(1, total * task_cpus // executors), gpus


@contextlib.contextmanager
def ray_for(spark: Any, include_dashboard: bool = False) -> Iterator[int]:
    """Start Ray for ``spark``'s master and yield its CPU count; tear it down at the end.

    Parameters
    ----------
    spark : SparkSession
        A classic session: its master decides how Ray starts.
    include_dashboard : bool, default False
        Start Ray's dashboard.

    Yields
    ------
    int
        The CPUs of the Ray cluster.

    Notes
    -----
    A local master gets a local Ray on 127.0.0.1 with the master's cores; any other master
    gets Ray on Spark sized from the cluster. An already initialized Ray is used as is.
    """
    master = spark.sparkContext.master
    cpus = _local_cpus(master)
    if cpus is None and _loopback_driver(spark):
        # A cluster whose driver is on loopback is on one machine. Ray worker nodes cannot
        # join a head over loopback (`ray start --address` resolves 127.0.0.1 to the
        # machine's outward address, or refuses in single-node mode), so Ray runs locally
        # on 127.0.0.1 with the cluster's task slots, capped at the cores this process may run on.
        cpus = max(1, min(task_slots(spark)[0], usable_cpus()))
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
            cluster = True
            cpus = _ray_on_spark(spark, include_dashboard)
        yield cpus
    finally:
        ray.shutdown()
        if cluster:
            from ray.util.spark import shutdown_ray_cluster

            with contextlib.suppress(Exception):
                shutdown_ray_cluster()


def _ray_on_spark(spark: Any, include_dashboard: bool) -> int:
    """Start Ray on Spark on the cluster's executors (one Ray node each), connect to it,
    and return its CPU count."""
    import ray
    from ray.util.spark import MAX_NUM_WORKER_NODES, setup_ray_cluster

    bindir = os.path.dirname(sys.executable)
    if shutil.which("ray") is None and os.path.exists(os.path.join(bindir, "ray")):
        # Ray on Spark runs the `ray` command found on PATH (a virtual environment's
        # Python may be run without it); the executors need it on their PATH too
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    node_cpus, node_gpus = _executor_resources(spark)
    log.info("tuning: starting Ray on Spark on the workers of %s (a Ray node per "
             "executor: %d CPU(s), %d GPU(s))", spark.sparkContext.master, node_cpus, node_gpus)
    address, _ = setup_ray_cluster(
        max_worker_nodes=MAX_NUM_WORKER_NODES,
        num_cpus_worker_node=node_cpus, num_gpus_worker_node=node_gpus,
        head_node_options={"include_dashboard": include_dashboard})
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    log.info("tuning: Ray nodes: %s", _describe_nodes(ray.nodes()))
    return int(ray.cluster_resources().get("CPU", 1))


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


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the block, and restore them after it."""
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


@contextlib.contextmanager
def ray_session(spark: Any, include_dashboard: bool = False) -> Iterator[Tuple[int, str]]:
    """Ray for ``spark`` (:func:`ray_for`) and a local folder for Ray Tune's own results.

    Yields
    ------
    (int, str)
        Ray's CPU count, and the folder. Ray's results stay on this machine (sparkae keeps
        its record in the trial store); the folder is removed after Ray is down, also when
        Ray fails to start.
    """
    ray_dir = tempfile.mkdtemp(prefix="sparkae-ray-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, ray_dir, True)
        cpus = stack.enter_context(ray_for(spark, include_dashboard))
        # with RunConfig(verbose=0), the old output engine prints nothing: the progress
        # lines are sparkae's own
        stack.enter_context(_env(RAY_AIR_NEW_OUTPUT="0"))
        yield cpus, ray_dir
