"""The back ends of :mod:`sparkae.io.fs`: pyarrow file systems and Hadoop's FileSystem.

:func:`make` builds the one a location needs from the storage settings (Hadoop keys as
Spark has them: ``fs.s3a.*``, ``fs.azure.*``, ``fs.gs.*``, ``dfs.*``). Each back end offers
the same small set of operations on parsed locations; :mod:`sparkae.io.fs` wraps them with
error messages that name the setting and the location.
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional

import pyarrow as pa

import sparkae.spark_private as spark_private
from sparkae.io.uri import Uri

log = logging.getLogger("sparkae")

__all__ = ["StorageError", "make", "s3_setting", "s3_kwargs", "has_s3_credentials", "Arrow",
           "Hadoop"]


class StorageError(OSError):
    """A location cannot be reached or used; the message names it and how to fix it."""


def s3_setting(opts: Mapping[str, str], bucket: str, key: str) -> Optional[str]:
    return opts.get(f"fs.s3a.bucket.{bucket}.{key}") or opts.get(f"fs.s3a.{key}")


def has_s3_credentials(opts: Mapping[str, str], bucket: str) -> bool:
    """True when some credential source is configured besides instance metadata."""
    if s3_setting(opts, bucket, "access.key") and s3_setting(opts, bucket, "secret.key"):
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
    get = lambda key: s3_setting(opts, bucket, key)  # noqa: E731
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


class Arrow:
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
        # compression=None: bytes as stored (pyarrow would inflate a .gz name itself)
        with self.fs.open_input_stream(self.path(uri), compression=None) as f:
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
        with self.fs.open_output_stream(self.path(uri), compression=None) as f:  # whole or none
            f.write(data)

    def rename(self, src: Uri, dst: Uri) -> None:
        self.fs.move(self.path(src), self.path(dst))

    def size(self, uri: Uri) -> int:
        return int(self.fs.get_file_info(self.path(uri)).size or 0)


def _java_errors(method: Callable) -> Callable:
    """Turn a Java exception from py4j into FileNotFoundError or :class:`StorageError`."""
    @functools.wraps(method)
    def call(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as exc:  # noqa: BLE001 - py4j's Py4JJavaError, sorted below
            if type(exc).__name__ != "Py4JJavaError":
                raise
            text = str(getattr(exc, "java_exception", exc))
            first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            if "FileNotFoundException" in text:
                raise FileNotFoundError(first) from None
            raise StorageError(first) from None
    return call


class Hadoop:
    """Hadoop's FileSystem through the driver's JVM (what Spark uses)."""

    def __init__(self, spark: Any, uri: Uri) -> None:
        self._conf = spark_private.hadoop_conf(spark)
        self._Path = spark_private.jvm(spark).org.apache.hadoop.fs.Path
        self.fs = self._Path(uri.text).getFileSystem(self._conf)

    def _p(self, uri: Uri) -> Any:
        return self._Path(uri.text)

    @_java_errors
    def info(self, uri: Uri) -> str:
        p = self._p(uri)
        if not self.fs.exists(p):
            return ""
        return "dir" if self.fs.getFileStatus(p).isDirectory() else "file"

    @_java_errors
    def listdir(self, uri: Uri) -> List[str]:
        if self.info(uri) != "dir":
            return []
        return sorted(s.getPath().getName() for s in self.fs.listStatus(self._p(uri)))

    @_java_errors
    def makedirs(self, uri: Uri) -> None:
        self.fs.mkdirs(self._p(uri))

    @_java_errors
    def delete(self, uri: Uri) -> None:
        self.fs.delete(self._p(uri), True)

    @_java_errors
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

    @_java_errors
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

    @_java_errors
    def rename(self, src: Uri, dst: Uri) -> None:
        if self.fs.exists(self._p(dst)) or not self.fs.rename(self._p(src), self._p(dst)):
            raise StorageError(f"could not rename '{src.text}' to '{dst.text}'")

    @_java_errors
    def size(self, uri: Uri) -> int:
        return int(self.fs.getFileStatus(self._p(uri)).getLen())


def _driver_spark() -> Any:
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
    except Exception:  # noqa: BLE001
        return None
    return spark if spark is not None and spark_private.is_classic(spark) else None


def make(uri: Uri, opts: Mapping[str, str], what: str) -> Any:
    """The back end for ``uri``: :class:`Arrow` (local, S3, GCS, ADLS; HDFS off the
    driver) or :class:`Hadoop` (HDFS on the driver)."""
    from pyarrow import fs as pafs

    if uri.is_local:
        return Arrow(pafs.LocalFileSystem(), "")
    if uri.scheme in ("s3a", "s3", "s3n"):
        return Arrow(pafs.S3FileSystem(**s3_kwargs(opts, uri.authority)), uri.authority)
    if uri.scheme == "gs":
        kw = {}
        if opts.get("fs.gs.storage.root.url"):
            kw["endpoint_override"] = opts["fs.gs.storage.root.url"]
        return Arrow(pafs.GcsFileSystem(**kw), uri.authority)
    if uri.scheme in ("abfs", "abfss"):
        container, _, host = uri.authority.partition("@")
        if not hasattr(pafs, "AzureFileSystem"):
            raise StorageError(f"{what}: '{uri.text}' needs pyarrow's AzureFileSystem "
                               f"(pyarrow >= 16; this is {pa.__version__})")
        kw = {"account_name": host.split(".", 1)[0]}
        if opts.get(f"fs.azure.account.key.{host}"):
            kw["account_key"] = opts[f"fs.azure.account.key.{host}"]
        return Arrow(pafs.AzureFileSystem(**kw), container)
    spark = _driver_spark()   # hdfs
    return Hadoop(spark, uri) if spark is not None else _hdfs_worker(uri, opts, what)


def _hdfs_worker(uri: Uri, opts: Mapping[str, str], what: str) -> "Arrow":
    """HDFS outside the driver: pyarrow's libhdfs client, else WebHDFS (the NameNode's HTTP
    address, ``dfs.namenode.http-address``) through fsspec."""
    from pyarrow import fs as pafs

    host, _, port = uri.authority.partition(":")
    try:
        return Arrow(pafs.HadoopFileSystem(host, int(port or 8020)), "")
    except (OSError, pa.ArrowException) as exc:
        libhdfs = str(exc).splitlines()[0]
    http = opts.get(f"dfs.namenode.http-address.{host}") or opts.get("dfs.namenode.http-address")
    if not http:
        raise StorageError(
            f"{what}: '{uri.text}' (scheme hdfs) is read outside the driver through pyarrow's "
            f"libhdfs, which failed here ({libhdfs}), or through WebHDFS, for which no "
            "dfs.namenode.http-address is set. Set HADOOP_HOME, ARROW_LIBHDFS_DIR (the folder "
            "of libhdfs.so) and CLASSPATH (`hadoop classpath --glob`) on the workers, or "
            "spark.hadoop.dfs.namenode.http-address=NAMENODE:9870")
    from fsspec.implementations.webhdfs import WebHDFS

    web_host, _, web_port = http.rpartition(":")
    if web_host in ("", "0.0.0.0"):
        web_host = host          # the web server listens everywhere: the NameNode's host
    user = (opts.get("fs.sparkae.webhdfs.user") or os.environ.get("HADOOP_USER_NAME")
            or getpass.getuser())
    log.debug("%s: HDFS through WebHDFS at %s:%s (libhdfs: %s)", what, web_host, web_port,
              libhdfs)
    web = WebHDFS(web_host, port=int(web_port), user=user)
    return Arrow(pafs.PyFileSystem(pafs.FSSpecHandler(web)), "")
