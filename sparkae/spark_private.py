"""The one place where sparkae reaches into PySpark's private API.

PySpark keeps some things it needs itself behind underscores: the JVM gateway of a classic
session, Hadoop's configuration, the Scala SparkContext's status tracker, a DataFrame's
analyzed plan, the parent of class-level Params, an ML object's uid, and TorchDistributor's
launcher. Each use here is a small function with the PySpark versions it was checked on
(3.5 and 4.0-4.2; ``tests/test_spark_private.py`` runs in both environments), so an
upgrade that moves one breaks one function and one test, not call sites across the
package. A Spark Connect session has no JVM on the client: the functions that need one
raise :class:`NoJvmError` (or return None where the docstring says so).
"""

from __future__ import annotations

from typing import Any, List, Optional


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


def dummy_parent() -> Any:
    """The placeholder parent of class-level Params (what pyspark.ml's own mixins use)."""
    from pyspark.ml.param import Params

    return Params._dummy()


def reset_uid(obj: Any, uid: str) -> None:
    """Give a loaded pyspark.ml object its saved ``uid`` (its Params follow)."""
    obj._resetUid(uid)
