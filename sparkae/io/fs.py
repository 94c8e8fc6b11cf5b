"""THE file-system layer: every read and write of sparkae goes through these functions.

A location (see :mod:`sparkae.io.uri`) is reached through one of two back ends:

- pyarrow's file systems (local, S3, GCS, ADLS; HDFS through libhdfs), configured from
  Spark's Hadoop settings (``spark.hadoop.fs.s3a.*``: endpoint, path style, SSL,
  credentials, region; per-bucket ``fs.s3a.bucket.NAME.*`` too) and else the usual
  ``AWS_*`` variables. This is what training ranks and scoring workers use: the driver
  collects the settings once (:func:`options_from_spark`) and ships them with the job
  (:func:`configure` in the worker).
- Hadoop's FileSystem through the driver's JVM, for schemes pyarrow cannot reach here
  (``hdfs://`` without libhdfs): exactly what Spark itself uses, same configuration.

Writes of single files are atomic: a local file is written beside its name and renamed;
an object-store object appears only when its upload completes. Directories are committed
by :mod:`sparkae.io.commit` (files first, a manifest last).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import pyarrow as pa

from sparkae.io.uri import Uri, parse

log = logging.getLogger("sparkae")

__all__ = ["configure", "using", "options", "options_from_spark", "exists", "isdir", "isfile",
           "listdir", "makedirs", "delete", "read_bytes", "write_bytes", "open_input",
           "arrow_filesystem", "rename", "size", "StorageError"]

#: Hadoop configuration prefixes carried to workers (credentials included; never logged).
PREFIXES = ("fs.s3a.", "fs.gs.", "fs.azure.", "fs.defaultFS", "dfs.")
_options: Optional[Dict[str, str]] = None
_cache: Dict[Tuple, Any] = {}


class StorageError(OSError):
    """A location cannot be reached or used; the message names it and how to fix it."""


def options_from_spark(spark: Any) -> Dict[str, str]:
    """The storage settings of ``spark``'s Hadoop configuration (``spark.hadoop.*`` and
    core-site entries under :data:`PREFIXES`); empty under Spark Connect."""
    out: Dict[str, str] = {}
    try:
        conf = spark.sparkContext._jsc.hadoopConfiguration()
    except Exception:  # noqa: BLE001 - Spark Connect: no JVM on this side
        try:
            for key, value in spark.conf.getAll.items() if hasattr(spark.conf, "getAll") else []:
                if key.startswith("spark.hadoop."):
                    out[key[len("spark.hadoop."):]] = value
        except Exception:  # noqa: BLE001
            pass
        return out
    for prefix in PREFIXES:
        props = conf.getPropsWithPrefix(prefix)
        for key in props.keySet():
            out[prefix + key] = props.get(key)
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


# --------------------------------------------------------------------------- back ends

def _s3_setting(opts: Mapping[str, str], bucket: str, key: str) -> Optional[str]:
    return opts.get(f"fs.s3a.bucket.{bucket}.{key}") or opts.get(f"fs.s3a.{key}")


def has_s3_credentials(opts: Mapping[str, str], bucket: str) -> bool:
    """True when some credential source is configured besides instance metadata."""
    if _s3_setting(opts, bucket, "access.key") and _s3_setting(opts, bucket, "secret.key"):
        return True
    env = os.environ
    return bool((env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"))
                or env.get("AWS_PROFILE") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
                or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                or os.path.isfile(os.path.expanduser(
                    env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"))))


def s3_kwargs(opts: Mapping[str, str], bucket: str) -> Dict[str, Any]:
    """pyarrow ``S3FileSystem`` arguments from S3A settings (per bucket first)."""
    get = lambda key: _s3_setting(opts, bucket, key)  # noqa: E731
    kw: Dict[str, Any] = {}
    endpoint = get("endpoint")
    if endpoint:
        ssl = (get("connection.ssl.enabled") or "true").lower() != "false"
        scheme = "https" if ssl else "http"
        for prefix in ("http://", "https://"):
            if endpoint.startswith(prefix):
                scheme, endpoint = prefix[:-3], endpoint[len(prefix):]
        kw.update(endpoint_override=endpoint.rstrip("/"), scheme=scheme)
        if (get("path.style.access") or "false").lower() != "true":
            kw["force_virtual_addressing"] = True
    access, secret = get("access.key"), get("secret.key")
    if access and secret:
        kw.update(access_key=access, secret_key=secret)
        token = get("session.token")
        if token:
            kw["session_token"] = token
    provider = get("aws.credentials.provider") or ""
    if "Anonymous" in provider:
        kw["anonymous"] = True
    region = (get("endpoint.region") or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION"))
    # A custom endpoint has no region to discover: name one so the SDK never asks the
    # instance metadata service for it.
    kw["region"] = region or ("us-east-1" if endpoint else None)
    if kw["region"] is None:
        del kw["region"]
    kw["connect_timeout"] = float(os.environ.get("SPARKAE_S3_CONNECT_TIMEOUT", "10"))
    kw["request_timeout"] = float(os.environ.get("SPARKAE_S3_REQUEST_TIMEOUT", "120"))
    return kw


class _Arrow:
    """A pyarrow file system and how a location maps to its paths."""

    def __init__(self, fs: Any, prefix: str) -> None:
        self.fs, self.prefix = fs, prefix   # prefix: bucket / container, or "" (local)

    def path(self, uri: Uri) -> str:
        return uri.path if not self.prefix else (self.prefix + uri.path).rstrip("/")

    def info(self, uri: Uri) -> str:
        from pyarrow import fs as pafs

        kind = self.fs.get_file_info(self.path(uri)).type
        return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(kind, "")

    def listdir(self, uri: Uri) -> List[str]:
        from pyarrow import fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path(uri), allow_not_found=True))
        except NotADirectoryError:
            return []
        return sorted(i.base_name for i in infos)

    def makedirs(self, uri: Uri) -> None:
        self.fs.create_dir(self.path(uri), recursive=True)

    def delete(self, uri: Uri) -> None:
        kind = self.info(uri)
        if kind == "dir":
            self.fs.delete_dir(self.path(uri))
        elif kind == "file":
            self.fs.delete_file(self.path(uri))

    def read(self, uri: Uri) -> bytes:
        with self.fs.open_input_stream(self.path(uri)) as f:
            return f.read()

    def open_input(self, uri: Uri) -> Any:
        return self.fs.open_input_file(self.path(uri))

    def write(self, uri: Uri, data: bytes) -> None:
        if uri.is_local:
            os.makedirs(os.path.dirname(uri.path), exist_ok=True)
            tmp = f"{uri.path}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, uri.path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            return
        with self.fs.open_output_stream(self.path(uri)) as f:  # visible on completion
            f.write(data)

    def rename(self, src: Uri, dst: Uri) -> None:
        self.fs.move(self.path(src), self.path(dst))

    def size(self, uri: Uri) -> int:
        return int(self.fs.get_file_info(self.path(uri)).size or 0)


class _Hadoop:
    """Hadoop's FileSystem through the driver's JVM (what Spark uses)."""

    def __init__(self, spark: Any, uri: Uri) -> None:
        jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()
        self._Path = jvm.org.apache.hadoop.fs.Path
        self.fs = self._Path(uri.text).getFileSystem(self._conf)

    def _p(self, uri: Uri) -> Any:
        return self._Path(uri.text)

    def info(self, uri: Uri) -> str:
        p = self._p(uri)
        if not self.fs.exists(p):
            return ""
        return "dir" if self.fs.getFileStatus(p).isDirectory() else "file"

    def listdir(self, uri: Uri) -> List[str]:
        if self.info(uri) != "dir":
            return []
        return sorted(s.getPath().getName() for s in self.fs.listStatus(self._p(uri)))

    def makedirs(self, uri: Uri) -> None:
        self.fs.mkdirs(self._p(uri))

    def delete(self, uri: Uri) -> None:
        self.fs.delete(self._p(uri), True)

    def read(self, uri: Uri) -> bytes:
        stream = self.fs.open(self._p(uri))
        try:
            n = int(self.fs.getFileStatus(self._p(uri)).getLen())
            buf = bytearray()
            while len(buf) < n:   # py4j hands byte[] over whole; read in 8 MiB pieces
                chunk = stream.readNBytes(min(8 << 20, n - len(buf)))
                if not chunk:
                    break
                buf += bytes(chunk)
            return bytes(buf)
        finally:
            stream.close()

    def open_input(self, uri: Uri) -> Any:
        return pa.BufferReader(self.read(uri))

    def write(self, uri: Uri, data: bytes) -> None:
        tmp = self._Path(f"{uri.text}.tmp-{uuid.uuid4().hex[:8]}")
        out = self.fs.create(tmp, True)
        try:
            for i in range(0, len(data), 8 << 20):
                out.write(bytearray(data[i:i + (8 << 20)]))
        finally:
            out.close()
        self.fs.delete(self._p(uri), False)
        if not self.fs.rename(tmp, self._p(uri)):
            self.fs.delete(tmp, False)
            raise StorageError(f"could not move '{tmp}' to '{uri.text}'")

    def rename(self, src: Uri, dst: Uri) -> None:
        if self.fs.exists(self._p(dst)) or not self.fs.rename(self._p(src), self._p(dst)):
            raise StorageError(f"could not rename '{src.text}' to '{dst.text}'")

    def size(self, uri: Uri) -> int:
        return int(self.fs.getFileStatus(self._p(uri)).getLen())


def _driver_spark() -> Any:
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        spark._jsc  # noqa: B018 - classic session only
        return spark
    except Exception:  # noqa: BLE001
        return None


def _backend(uri: Uri, what: str) -> Any:
    opts = options()
    key = (uri.scheme, uri.authority, tuple(sorted(opts.items())))
    if key in _cache:
        return _cache[key]
    from pyarrow import fs as pafs

    if uri.is_local:
        backend: Any = _Arrow(pafs.LocalFileSystem(), "")
    elif uri.scheme in ("s3a", "s3", "s3n"):
        backend = _Arrow(pafs.S3FileSystem(**s3_kwargs(opts, uri.authority)), uri.authority)
    elif uri.scheme == "gs":
        kw = {}
        if opts.get("fs.gs.storage.root.url"):
            kw["endpoint_override"] = opts["fs.gs.storage.root.url"]
        backend = _Arrow(pafs.GcsFileSystem(**kw), uri.authority)
    elif uri.scheme in ("abfs", "abfss"):
        container, _, host = uri.authority.partition("@")
        account = host.split(".", 1)[0]
        if not hasattr(pafs, "AzureFileSystem"):
            raise StorageError(f"{what}: '{uri.text}' needs pyarrow's AzureFileSystem "
                               f"(pyarrow >= 16; this is {pa.__version__})")
        keyname = f"fs.azure.account.key.{host}"
        kw = {"account_name": account}
        if opts.get(keyname):
            kw["account_key"] = opts[keyname]
        backend = _Arrow(pafs.AzureFileSystem(**kw), container)
    else:  # hdfs
        spark = _driver_spark()
        if spark is not None:
            backend = _Hadoop(spark, uri)
        else:
            host, _, port = uri.authority.partition(":")
            try:
                backend = _Arrow(pafs.HadoopFileSystem(host, int(port or 8020)), "")
            except (OSError, pa.ArrowException) as exc:
                raise StorageError(
                    f"{what}: '{uri.text}' (scheme hdfs) is read outside the driver through "
                    f"pyarrow's libhdfs, which failed here: {exc}. Set HADOOP_HOME, "
                    "ARROW_LIBHDFS_DIR (the folder of libhdfs.so) and CLASSPATH "
                    "(`hadoop classpath --glob`) on the workers, or use an object store") from None
    _cache[key] = backend
    return backend


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
    if not isinstance(backend, _Arrow):
        raise StorageError(f"{what}: '{location}' is reached through the driver's JVM only; "
                           "pyarrow needs libhdfs for it (see the README's HDFS section)")
    return backend.fs, backend.path(uri)
