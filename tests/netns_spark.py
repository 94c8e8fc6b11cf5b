"""Spark, moto and the jobs on the test hosts of ``tests/netns_cluster.py``: the
standalone master, moto's S3 server and the drivers on host ``a``, a 1-core worker on each
of ``b`` and ``c``; spark-submit of ``jobs/*.py`` as a cluster job with its driver on
``a``'s address; S3 through plain HTTP from a host (moto checks no signatures); the S3A
jars from Ivy's cache on the class path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tests.netns_cluster import ROOT, VENV, WORKDIR, Hosts, _spark_home

__all__ = ["Cluster", "JVM_OPTS", "s3a_jars", "ivy_dir", "fetch_s3a_jars"]


#: The JVMs' options: quick to start and light on a small machine (tiny jobs, short lives).
JVM_OPTS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"


class Cluster:
    """On :class:`Hosts`: moto's S3 server and the Spark standalone master on host ``a``
    (the driver's host), one 1-core worker on each of ``b`` and ``c``.

    Attributes
    ----------
    master : str
        ``spark://10.213.0.1:7077``.
    endpoint : str
        moto's S3 endpoint, ``http://10.213.0.1:5000``.
    """

    MASTER_PORT, MASTER_UI, S3_PORT, WORKER_UI = 7077, 8080, 5000, 8081
    WORKERS = ("b", "c")
    DRIVER = "a"

    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts
        self.a = hosts.addr(self.DRIVER)
        self.master = f"spark://{self.a}:{self.MASTER_PORT}"
        self.endpoint = f"http://{self.a}:{self.S3_PORT}"
        self.moto: Optional[subprocess.Popen] = None

    def start(self, worker_memory: str = "2g", timeout: float = 120,
              while_workers_start=None) -> "Cluster":
        """Start moto and the master on ``a``, then the workers on ``b`` and ``c``; wait
        until both workers are registered and moto answers from ``b``.
        ``while_workers_start(cluster)``, when given, runs once moto answers, while the
        workers' JVMs start (e.g. to write the input)."""
        h = self.hosts
        python = str(VENV / "bin" / "python")
        self.moto = h.start("a", "moto", [python, "-m", "moto.server", "-H", self.a,
                                          "-p", str(self.S3_PORT)])
        spark_class = os.path.join(_spark_home(), "bin", "spark-class")
        h.start("a", "master", [spark_class, "org.apache.spark.deploy.master.Master",
                                "--host", self.a, "--port", str(self.MASTER_PORT),
                                "--webui-port", str(self.MASTER_UI)], env=self._daemon_env("a"))
        deadline = time.time() + timeout
        self._wait(lambda: self._listening("a", self.MASTER_PORT), deadline, "the Spark master",
                   ("a", "master"))
        for w in self.WORKERS:
            h.start(w, "worker", [spark_class, "org.apache.spark.deploy.worker.Worker",
                                  "--host", h.addr(w), "--cores", "1", "--memory", worker_memory,
                                  "--webui-port", str(self.WORKER_UI),
                                  "--work-dir", WORKDIR + "/spark-work", self.master],
                    env=self._daemon_env(w))
        # moto answers on 10.213.0.1 from the other hosts
        self._wait(lambda: self.hosts.http("b", self.endpoint + "/")[0] == 200, deadline,
                   "moto's S3 server", ("a", "moto"))
        if while_workers_start is not None:
            while_workers_start(self)
        self._wait(lambda: self.alive_workers() >= len(self.WORKERS), deadline,
                   "two alive Spark workers", ("b", "worker"))
        return self

    def _daemon_env(self, host: str) -> Dict[str, str]:
        return self.hosts.env(host, {"SPARK_LOG_DIR": WORKDIR + "/spark-logs",
                                     "SPARK_DAEMON_JAVA_OPTS": JVM_OPTS})

    def _listening(self, host: str, port: int) -> bool:
        return any(s[0] == "tcp" and s[5] == "LISTEN" and s[2] == port
                   for s in self.hosts.sockets(host))

    def _wait(self, predicate, deadline: float, what: str, log: Tuple[str, str]) -> None:
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}:\n" + self.hosts.log(*log)[-3000:])

    def master_state(self) -> Dict:
        status, body = self.hosts.http("a", f"http://{self.a}:{self.MASTER_UI}/json/")
        return json.loads(body) if status == 200 else {}

    def alive_workers(self) -> int:
        return int(self.master_state().get("aliveworkers", 0))

    # -- S3 (plain HTTP: moto checks no signatures) --
    def bucket(self, name: str) -> str:
        status, body = self.hosts.http("a", f"{self.endpoint}/{name}", "PUT")
        if status != 200:
            raise RuntimeError(f"could not create bucket {name}: {status} {body[:500]!r}")
        return name

    def s3_keys(self, bucket: str, prefix: str = "") -> List[str]:
        """Every key under ``prefix`` (ListObjectsV2, following continuation tokens)."""
        import urllib.parse
        import xml.etree.ElementTree as ET

        keys: List[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self.hosts.http(
                "a", f"{self.endpoint}/{bucket}?{urllib.parse.urlencode(query)}")
            if status != 200:
                raise RuntimeError(f"listing s3://{bucket}/{prefix}: {status} {body[:500]!r}")
            root = ET.fromstring(body)
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            keys += [e.text for e in root.iter(f"{ns}Key")]
            token_el = root.find(f"{ns}NextContinuationToken")
            if token_el is None or not token_el.text:
                return keys
            token = token_el.text

    def s3_get(self, bucket: str, key: str) -> bytes:
        status, body = self.hosts.http("a", f"{self.endpoint}/{bucket}/{key}")
        if status != 200:
            raise FileNotFoundError(f"s3://{bucket}/{key}: {status}")
        return body

    def s3a_conf(self) -> Dict[str, str]:
        """The ``spark.hadoop.fs.s3a.*`` settings pointing S3A at moto on host ``a``."""
        from tests.conftest import s3a_conf

        return s3a_conf(self.endpoint)

    # -- jobs --
    def env(self, host: str) -> Dict[str, str]:
        """A job's environment on ``host``: the host's, the S3 credentials of moto, no
        packages fetched (the S3A jars are on the class path), no Ray usage reports."""
        from tests.conftest import S3_ENV

        return self.hosts.env(host, dict(S3_ENV, SPARKAE_NO_PACKAGES="1",
                                         RAY_USAGE_STATS_ENABLED="0"))

    def submit_argv(self, job: str, args: Sequence[str], confs: Dict[str, str]) -> List[str]:
        """spark-submit of ``jobs/<job>`` with the driver on host ``a`` (its address, not
        loopback) and the settings ``spark-submit.sh`` gives a cluster job: the project's
        Python, quiet Spark logs, ``sparkae`` shipped as a zip (built on host ``a``)."""
        conf = {"spark.driver.host": self.a, "spark.driver.bindAddress": self.a,
                "spark.pyspark.python": str(VENV / "bin" / "python"),
                "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                "spark.executor.memory": "1g", "spark.executor.cores": "1",
                "spark.executor.extraJavaOptions": JVM_OPTS}
        jars = ":".join(s3a_jars())
        conf.update({"spark.driver.extraClassPath": jars, "spark.executor.extraClassPath": jars})
        conf.update(self.s3a_conf())
        conf.update(confs)
        zip_cmd = ("import shutil; shutil.make_archive('/srv/sparkae', 'zip', "
                   f"{str(ROOT)!r}, 'sparkae')")
        argv = ["sh", "-c", '"$0" -c "$1" && shift && exec "$@"',
                str(VENV / "bin" / "python"), zip_cmd,
                str(VENV / "bin" / "spark-submit"), "--master", self.master,
                "--driver-java-options",
                f"-Dlog4j2.configurationFile=file:{ROOT}/conf/log4j2.properties {JVM_OPTS}",
                "--py-files", "/srv/sparkae.zip"]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        return argv + [str(ROOT / "jobs" / job), *args]

    def submit(self, name: str, job: str, args: Sequence[str],
               confs: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        """Start a job on host ``a``; its output is ``hosts.log("a", name)``."""
        return self.hosts.start("a", name, self.submit_argv(job, args, confs or {}),
                                env=self.env("a"))


def s3a_jars() -> List[str]:
    """The S3A jars (hadoop-aws for pyspark's Hadoop and its runtime dependencies, as Ivy
    resolves them) from the Ivy cache, which ``spark.jars.packages`` filled before. They
    go on the driver's and the executors' class path as a cluster image would carry them:
    no Ivy run (nor network) in the namespaces, and no 700 MB AWS SDK copied to each
    executor of each job.

    Raises
    ------
    FileNotFoundError
        A jar is not in the cache (:func:`fetch_s3a_jars` fills it).
    """
    import xml.etree.ElementTree as ET

    from sparkae.io.jars import hadoop_version

    ivy = ivy_dir()
    version = hadoop_version()
    descriptor = ivy / "cache" / "org.apache.hadoop" / "hadoop-aws" / f"ivy-{version}.xml"
    wanted = [("org.apache.hadoop", "hadoop-aws", version)]
    if descriptor.exists():
        for dep in ET.parse(descriptor).getroot().iter("dependency"):
            conf = dep.get("conf", "")
            if re.match(r"(compile|runtime)->", conf):
                wanted.append((dep.get("org"), dep.get("name"), dep.get("rev")))
    jars = [ivy / "jars" / f"{org}_{name}-{rev}.jar" for org, name, rev in wanted]
    missing = [str(j) for j in jars if not j.exists()]
    if missing or not descriptor.exists():
        raise FileNotFoundError(
            "the S3A jars are not in the Ivy cache (" + ", ".join(missing or [str(descriptor)])
            + ")")
    return [str(j) for j in jars]


def ivy_dir() -> Path:
    """Spark's Ivy directory (``~/.ivy2.5.2``; ``SPARKAE_IVY_DIR`` names another)."""
    return Path(os.environ.get("SPARKAE_IVY_DIR", Path.home() / ".ivy2.5.2"))


def fetch_s3a_jars(timeout: float = 1800) -> str:
    """Fill the Ivy cache with the S3A jars as ``spark.jars.packages`` does at a session's
    start (from Maven Central on a fresh machine, about 690 MB, once; what the ``s3`` tests'
    session does too): ``spark-submit --packages`` of an empty application, in this
    process's own network namespace, before any test host exists. Returns its output."""
    from sparkae.io.jars import s3a_packages

    with tempfile.TemporaryDirectory(prefix="sae-ivy-") as d:
        app = Path(d) / "noop.py"
        app.write_text("")
        proc = subprocess.run(
            [str(VENV / "bin" / "spark-submit"), "--master", "local[1]",
             "--conf", f"spark.jars.ivy={ivy_dir()}", "--conf", "spark.ui.enabled=false",
             "--conf", "spark.driver.host=127.0.0.1",
             "--conf", "spark.driver.bindAddress=127.0.0.1",
             "--packages", s3a_packages(), str(app)],
            env=dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_HOME=_spark_home()),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.stdout + proc.stderr
