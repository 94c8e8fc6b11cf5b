"""The Maven packages that give Spark the ``s3a://`` file system and Delta Lake.

pyspark's wheel bundles Hadoop's client jars but not ``hadoop-aws`` (the S3A connector) or
the AWS SDK it is built on. Spark fetches both at session start when
``spark.jars.packages`` names ``org.apache.hadoop:hadoop-aws:<version>``: Ivy resolves it
from Maven Central (into ``~/.ivy2*``, once; later starts use that cache) and pulls the
matching AWS SDK bundle (``software.amazon.awssdk:bundle`` for Hadoop 3.4,
``com.amazonaws:aws-java-sdk-bundle`` for Hadoop 3.3) as a transitive dependency. The
``hadoop-aws`` version must equal the bundled Hadoop's, which :func:`hadoop_version`
reads from pyspark's own jars.

Delta Lake (``format("delta")``) comes as the ``io.delta`` jar built for the installed
Spark's minor version (:data:`DELTA_RELEASES`, read off Maven Central) plus the two session
settings of :data:`DELTA_CONF`. Delta's jars call Spark internals, so a jar built for
another Spark minor fails at the first write (measured: delta-spark_4.2_2.13:4.4.0 on Spark
4.3.0 raises ``NoSuchMethodError: LogicalRDD.<init>``); a Spark with no Delta release gets
no Delta, and reading a Delta table there fails with an error saying so.

Set ``SPARKAE_NO_PACKAGES=1`` to add nothing (an air-gapped machine, or a cluster whose
image already carries the jars); Databricks runtimes (``DATABRICKS_RUNTIME_VERSION`` set)
already carry S3A and Delta, so nothing is added there either.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = ["hadoop_version", "spark_version", "s3a_packages", "delta_package",
           "packages_enabled", "merge_packages", "with_packages", "PACKAGES_KEY",
           "DELTA_CONF", "DELTA_RELEASES", "SNAPSHOT_PARTITIONS_KEY", "local_cores", "usable_cpus",
           "local_delta_conf"]

log = logging.getLogger(__name__)

#: The Spark setting that lists Maven coordinates to resolve at session start.
PACKAGES_KEY = "spark.jars.packages"

#: The Delta Lake jar for each Spark minor version: ``group:artifact`` and version, the
#: newest on Maven Central (2026-12-01) whose POM names that Spark. Tested here: 3.5 (the
#: legacy environment) and 4.2 (the main one); 4.0 and 4.1 as published.
DELTA_RELEASES: Dict[str, Tuple[str, str]] = {
    "3.5": ("io.delta:delta-spark_2.12", "3.3.2"),
    "4.0": ("io.delta:delta-spark_2.13", "4.0.1"),
    "4.1": ("io.delta:delta-spark_4.1_2.13", "4.4.0"),
    "4.2": ("io.delta:delta-spark_4.2_2.13", "4.4.0"),
}

#: The session settings that make ``format("delta")``, Delta SQL (``OPTIMIZE``,
#: ``DESCRIBE HISTORY``) and Delta catalog tables work; static, so set at session start.
DELTA_CONF: Dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

#: Delta's setting for how many tasks rebuild a table's snapshot from its log (Delta's
#: default: 50, sized for clusters). On a local master sparkae sets it to the master's core
#: count (:func:`local_delta_conf`): 50 tasks on a few cores make every read of a small
#: table slow (measured on local[2]: the walkthrough's three nightly runs into a Delta
#: table, 65 s with 50, 21 s with 2).
SNAPSHOT_PARTITIONS_KEY = "spark.databricks.delta.snapshotPartitions"

#: ``local``, ``local[N]``, ``local[*]``, ``local[N,F]``, ``local[*,F]`` (F: task retries);
#: ``local-cluster[...]`` is a cluster of separate executors, not a local master.
_LOCAL_MASTER = re.compile(r"^local(?:\[\s*(\*|\d+)\s*(?:,\s*\d+\s*)?\])?$")

_SPARK_CORE = re.compile(r"^spark-core_(\d+\.\d+)-(\d+\.\d+\.\d+)\.jar$")

#: Jar names that carry the bundled Hadoop's version, most specific first (Hadoop 3 builds
#: ship the shaded client jars; a Hadoop 2 build would ship hadoop-common).
_HADOOP_JARS = (re.compile(r"^hadoop-client-api-(\d+\.\d+\.\d+)\.jar$"),
                re.compile(r"^hadoop-client-runtime-(\d+\.\d+\.\d+)\.jar$"),
                re.compile(r"^hadoop-common-(\d+\.\d+\.\d+)\.jar$"))


def _pyspark_jars_dir() -> str:
    """The ``jars/`` folder of the installed pyspark."""
    import pyspark

    return os.path.join(os.path.dirname(os.path.abspath(pyspark.__file__)), "jars")


def _jar_names(jars_dir: Optional[str]) -> Tuple[str, List[str]]:
    """The jars folder (pyspark's own by default) and the names in it."""
    folder = jars_dir or _pyspark_jars_dir()
    try:
        return folder, os.listdir(folder)
    except OSError as exc:
        raise RuntimeError(f"cannot list Spark's jars folder {folder!r}: {exc}") from exc


def hadoop_version(jars_dir: Optional[str] = None) -> str:
    """The Hadoop version bundled with the installed pyspark.

    Parameters
    ----------
    jars_dir : str, optional
        The folder of Spark's jars; pyspark's own ``jars/`` folder by default.

    Returns
    -------
    str
        The version, e.g. ``"3.4.1"``, read from a jar name such as
        ``hadoop-client-api-3.4.1.jar``.

    Raises
    ------
    RuntimeError
        The folder is missing or holds no Hadoop client jar (a "without Hadoop" Spark build).
    """
    folder, names = _jar_names(jars_dir)
    for pattern in _HADOOP_JARS:
        versions = sorted({m.group(1) for m in map(pattern.match, names) if m})
        if len(versions) == 1:
            return versions[0]
        if versions:
            raise RuntimeError(f"Spark's jars folder {folder!r} holds several Hadoop versions "
                               f"({', '.join(versions)}); cannot choose a hadoop-aws version")
    raise RuntimeError(f"no hadoop-client-api-<version>.jar (or hadoop-common) in {folder!r}: "
                       "this Spark has no bundled Hadoop, so sparkae cannot choose a matching "
                       "hadoop-aws; add the S3A jars yourself and set SPARKAE_NO_PACKAGES=1")


def s3a_packages(jars_dir: Optional[str] = None) -> str:
    """The Maven coordinates that give S3A to the installed pyspark.

    Parameters
    ----------
    jars_dir : str, optional
        The folder of Spark's jars, as for :func:`hadoop_version`.

    Returns
    -------
    str
        ``"org.apache.hadoop:hadoop-aws:<bundled Hadoop version>"``, a value for
        ``spark.jars.packages`` (Ivy adds the AWS SDK bundle that hadoop-aws depends on).
    """
    return f"org.apache.hadoop:hadoop-aws:{hadoop_version(jars_dir)}"


def spark_version(jars_dir: Optional[str] = None) -> str:
    """The installed Spark's version, read from its ``spark-core_<scala>-<version>.jar`` in
    ``jars_dir`` (as for :func:`hadoop_version`); a RuntimeError when the folder is missing
    or holds no spark-core jar."""
    folder, names = _jar_names(jars_dir)
    found = sorted({m.group(2) for m in map(_SPARK_CORE.match, names) if m})
    if len(found) != 1:
        raise RuntimeError(f"expected one spark-core_<scala>-<version>.jar in {folder!r}, "
                           f"found {found or 'none'}")
    return found[0]


def delta_package(jars_dir: Optional[str] = None) -> Optional[str]:
    """The Delta Lake coordinate for the installed Spark, or None when Delta has no release
    for its minor version (see :data:`DELTA_RELEASES`).

    Parameters
    ----------
    jars_dir : str, optional
        The folder of Spark's jars, as for :func:`spark_version`.
    """
    minor = ".".join(spark_version(jars_dir).split(".")[:2])
    release = DELTA_RELEASES.get(minor)
    return None if release is None else f"{release[0]}:{release[1]}"


def packages_enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Whether sparkae should add the S3A packages.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read; ``os.environ`` by default.

    Returns
    -------
    bool
        False when ``SPARKAE_NO_PACKAGES=1`` or on Databricks
        (``DATABRICKS_RUNTIME_VERSION`` set: its runtime carries S3A already).
    """
    env = os.environ if environ is None else environ
    return env.get("SPARKAE_NO_PACKAGES") != "1" and "DATABRICKS_RUNTIME_VERSION" not in env


def merge_packages(existing: Optional[str], extra: str) -> str:
    """Comma-join two ``spark.jars.packages`` values without duplicates.

    A coordinate of ``extra`` is dropped when ``existing`` already names the same
    ``group:artifact`` (whatever its version: the user's choice wins).

    Parameters
    ----------
    existing : str or None
        The value already set (comma-separated coordinates), if any.
    extra : str
        The coordinates to add.

    Returns
    -------
    str
        The merged value, the existing coordinates first, in their order.
    """
    merged: List[str] = []
    for coord in f"{existing or ''},{extra}".split(","):
        coord = coord.strip()
        if not coord:
            continue
        artifact = coord.rsplit(":", 1)[0] if coord.count(":") >= 2 else coord
        same = [c for c in merged if c == coord or c.rsplit(":", 1)[0] == artifact]
        if same:
            if coord not in same:
                log.warning("%s names %s; keeping it rather than %s", PACKAGES_KEY,
                            same[0], coord)
            continue
        merged.append(coord)
    return ",".join(merged)


def with_packages(conf: Optional[Mapping[str, Any]] = None,
                  environ: Optional[Mapping[str, str]] = None,
                  jars_dir: Optional[str] = None,
                  master: Optional[str] = None) -> Dict[str, Any]:
    """A copy of a Spark conf with S3A and Delta Lake added.

    The coordinates of :func:`s3a_packages` and :func:`delta_package` (when Delta has a
    release for this Spark) are merged into any ``spark.jars.packages`` already there
    (comma-joined, no duplicates, the user's versions win, see :func:`merge_packages`),
    and with Delta the settings of :data:`DELTA_CONF`: ``spark.sql.extensions`` is
    extended, ``spark.sql.catalog.spark_catalog`` set unless the user set it. Nothing is
    added when ``SPARKAE_NO_PACKAGES=1`` or on Databricks (``DATABRICKS_RUNTIME_VERSION``
    set), whose runtime carries both. The first session start with the packages downloads
    them from Maven Central into Ivy's cache (``~/.ivy2*``); later starts reuse the cache.
    With Delta and a local ``master``, Delta's snapshot partitions are set to its core
    count (:func:`local_delta_conf`) unless ``conf`` sets them.

    Parameters
    ----------
    conf : mapping, optional
        Spark settings; not modified.
    environ : mapping, optional
        The environment to read; ``os.environ`` by default.
    jars_dir : str, optional
        The folder of Spark's jars; pyspark's own by default.
    master : str, optional
        The session's Spark master, when known (``local[N]`` and the like add
        :data:`SNAPSHOT_PARTITIONS_KEY`).

    Returns
    -------
    dict
        The settings with the packages and Delta's settings added.
    """
    out = dict(conf or {})
    if not packages_enabled(environ):
        log.debug("not adding S3A and Delta (SPARKAE_NO_PACKAGES=1 or Databricks)")
        return out
    coords = [s3a_packages(jars_dir)]
    delta = delta_package(jars_dir)
    if delta is None:
        log.debug("Delta Lake has no release for Spark %s; not adding it",
                  spark_version(jars_dir))
    else:
        coords.append(delta)
    existing = out.get(PACKAGES_KEY)
    out[PACKAGES_KEY] = merge_packages(None if existing is None else str(existing),
                                       ",".join(coords))
    if delta is not None:
        out.update(delta_conf(out))
        out.update(local_delta_conf(master, out))
    return out


def delta_conf(conf: Mapping[str, Any]) -> Dict[str, str]:
    """The Delta settings to set on top of ``conf``: Delta's SQL extension appended to any
    ``spark.sql.extensions`` there, the Delta catalog unless a catalog is set."""
    out: Dict[str, str] = {}
    ext_key, cat_key = list(DELTA_CONF)
    have = [e.strip() for e in str(conf.get(ext_key) or "").split(",") if e.strip()]
    if DELTA_CONF[ext_key] not in have:
        out[ext_key] = ",".join(have + [DELTA_CONF[ext_key]])
    if not conf.get(cat_key):
        out[cat_key] = DELTA_CONF[cat_key]
    return out


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def local_cores(master: Optional[str], cpu_count: Optional[int] = None) -> Optional[int]:
    """The task threads of a local Spark master, or None for any other master.

    Parameters
    ----------
    master : str or None
        A Spark master URL.
    cpu_count : int, optional
        The machine's usable CPUs, for ``local[*]``; by default this process's (its CPU
        affinity, else ``os.cpu_count()``).

    Returns
    -------
    int or None
        N for ``local[N]`` (and ``local[N,F]``), the CPU count for ``local[*]``, 1 for
        ``local`` (Spark's one thread); None for a cluster master, ``local-cluster[...]``,
        ``local[0]`` (which Spark rejects) or None.
    """
    match = _LOCAL_MASTER.match((master or "").strip())
    if match is None:
        return None
    threads = match.group(1)
    if threads is None:
        return 1
    if threads == "*":
        return max(1, cpu_count or usable_cpus())
    return int(threads) or None


def local_delta_conf(master: Optional[str], conf: Optional[Mapping[str, Any]] = None,
                     cpu_count: Optional[int] = None) -> Dict[str, str]:
    """The Delta setting for a local master: :data:`SNAPSHOT_PARTITIONS_KEY` set to its core
    count (see :func:`local_cores`) unless ``conf`` sets it (the user's value wins).

    Parameters
    ----------
    master : str or None
        The session's Spark master.
    conf : mapping, optional
        The settings already chosen; not modified.
    cpu_count : int, optional
        As for :func:`local_cores`.

    Returns
    -------
    dict
        ``{SNAPSHOT_PARTITIONS_KEY: "<cores>"}``, or ``{}`` for a cluster master or when
        ``conf`` has the key. Only for a session that loads Delta: :func:`with_packages`
        adds it with Delta's jar.
    """
    if conf is not None and SNAPSHOT_PARTITIONS_KEY in conf:
        return {}
    cores = local_cores(master, cpu_count)
    return {} if cores is None else {SNAPSHOT_PARTITIONS_KEY: str(cores)}


def _main(argv: Optional[List[str]] = None) -> int:
    """``python sparkae/io/jars.py packages [EXISTING]`` prints the ``spark.jars.packages``
    value (EXISTING merged with S3A and Delta, or EXISTING unchanged when packages are off);
    ``python sparkae/io/jars.py conf [MASTER]`` prints the Delta settings to add, one
    ``key=value`` per line (nothing when packages are off or Delta has no release for this
    Spark), with :func:`local_delta_conf`'s for a local MASTER.
    ``spark-submit.sh`` reads both from stdout.
    """
    args = sys.argv[1:] if argv is None else argv
    what, rest = (args[0], args[1:]) if args else ("packages", [])
    try:
        if what == "packages":
            existing = rest[0] if rest else ""
            value = with_packages({PACKAGES_KEY: existing} if existing else {})
            sys.stdout.write(value.get(PACKAGES_KEY, existing) + "\n")
        elif what == "conf":
            if packages_enabled() and delta_package() is not None:
                settings = dict(DELTA_CONF, **local_delta_conf(rest[0] if rest else None))
                for key, value in settings.items():
                    sys.stdout.write(f"{key}={value}\n")
        else:
            sys.stderr.write(f"sparkae: jars.py: got {what!r}, expected packages or conf\n")
            return 2
    except RuntimeError as exc:
        sys.stderr.write(f"sparkae: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
