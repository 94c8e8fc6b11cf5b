"""Directories that Spark writes (scores, partitions), moved into place on the driver.

Spark writes a job's output through its own connectors; sparkae then moves the finished
directory into place. Local paths use ``os`` renames; every other scheme uses Hadoop's
FileSystem through the driver's JVM, which renames directories on HDFS atomically and on
object stores (S3A) by copying (not atomic: a kill mid-copy can leave a partial copy
beside the old one, which the next run's recovery removes).
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any, List

import sparkae.spark_private as spark_private
from sparkae.io.backends import Hadoop
from sparkae.io.uri import parse

__all__ = ["LocalFiles", "HadoopFiles", "files_for", "swap_dir"]


class LocalFiles:
    """File operations on the driver's file system."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)  # fails instead of replacing a non-empty directory

    def delete(self, path: str) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)

    def listdir(self, path: str) -> List[str]:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []


class HadoopFiles:
    """The same operations through Hadoop's FileSystem in the driver's JVM (hdfs://,
    s3a://, ...): :class:`sparkae.io.backends.Hadoop` on string paths."""

    def __init__(self, spark: Any, root: str, what: str = "output") -> None:
        if not spark_private.is_classic(spark):  # Spark Connect: no JVM on this side
            raise ValueError(f"{what} '{root}': paths with a scheme need a classic "
                             "SparkSession; under Spark Connect write to a catalog table")
        self._fs = Hadoop(spark, parse(root, what))

    def exists(self, path: str) -> bool:
        return self._fs.info(parse(path)) != ""

    def makedirs(self, path: str) -> None:
        self._fs.makedirs(parse(path))

    def rename(self, src: str, dst: str) -> None:
        self._fs.rename(parse(src), parse(dst))   # refuses an existing destination

    def delete(self, path: str) -> None:
        self._fs.delete(parse(path))

    def listdir(self, path: str) -> List[str]:
        return self._fs.listdir(parse(path))


def files_for(spark: Any, root: str, what: str = "output") -> Any:
    """:class:`LocalFiles` for a local ``root``, else :class:`HadoopFiles`."""
    return LocalFiles() if parse(root, what).is_local else HadoopFiles(spark, root, what)


def swap_dir(spark: Any, staged: str, dest: str, what: str = "output") -> None:
    """Put the finished directory ``staged`` at ``dest``, replacing what was there: the
    old copy is moved aside first and deleted only once the new one is in place."""
    files = files_for(spark, dest, what)
    old = None
    if files.exists(dest):
        old = f"{dest.rstrip('/')}.old-{uuid.uuid4().hex[:8]}"
        files.rename(dest, old)
    try:
        files.rename(staged, dest)
    except BaseException:
        if old and not files.exists(dest):
            files.rename(old, dest)
        raise
    if old:
        files.delete(old)
