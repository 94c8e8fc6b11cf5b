"""Parsing the locations users hand to sparkae, the way Spark takes them.

A location is a plain local path, a ``file:`` URI, ``s3a://`` / ``s3://`` / ``s3n://``,
``hdfs://``, ``abfs(s)://``, ``gs://``, ``dbfs:/`` (read through the ``/dbfs`` mount where
it exists) or a Unity Catalog Volume path (``/Volumes/...``, a local FUSE mount on
Databricks). Pure string handling: no file system is touched here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["Uri", "parse", "join", "SCHEMES", "OBJECT_STORES"]

#: Schemes sparkae reads and writes, and how each is reached.
SCHEMES = {
    "file": "the local file system",
    "s3a": "S3 through pyarrow (configured from spark.hadoop.fs.s3a.* or AWS_* variables)",
    "s3": "S3 (as s3a)",
    "s3n": "S3 (as s3a)",
    "gs": "Google Cloud Storage through pyarrow (GOOGLE_APPLICATION_CREDENTIALS)",
    "abfs": "Azure Data Lake Storage Gen2 through pyarrow",
    "abfss": "Azure Data Lake Storage Gen2 through pyarrow",
    "hdfs": "HDFS through Hadoop's FileSystem (driver) or pyarrow's libhdfs (workers)",
    "dbfs": "Databricks' DBFS through its /dbfs mount",
}
#: Schemes without an atomic directory rename.
OBJECT_STORES = frozenset({"s3a", "s3", "s3n", "gs", "abfs", "abfss"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")


@dataclass(frozen=True)
class Uri:
    """A parsed location.

    Attributes
    ----------
    text : str
        The location as the user gave it (trailing ``/`` removed; local paths made absolute).
    scheme : str
        ``file`` for local paths (``/Volumes`` and mounted ``dbfs:/`` included).
    authority : str
        Bucket, container@account or namenode host:port; empty for local paths.
    path : str
        The path inside the authority, starting with ``/``.
    """

    text: str
    scheme: str
    authority: str
    path: str

    @property
    def is_local(self) -> bool:
        """True when the location is on this machine's file system (or a mount)."""
        return self.scheme == "file"

    @property
    def is_object_store(self) -> bool:
        """True for S3, GCS and ADLS, which have no atomic rename."""
        return self.scheme in OBJECT_STORES

    @property
    def local(self) -> str:
        """The local path (only for local locations)."""
        if not self.is_local:
            raise ValueError(f"'{self.text}' is not a local path")
        return self.path

    def __str__(self) -> str:
        return self.text


def _dbfs_mount() -> str:
    return os.environ.get("SPARKAE_DBFS_MOUNT", "/dbfs")


def parse(location: str, what: str = "path") -> Uri:
    """Parse ``location``; ``what`` names it in errors (a Param or setting name).

    Raises
    ------
    ValueError
        An empty location, a scheme sparkae has no file system for, a URI without a
        bucket/host, or ``dbfs:/`` where no ``/dbfs`` mount exists.
    """
    if not isinstance(location, str) or not location.strip():
        raise ValueError(f"{what}: expected a path or URI, got {location!r}")
    text = location.strip()
    m = _SCHEME.match(text)
    if m is None or (len(m.group(1)) == 1 and os.name == "nt"):
        path = os.path.abspath(os.path.expanduser(text))
        return Uri(path, "file", "", path)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme == "file":
        path = os.path.abspath(re.sub(r"^//[^/]*", "", rest) if rest.startswith("//") else rest)
        return Uri(path, "file", "", path)
    if scheme == "dbfs":
        mount = _dbfs_mount()
        inner = "/" + rest.lstrip("/")
        if not os.path.isdir(mount):
            raise ValueError(f"{what}: '{location}' (scheme dbfs) is read through the {mount} "
                             "mount, which this machine does not have; on Databricks it is "
                             "there, elsewhere use s3a://, abfss:// or gs:// for the same data")
        path = os.path.join(mount, inner.lstrip("/")).rstrip("/") or mount
        return Uri(path, "file", "", path)
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES if s not in ("file", "dbfs"))
        raise ValueError(f"{what}: '{location}' has the scheme '{scheme}', for which sparkae "
                         f"has no file system; use a local path, file:/, dbfs:/, /Volumes/... "
                         f"or one of {known}")
    if not rest.startswith("//") or not rest[2:].split("/", 1)[0]:
        raise ValueError(f"{what}: '{location}' names no bucket or host; expected "
                         f"{scheme}://BUCKET-OR-HOST/path")
    authority, _, inner = rest[2:].partition("/")
    inner = "/" + inner.strip("/")
    text = f"{scheme}://{authority}{inner if inner != '/' else ''}"
    return Uri(text, scheme, authority, inner)


def join(location: str, *parts: str) -> str:
    """``location`` with ``parts`` appended, keeping its scheme (``/`` separators)."""
    base = location.rstrip("/")
    if not _SCHEME.match(base) or (len(base) > 1 and base[1] == ":" and os.name == "nt"):
        return os.path.join(base, *parts)
    return "/".join([base, *(p.strip("/") for p in parts)])
