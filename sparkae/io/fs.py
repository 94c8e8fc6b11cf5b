"""THE file-system layer: every read and write of sparkae goes through these functions.

A location (see :mod:`sparkae.io.uri`) is reached through one of two back ends:

- pyarrow's file systems (local, S3, GCS, ADLS; HDFS through libhdfs), configured from
  Spark's Hadoop settings (``spark.hadoop.fs.s3a.*``: endpoint, path style, SSL,
  credentials, region; per-bucket ``fs.s3a.bucket.NAME.*`` too) and else the usual
  ``AWS_*`` variables. This is what training ranks and Ray trials use: the driver
  collects the settings once (:func:`options_from_spark`) and ships them with the job
  (:func:`configure` in the worker).
- Hadoop's FileSystem through the driver's JVM for ``hdfs://`` on the driver: exactly what
  Spark itself uses, same configuration. Outside the driver (ranks, Ray trials) HDFS is
  reached through pyarrow's libhdfs client where it loads, else through WebHDFS at the
  NameNode's ``dfs.namenode.http-address`` (fsspec's client, wrapped as a pyarrow file
  system).

Writes of single files are atomic: a local file is written beside its name and renamed;
an object-store object appears only when its upload completes. Directories are committed
by :mod:`sparkae.io.commit` (files first, a manifest last).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import pyarrow as pa

import sparkae.spark_private as spark_private
from sparkae.io import backends
from sparkae.io.backends import StorageError
from sparkae.io.uri import Uri, parse

log = logging.getLogger("sparkae")

__all__ = ["configure", "using", "options", "options_from_spark", "exists", "isdir", "isfile",
           "listdir", "makedirs", "delete", "read_bytes", "write_bytes", "open_input",
           "arrow_filesystem", "rename", "size", "StorageError"]

#: The Hadoop settings carried to workers (credentials included; never logged): S3A's
#: (and per bucket), the ADLS account keys, the GCS endpoint, the NameNode's web address.
S3_KEYS = ("endpoint", "path.style.access", "connection.ssl.enabled", "access.key",
           "secret.key", "session.token", "aws.credentials.provider", "endpoint.region")
SINGLE_KEYS = ("fs.gs.storage.root.url", "dfs.namenode.http-address", "fs.sparkae.webhdfs.user")
PREFIXES = ("fs.s3a.bucket.", "fs.azure.account.key.", "dfs.namenode.http-address.")
_WANTED = "^(" + "|".join(
    [re.escape(f"fs.s3a.{k}") for k in S3_KEYS] + [re.escape(k) for k in SINGLE_KEYS]
    + [re.escape(p) + ".+" for p in PREFIXES]) + ")$"
_options: Optional[Dict[str, str]] = None
_cache: Dict[Tuple, Any] = {}


def options_from_spark(spark: Any) -> Dict[str, str]:
    """The storage settings of ``spark``'s Hadoop configuration (``spark.hadoop.*`` and
    core-site entries under :data:`PREFIXES`); empty under Spark Connect."""
    out: Dict[str, str] = {}
    try:
        conf = spark_private.hadoop_conf(spark)
    except Exception:  # noqa: BLE001 - Spark Connect: no JVM on this side
        try:
            for key, value in spark.conf.getAll.items() if hasattr(spark.conf, "getAll") else []:
                if key.startswith("spark.hadoop."):
                    out[key[len("spark.hadoop."):]] = value
        except Exception:  # noqa: BLE001
            pass
        return out
    # only the keys sparkae uses, picked in the JVM in one call (not one per Hadoop default)
    found = conf.getValByRegex(_WANTED)
    for key in list(found.keySet()):
        value = found.get(key)
        if value:
            out[key] = value
    return out


def configure(settings: Optional[Mapping[str, str]]) -> None:
    """Use ``settings`` (from :func:`options_from_spark`) in this process; None forgets
    them (the next use reads the active SparkSession again)."""
    global _options
    _options = dict(settings) if settings is not None else None
    _cache.clear()


@contextlib.contextmanager
def using(settings: Optional[Mapping[str, str]]) -> Iterator[None]:
    """Use ``settings`` inside the block and the previous ones after it (a rank that
    trains inside the driver's process must not pin the driver's settings)."""
    global _options
    previous = _options
    if settings is not None:
        configure(settings)
    try:
        yield
    finally:
        _options = previous
        _cache.clear()


def options() -> Dict[str, str]:
    """This process's storage settings: configured (:func:`configure`), else read from the
    active SparkSession each time (its Hadoop settings may change between calls)."""
    if _options is not None:
        return _options
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        return options_from_spark(spark) if spark is not None else {}
    except Exception:  # noqa: BLE001 - no Spark here (a rank, a pyfunc)
        return {}


def _backend(uri: Uri, what: str) -> Any:
    opts = {} if uri.is_local else options()   # local files need no settings (nor py4j)
    key = (uri.scheme, uri.authority, tuple(sorted(opts.items())))
    if key not in _cache:
        _cache[key] = backends.make(uri, opts, what)
    return _cache[key]


def _locate(location: str, what: str) -> Tuple[Any, Uri]:
    uri = parse(location, what)
    return _backend(uri, what), uri


def _wrap(exc: BaseException, location: str, what: str, action: str) -> StorageError:
    scheme = location.split(":", 1)[0] if "://" in location else "file"
    hint = ""
    if scheme in ("s3a", "s3", "s3n"):
        hint = ("; S3 is configured the Spark way: spark.hadoop.fs.s3a.endpoint, "
                ".access.key, .secret.key, .path.style.access (or AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY, AWS_REGION)")
    err = StorageError(f"{what}: could not {action} '{location}' (scheme {scheme}): {exc}{hint}")
    err.__cause__ = exc if isinstance(exc, BaseException) else None
    return err


def _call(location: str, what: str, action: str, fn):
    backend, uri = _locate(location, what)
    try:
        return fn(backend, uri)
    except (FileNotFoundError, StorageError):
        raise
    except (OSError, pa.ArrowException) as exc:
        raise _wrap(exc, location, what, action) from exc


def exists(location: str, what: str = "path") -> bool:
    """True when a file or directory is at ``location``."""
    return bool(_call(location, what, "check", lambda b, u: b.info(u)))


def isdir(location: str, what: str = "path") -> bool:
    """True when ``location`` is a directory (or an object-store prefix holding objects)."""
    return _call(location, what, "check", lambda b, u: b.info(u)) == "dir"


def isfile(location: str, what: str = "path") -> bool:
    """True when ``location`` is a file (object)."""
    return _call(location, what, "check", lambda b, u: b.info(u)) == "file"


def listdir(location: str, what: str = "path") -> List[str]:
    """Names directly under ``location``, sorted; empty when it does not exist."""
    return _call(location, what, "list", lambda b, u: b.listdir(u))


def makedirs(location: str, what: str = "path") -> None:
    """Create ``location`` and its parents (nothing to do on object stores)."""
    _call(location, what, "create", lambda b, u: b.makedirs(u))


def delete(location: str, what: str = "path") -> None:
    """Delete a file or a whole directory; nothing when it does not exist."""
    _call(location, what, "delete", lambda b, u: b.delete(u))


def read_bytes(location: str, what: str = "path") -> bytes:
    """The whole content of the file at ``location``.

    Raises
    ------
    FileNotFoundError
        Nothing is there.
    """
    def read(b, u):
        try:
            return b.read(u)
        except FileNotFoundError:
            raise FileNotFoundError(f"{what}: '{location}' does not exist") from None
    return _call(location, what, "read", read)


def write_bytes(location: str, data: bytes, what: str = "path") -> None:
    """Write ``data`` to ``location`` atomically (readers see the old file or the new)."""
    _call(location, what, "write", lambda b, u: b.write(u, bytes(data)))


def open_input(location: str, what: str = "path") -> Any:
    """A random-access pyarrow file for ``location`` (e.g. for ``pq.ParquetFile``)."""
    return _call(location, what, "open", lambda b, u: b.open_input(u))


def size(location: str, what: str = "path") -> int:
    """The size of the file at ``location`` in bytes."""
    return _call(location, what, "stat", lambda b, u: b.size(u))


def rename(src: str, dst: str, what: str = "path") -> None:
    """Move ``src`` to ``dst`` (same file system; atomic on local disks and HDFS only)."""
    backend, s = _locate(src, what)
    d = parse(dst, what)
    try:
        backend.rename(s, d)
    except (OSError, pa.ArrowException) as exc:
        raise _wrap(exc, src, what, f"move to '{dst}'") from exc


def arrow_filesystem(location: str, what: str = "path") -> Tuple[Any, str]:
    """``(pyarrow FileSystem, path inside it)`` for ``location``, for pyarrow readers.

    Raises
    ------
    StorageError
        The location is only reachable through the driver's JVM (HDFS without libhdfs).
    """
    backend, uri = _locate(location, what)
    if not isinstance(backend, backends.Arrow):
        raise StorageError(f"{what}: '{location}' is reached through the driver's JVM only; "
                           "pyarrow needs libhdfs for it (see the README's HDFS section)")
    return backend.fs, backend.path(uri)
