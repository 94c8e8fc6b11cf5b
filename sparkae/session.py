"""A SparkSession for jobs: loopback-only when local, the launcher's settings otherwise."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Optional

from sparkae.io.jars import PACKAGES_KEY, with_packages

#: Settings that keep a local Spark driver on 127.0.0.1.
LOOPBACK_CONF = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
}


def get_session(master: str = "local[2]", app_name: str = "sparkae",
                conf: Optional[Dict[str, Any]] = None):
    """Return a SparkSession.

    Under ``spark-submit`` the master and conf given there win; a plain ``python`` run
    gets ``master`` and the loopback settings of :data:`LOOPBACK_CONF` (every service
    binds 127.0.0.1) and the S3A and Delta Lake packages and settings of
    :func:`sparkae.io.jars.with_packages` (merged into any ``spark.jars.packages`` of
    ``conf``; none with ``SPARKAE_NO_PACKAGES=1`` or on Databricks). With ``SPARK_REMOTE`` set
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
    if not launched:
        builder = builder.master(master)
        for key, value in LOOPBACK_CONF.items():
            builder = builder.config(key, value)
        # S3A (hadoop-aws + AWS SDK) and Delta, resolved by Ivy at the JVM's start, unless
        # SPARKAE_NO_PACKAGES=1 or on Databricks; spark-submit.sh passes them as --packages
        settings = with_packages(settings)
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
    return spark
