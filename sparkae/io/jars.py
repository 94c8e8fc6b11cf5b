"""The Maven packages that give Spark the ``s3a://`` file system.

pyspark's wheel bundles Hadoop's client jars but not ``hadoop-aws`` (the S3A connector) or
the AWS SDK it is built on. Spark fetches both at session start when
``spark.jars.packages`` names ``org.apache.hadoop:hadoop-aws:<version>``: Ivy resolves it
from Maven Central (into ``~/.ivy2*``, once; later starts use that cache) and pulls the
matching AWS SDK bundle (``software.amazon.awssdk:bundle`` for Hadoop 3.4,
``com.amazonaws:aws-java-sdk-bundle`` for Hadoop 3.3) as a transitive dependency. The
``hadoop-aws`` version must equal the bundled Hadoop's, which :func:`hadoop_version`
reads from pyspark's own jars.

Set ``SPARKAE_NO_PACKAGES=1`` to add nothing (an air-gapped machine, or a cluster whose
image already carries the jars); Databricks runtimes (``DATABRICKS_RUNTIME_VERSION`` set)
already carry S3A, so nothing is added there either.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["hadoop_version", "s3a_packages", "packages_enabled", "merge_packages",
           "with_s3a_packages", "PACKAGES_KEY"]

log = logging.getLogger(__name__)

#: The Spark setting that lists Maven coordinates to resolve at session start.
PACKAGES_KEY = "spark.jars.packages"

#: Jar names that carry the bundled Hadoop's version, most specific first (Hadoop 3 builds
#: ship the shaded client jars; a Hadoop 2 build would ship hadoop-common).
_HADOOP_JARS = (re.compile(r"^hadoop-client-api-(\d+\.\d+\.\d+)\.jar$"),
                re.compile(r"^hadoop-client-runtime-(\d+\.\d+\.\d+)\.jar$"),
                re.compile(r"^hadoop-common-(\d+\.\d+\.\d+)\.jar$"))


def _pyspark_jars_dir() -> str:
    """The ``jars/`` folder of the installed pyspark."""
    import pyspark

    return os.path.join(os.path.dirname(os.path.abspath(pyspark.__file__)), "jars")


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
    folder = jars_dir or _pyspark_jars_dir()
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise RuntimeError(f"cannot list Spark's jars folder {folder!r} to find the bundled "
                           f"Hadoop version: {exc}") from exc
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


def with_s3a_packages(conf: Optional[Mapping[str, Any]] = None,
                      environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """A copy of a Spark conf with the S3A packages added to ``spark.jars.packages``.

    The coordinates of :func:`s3a_packages` are merged into any value already there
    (comma-joined, no duplicates, see :func:`merge_packages`). Nothing is added when
    ``SPARKAE_NO_PACKAGES=1`` or on Databricks (``DATABRICKS_RUNTIME_VERSION`` set), whose
    runtime already carries S3A. The first session start with the packages downloads them
    from Maven Central into Ivy's cache (``~/.ivy2*``); later starts reuse the cache.

    Parameters
    ----------
    conf : mapping, optional
        Spark settings; not modified.
    environ : mapping, optional
        The environment to read; ``os.environ`` by default.

    Returns
    -------
    dict
        The settings with ``spark.jars.packages`` set or extended.
    """
    out = dict(conf or {})
    if not packages_enabled(environ):
        log.debug("not adding the S3A packages (SPARKAE_NO_PACKAGES=1 or Databricks)")
        return out
    existing = out.get(PACKAGES_KEY)
    out[PACKAGES_KEY] = merge_packages(None if existing is None else str(existing),
                                       s3a_packages())
    return out


def _main(argv: Optional[List[str]] = None) -> int:
    """``python -m sparkae.io.jars [EXISTING]``: print the ``spark.jars.packages`` value.

    Prints ``EXISTING`` (comma-separated coordinates, may be absent) merged with the S3A
    coordinates, or ``EXISTING`` unchanged when packages are off; ``spark-submit.sh``
    reads it from stdout.
    """
    args = sys.argv[1:] if argv is None else argv
    existing = args[0] if args else ""
    try:
        value = merge_packages(existing, s3a_packages()) if packages_enabled() else existing
    except RuntimeError as exc:
        sys.stderr.write(f"sparkae: {exc}\n")
        return 1
    sys.stdout.write(value + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
