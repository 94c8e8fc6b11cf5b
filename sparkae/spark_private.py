"""The one place where sparkae reaches into PySpark's private API.

PySpark keeps some things it needs itself behind underscores: the JVM gateway of a classic
session, Hadoop's configuration, the Scala SparkContext's status tracker, a DataFrame's
analyzed plan, its Arrow collection and its plan statistics, the parent of class-level Params, an ML object's uid, and TorchDistributor's
launcher. Each use here is a small function with the PySpark versions it was checked on
(3.5 and 4.2; ``tests/test_spark_private.py`` runs in both environments), so an
upgrade that moves one breaks one function and one test, not call sites across the
package. A Spark Connect session has no JVM on the client: the functions that need one
raise :class:`NoJvmError` (or return None where the docstring says so).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple


class NoJvmError(RuntimeError):
    """The session has no JVM on this side (Spark Connect)."""


def jvm_context(spark: Any) -> Any:
    """The Java SparkContext (``JavaSparkContext``) of a classic ``spark`` session.

    Raises
    ------
    NoJvmError
        ``spark`` is a Spark Connect session.
    """
    try:
        return spark.sparkContext._jsc
    except Exception as exc:  # noqa: BLE001 - Connect: no sparkContext / no _jsc
        raise NoJvmError(f"no JVM on this side of the session ({type(exc).__name__})") from None


def is_classic(spark: Any) -> bool:
    """Whether ``spark`` is a classic session (a JVM on this side), not Spark Connect."""
    try:
        jvm_context(spark)
        return True
    except NoJvmError:
        return False


def jvm(spark: Any) -> Any:
    """The py4j JVM view of a classic ``spark`` session (``spark._jvm``)."""
    jvm_context(spark)
    return spark._jvm


def hadoop_conf(spark: Any) -> Any:
    """The session's Hadoop ``Configuration`` (a JVM object) of a classic session."""
    return jvm_context(spark).hadoopConfiguration()


def scala_context(spark: Any) -> Any:
    """The Scala ``SparkContext`` of a classic session (resource profiles, status)."""
    return jvm_context(spark).sc()


def executor_infos(spark: Any) -> List[Any]:
    """The status tracker's executor infos (the driver is one of them)."""
    return list(scala_context(spark).statusTracker().getExecutorInfos())


def max_concurrent_tasks(spark: Any) -> int:
    """Task slots of the cluster for the default resource profile."""
    sc = scala_context(spark)
    return int(sc.maxNumConcurrentTasks(sc.resourceProfileManager().defaultResourceProfile()))


def analyzed_plan(df: Any) -> Optional[str]:
    """``df``'s canonicalized analyzed plan as text; None under Spark Connect."""
    try:
        return df._jdf.queryExecution().analyzed().canonicalized().toString()
    except Exception:  # noqa: BLE001 - Spark Connect has no _jdf
        return None


def collect_arrow(df: Any) -> List[Any]:
    """Every row of ``df`` as pyarrow record batches, through the driver
    (``DataFrame._collect_as_arrow``, as ``toPandas`` does; 3.5 and 4.2).

    Raises
    ------
    NoJvmError
        Under Spark Connect.
    """
    jvm_context(df.sparkSession)
    return df._collect_as_arrow()


def known_row_count(df: Any) -> Optional[int]:
    """The exact row count that ``df``'s plan statistics hold without running a job, else
    None: a cached DataFrame whose cache is loaded (its ``InMemoryRelation`` counts its
    rows), directly or under projections (which keep the count)."""
    try:
        plan = df._jdf.queryExecution().optimizedPlan()
        plan.invalidateStatsCache()   # statistics a plan computed before its cache loaded
        while True:
            count = plan.stats().rowCount()
            if count.isDefined():
                return int(str(count.get()))   # py4j gives an int (BigInt) or its text
            if plan.nodeName() != "Project":
                return None
            plan = plan.child()
    except Exception:  # noqa: BLE001 - Spark Connect has no _jdf; other plan shapes
        return None


def listed_files(df: Any) -> Optional[Dict[str, Tuple[int, int]]]:
    """The files of ``df``'s file scan as Spark listed them when the DataFrame was made,
    ``{uri: (bytes, modification time in ms)}``; None when its analyzed plan is not one
    relation over a file index (or under Spark Connect)."""
    try:
        plan = df._jdf.queryExecution().analyzed()
        if plan.nodeName() != "LogicalRelation":
            return None
        files = plan.relation().location().allFiles()
        out: Dict[str, Tuple[int, int]] = {}
        for i in range(files.length()):
            status = files.apply(i)
            out[str(status.getPath().toString())] = (int(status.getLen()),
                                                     int(status.getModificationTime()))
        return out
    except Exception:  # noqa: BLE001 - Spark Connect has no _jdf; other relations
        return None


def dummy_parent() -> Any:
    """The placeholder parent of class-level Params (what pyspark.ml's own mixins use)."""
    from pyspark.ml.param import Params

    return Params._dummy()


def reset_uid(obj: Any, uid: str) -> None:
    """Give a loaded pyspark.ml object its saved ``uid`` (its Params follow)."""
    obj._resetUid(uid)


# -- TorchDistributor -----------------------------------------------------------------------
# sparkae starts its ranks through TorchDistributor but needs three things its public
# ``run`` does not offer: its own file runner (a local run that rendezvous on 127.0.0.1
# through a file store, and a barrier task that fails when a rank failed), the torchrun
# command TorchDistributor would run, and its way of streaming that command's output to the
# driver. Checked on PySpark 3.5 and 4.2 (same signatures and behaviour).


def torchrun_command(input_params: Dict[str, Any], train_path: str, *args: Any) -> List[str]:
    """The command TorchDistributor runs for a training file in a barrier task.

    ``TorchDistributor._create_torchrun_command``: ``python -m
    pyspark.ml.torch.torch_run_process_wrapper <torchrun rendezvous args>
    --nproc_per_node=N train_path *args`` (the arguments as strings).

    Parameters
    ----------
    input_params : dict
        TorchDistributor's settings as its runners get them (``local_mode``,
        ``num_processes``, ...).
    train_path : str
        The training script.
    *args
        The script's arguments.
    """
    from pyspark.ml.torch.distributor import TorchDistributor

    return TorchDistributor._create_torchrun_command(input_params, train_path, *args)


def run_distributor(distributor: Any, entry: Callable, runner: Callable, *args: Any) -> Any:
    """``entry(*args)`` on ``distributor``'s ranks, started by ``runner``; rank 0's result.

    ``TorchDistributor._run``: what ``TorchDistributor.run`` does, with ``runner`` (called
    as ``runner(input_params, train_path, *args)`` where TorchDistributor would start
    torchrun: on the driver in local mode, in each barrier task otherwise) in place of its
    own file runner.
    """
    return distributor._run(entry, runner, *args)


def execute_command(cmd: List[str], log_streaming_client: Any = None,
                    on_line: Optional[Callable[[str], None]] = None,
                    tail_lines: int = 60) -> Tuple[int, str]:
    """Run ``cmd`` and stream its output to the driver as TorchDistributor does.

    A modified copy of ``TorchDistributor._execute_command``: the output goes to this
    process's stdout unless ``log_streaming_client`` (TorchDistributor's
    ``LogStreamingClient``, whose ``sock`` and ``failed`` it reads) reaches a server on the
    same host, and to that client; lines that are not UTF-8 are decoded with replacement;
    ``on_line`` sees every line; and a failed command is reported by its return code, not
    an error, so that the caller can say which rank failed.

    Returns
    -------
    tuple
        The return code and the last ``tail_lines`` lines of the output.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.PIPE, env=os.environ)
    proc.stdin.close()
    tail: collections.deque = collections.deque(maxlen=tail_lines)
    client = log_streaming_client
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace")
            tail.append(line)
            if on_line is not None:
                on_line(line)
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
    return proc.returncode, "".join(tail)


def drop_python_includes(spark: Any, names: List[str]) -> None:
    """Stop shipping the files ``names`` (base names) to the Python workers as Python path
    entries: PySpark sends ``SparkContext._python_includes`` with every Python function."""
    sc = getattr(spark, "sparkContext", None)
    includes = getattr(sc, "_python_includes", None)
    if includes is not None and names:
        drop = set(names)
        includes[:] = [n for n in includes if os.path.basename(n) not in drop]
