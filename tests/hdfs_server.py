"""A real HDFS on 127.0.0.1 for tests: Hadoop's MiniDFSCluster (one NameNode, one DataNode).

``hadoop-client-minicluster`` matching pyspark's Hadoop is fetched from Maven Central with
``mvn dependency:copy`` (cached in ``~/.m2``). :class:`MiniHdfs` runs this file as a
subprocess: a JVM started through pyspark's gateway with that jar on the application class
path (beside pyspark's ``hadoop-client-runtime``, so both come from one class loader) builds
the cluster, prints one JSON line (``uri``, ``http``) and serves until terminated; the test
stops it by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["MiniHdfs", "minicluster_jar"]

CACHE = Path.home() / ".cache" / "sparkae-tests"


def minicluster_jar() -> str:
    """The hadoop-client-minicluster jar for pyspark's Hadoop (fetched once with Maven).

    Raises
    ------
    RuntimeError
        Maven is missing or could not fetch the artifact (its output is in the message).
    """
    from sparkae.io.jars import hadoop_version

    version = hadoop_version()
    jar = CACHE / f"hadoop-client-minicluster-{version}.jar"
    if jar.is_file():
        return str(jar)
    CACHE.mkdir(parents=True, exist_ok=True)
    cmd = ["mvn", "-q", "-B", "dependency:copy",
           f"-Dartifact=org.apache.hadoop:hadoop-client-minicluster:{version}",
           f"-DoutputDirectory={CACHE}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise RuntimeError("Maven (mvn) is needed to fetch hadoop-client-minicluster") from None
    if proc.returncode != 0 or not jar.is_file():
        raise RuntimeError(f"could not fetch hadoop-client-minicluster {version}:\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    return str(jar)


class MiniHdfs:
    """MiniDFSCluster in a subprocess; ``uri`` (``hdfs://127.0.0.1:PORT``) and ``http``
    (the NameNode's WebHDFS address, ``127.0.0.1:PORT``) once started."""

    def __init__(self, start_timeout: float = 180.0) -> None:
        self.start_timeout = start_timeout
        self.uri: Optional[str] = None
        self.http: Optional[str] = None
        self._proc: Optional[subprocess.Popen] = None
        self._log = None

    def start(self) -> "MiniHdfs":
        """Start the cluster and wait for its addresses.

        Raises
        ------
        RuntimeError
            The cluster did not come up (its output is in the message).
        """
        jar = minicluster_jar()
        self._log = tempfile.NamedTemporaryFile("w+", suffix=".log")
        env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARKAE_NO_PACKAGES="1")
        self._proc = subprocess.Popen([sys.executable, __file__, jar], stdout=subprocess.PIPE,
                                      stderr=self._log, stdin=subprocess.DEVNULL, env=env,
                                      text=True, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline and self._proc.poll() is None:
            line = self._proc.stdout.readline()
            if line.startswith("{"):
                info = json.loads(line)
                self.uri, self.http = info["uri"], info["http"]
                return self
        self._log.seek(0)
        output = self._log.read()
        self.stop()
        raise RuntimeError(f"MiniDFSCluster did not start:\n{output[-4000:]}")

    def stop(self) -> None:
        """Stop the cluster's process by pid (terminate, then kill)."""
        from tests.s3_server import stop_process

        proc, self._proc = self._proc, None
        stop_process(proc, 60)
        if self._log is not None:
            self._log.close()
            self._log = None


def _serve(jar: str) -> None:
    from pyspark.sql import SparkSession

    base = tempfile.mkdtemp(prefix="sparkae-minidfs-")
    spark = (SparkSession.builder.master("local[1]").appName("minidfs")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.extraClassPath", jar).getOrCreate())
    jvm = spark._jvm
    conf = jvm.org.apache.hadoop.conf.Configuration()
    conf.set("hdfs.minidfs.basedir", base)
    for key in ("dfs.namenode.rpc-bind-host", "dfs.namenode.http-bind-host"):
        conf.set(key, "127.0.0.1")
    conf.set("dfs.datanode.address", "127.0.0.1:0")
    conf.set("dfs.datanode.http.address", "127.0.0.1:0")
    conf.set("dfs.datanode.ipc.address", "127.0.0.1:0")
    conf.set("dfs.permissions.enabled", "false")
    cluster = jvm.org.apache.hadoop.hdfs.MiniDFSCluster.Builder(conf).numDataNodes(1).build()
    cluster.waitActive()
    port = cluster.getNameNodePort()
    http = cluster.getNameNode().getHttpAddress()
    info: Dict[str, Any] = {"uri": f"hdfs://127.0.0.1:{port}",
                            "http": f"127.0.0.1:{http.getPort()}"}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(json.dumps(info), flush=True)
    while not stop:
        time.sleep(0.5)
    cluster.shutdown()
    spark.stop()


if __name__ == "__main__":
    _serve(sys.argv[1])
