"""A SparkSession for jobs: loopback-only when local, the launcher's settings otherwise."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Mapping, Optional

from sparkae.io.jars import PACKAGES_KEY, with_packages
from sparkae.io.pyfiles import prune_python_path, prune_submitted

__all__ = ["LOOPBACK_CONF", "get_session", "local_settings", "prune_jar_paths"]

#: Settings that keep a local Spark driver on 127.0.0.1.
LOOPBACK_CONF = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
}


def local_settings(master: str, conf: Optional[Dict[str, Any]] = None,
                   environ: Optional[Mapping[str, str]] = None,
                   jars_dir: Optional[str] = None) -> Dict[str, Any]:
    """The settings :func:`get_session` gives a session it starts itself (no spark-submit).

    Parameters
    ----------
    master : str
        The master asked for; a ``spark.master`` in ``conf`` wins over it.
    conf : dict, optional
        The caller's settings; not modified, and they win over the ones added here.
    environ : mapping, optional
        The environment to read (``SPARKAE_NO_PACKAGES``); ``os.environ`` by default.
    jars_dir : str, optional
        The folder of Spark's jars; pyspark's own by default.

    Returns
    -------
    dict
        :data:`LOOPBACK_CONF`, then ``conf`` with the S3A and Delta Lake packages and
        settings of :func:`sparkae.io.jars.with_packages`; with Delta on a local master,
        Delta's snapshot partitions set to the master's core count (Delta's default, 50
        tasks, makes every read of a small table's log slow on a few cores).
    """
    settings = dict(LOOPBACK_CONF)
    mine = dict(conf or {})
    settings.update(with_packages(mine, environ=environ, jars_dir=jars_dir,
                                  master=str(mine.get("spark.master", master))))
    return settings


def get_session(master: str = "local[2]", app_name: str = "sparkae",
                conf: Optional[Dict[str, Any]] = None):
    """Return a SparkSession.

    Under ``spark-submit`` the master and conf given there win; a plain ``python`` run
    gets ``master`` and the loopback settings of :data:`LOOPBACK_CONF` (every service
    binds 127.0.0.1) and the S3A and Delta Lake packages and settings of
    :func:`sparkae.io.jars.with_packages` (merged into any ``spark.jars.packages`` of
    ``conf``; none with ``SPARKAE_NO_PACKAGES=1`` or on Databricks; with Delta on a local
    master, Delta's snapshot partitions set to its core count unless ``conf`` sets them):
    see :func:`local_settings`. With ``SPARK_REMOTE`` set
    (``sc://host:port``), a Spark Connect session to that server. ``conf`` entries are
    applied in every case.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers get this interpreter
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    remote = os.environ.get("SPARK_REMOTE")
    if remote:   # Spark Connect (e.g. sc://127.0.0.1:15002): the server owns master and conf
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in (conf or {}).items():
            builder = builder.config(key, str(value))
        return builder.getOrCreate()
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit the driver connects to the launcher's JVM (PYSPARK_GATEWAY_PORT);
    # a Python SparkConf made before that connection is empty, so check the variable too.
    launched = "PYSPARK_GATEWAY_PORT" in os.environ or SparkConf().contains("spark.master")
    settings = dict(conf or {})
    if launched:
        # spark-submit listed its --packages jars as Python files too (sparkae.io.pyfiles):
        # the driver would copy each (686 MB for the AWS SDK bundle) and ship it to the
        # Python workers; only the jars that hold Python stay
        submitted = SparkConf()
        py_files = submitted.get("spark.submit.pyFiles", "")
        if py_files and "spark.submit.pyFiles" not in settings:
            kept, files = prune_submitted(py_files, submitted.get("spark.files", ""))
            settings["spark.submit.pyFiles"] = kept
            if "spark.files" not in settings:
                settings["spark.files"] = files
    else:
        builder = builder.master(master)
        # loopback, S3A (hadoop-aws + AWS SDK) and Delta, resolved by Ivy at the JVM's start,
        # unless SPARKAE_NO_PACKAGES=1 or on Databricks (spark-submit.sh passes them as
        # --packages), and Delta's snapshot partitions sized for a local master
        settings = local_settings(master, conf)
    for key, value in settings.items():
        builder = builder.config(key, str(value))
    try:
        spark = builder.getOrCreate()
    except RuntimeError as exc:
        added = settings.get(PACKAGES_KEY) != (conf or {}).get(PACKAGES_KEY)
        if not added:
            raise
        raise RuntimeError(
            f"Spark did not start. It was given {PACKAGES_KEY}={settings[PACKAGES_KEY]} "
            "(S3A and Delta Lake), which Ivy resolves from Maven Central on the first start and from its "
            "cache (~/.ivy2*) after; if its output above says a dependency was unresolved, "
            "go online once or set SPARKAE_NO_PACKAGES=1") from exc
    if not launched:
        spark.sparkContext.setLogLevel("ERROR")
    prune_jar_paths(spark)
    return spark


def prune_jar_paths(spark: Any) -> None:
    """Take the jars that hold no Python (the ``--packages`` / ``spark.jars.packages`` jars
    Spark also lists as Python files) off this process's Python path and off the path the
    session's Python workers get (:mod:`sparkae.io.pyfiles`); the JVM keeps them.
    :func:`get_session` does it; call it after building a session yourself with
    ``spark.jars.packages``."""
    from sparkae.spark_private import drop_python_includes, is_classic

    names = prune_python_path()
    if names and is_classic(spark):
        drop_python_includes(spark, names)
