"""Read a table to train on or score: Parquet by path, Delta by path or catalog name (with
time travel), or any catalog table; and say what was read.

:func:`read_table` is the one reader of the jobs and of the Python API. It resolves the
format on the driver before any Spark job (``auto``: a folder with ``_delta_log`` is Delta,
another existing path is Parquet, a name such as ``db.table`` is a catalog table), checks
time travel against the table's history, and returns the DataFrame with a
:class:`TableInfo` (what, which format, which Delta version) that
:func:`table_info` finds again and :meth:`sparkae.Autoencoder.fit` records in the model.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from pyspark.sql import DataFrame, SparkSession

import sparkae.delta as delta
from sparkae.io import fs

log = logging.getLogger("sparkae")

__all__ = ["TableInfo", "read_table", "table_info", "resolve_format", "check_time_travel",
           "FORMATS"]

#: Values of a ``format`` setting: ``table`` is a catalog table of any provider.
FORMATS = ("auto", "parquet", "delta", "table")

_ATTR = "_sparkae_table"


@dataclass(frozen=True)
class TableInfo:
    """What :func:`read_table` read.

    Attributes
    ----------
    location : str
        The path or catalog name as given.
    format : str
        ``parquet``, ``delta`` (a Delta path or a Delta catalog table) or ``table`` (a
        catalog table of another provider).
    version : int or None
        The Delta version whose rows were read; None for other formats.
    timestamp : str or None
        The timestamp asked for (``timestampAsOf``), when one was.
    """

    location: str
    format: str
    version: Optional[int] = None
    timestamp: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def looks_like_table(name: str) -> bool:
    """``db.table`` or ``table``: no path separator, no scheme, not relative (``./x``)."""
    return "/" not in name and "\\" not in name and ":" not in name and \
        not name.startswith(".") and bool(name)


def check_time_travel(version: Any, timestamp: Any, what: str = "input") -> None:
    """Validate ``version`` / ``timestamp`` settings (types, one at most).

    Raises
    ------
    ValueError
        Naming ``<what>.version`` or ``<what>.timestamp``, the value and what is allowed.
    """
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or version < 0):
        raise ValueError(f"{what}.version: got {version!r}, expected a Delta version "
                         "(an integer >= 0) or null")
    if timestamp is not None:
        try:
            dt.datetime.fromisoformat(_timestamp_text(timestamp))
        except ValueError:
            raise ValueError(f"{what}.timestamp: got {timestamp!r}, expected a time such as "
                             "'2024-06-01 12:00:00' or '2024-06-01'") from None
    if version is not None and timestamp is not None:
        raise ValueError(f"{what}.version and {what}.timestamp: give one of them, not both "
                         f"(got {version!r} and {timestamp!r})")


def _timestamp_text(timestamp: Any) -> Optional[str]:
    if timestamp is None:
        return None
    if isinstance(timestamp, dt.datetime):
        return timestamp.isoformat(sep=" ")
    if isinstance(timestamp, dt.date):
        return timestamp.isoformat()
    return str(timestamp)


def _exists(path: str, what: str) -> bool:
    try:
        return fs.exists(path, what)
    except (OSError, ValueError):
        return False


def resolve_format(spark: SparkSession, location: str, fmt: str = "auto",
                   what: str = "input") -> str:
    """``parquet``, ``delta`` or ``table`` for ``location`` as ``fmt`` asks.

    Raises
    ------
    FileNotFoundError
        Nothing at the path and no catalog table of that name.
    ValueError
        An unknown ``fmt``; ``delta`` for a path without ``_delta_log`` (plain Parquet) or
        for a catalog table of another provider.
    """
    if fmt not in FORMATS:
        raise ValueError(f"{what}.format: got {fmt!r}, expected one of {', '.join(FORMATS)}")
    named = looks_like_table(location)
    if fmt == "table" or (named and not _exists(location, f"{what}.path")):
        if not named and fmt == "table":
            raise ValueError(f"{what}.path: '{location}' is not a catalog table name "
                             f"(db.table) but {what}.format is table")
        if not spark.catalog.tableExists(location):
            raise FileNotFoundError(f"{what}.path: '{location}' does not exist: no path and "
                                    "no catalog table has that name")
        if fmt in ("auto", "delta") and delta.is_delta_table(spark, location):
            return "delta"
        if fmt == "delta":
            raise ValueError(f"{what}.format is delta but catalog table '{location}' is not "
                             "a Delta table")
        return "table"
    if not _exists(location, f"{what}.path"):
        raise FileNotFoundError(f"{what}.path: '{location}' does not exist")
    is_delta = delta.is_delta_path(location, f"{what}.path")
    if fmt == "delta" and not is_delta:
        raise ValueError(f"{what}.path: '{location}' is not a Delta table (it has no "
                         f"_delta_log folder; plain Parquet?) but {what}.format is delta; "
                         f"use {what}.format=parquet or auto")
    if fmt == "auto":
        return "delta" if is_delta else "parquet"
    if fmt == "parquet" and is_delta:
        log.warning("%s.path '%s' is a Delta table read as plain Parquet: files of removed "
                    "versions are read too; use %s.format=delta or auto", what, location, what)
    return fmt


def read_table(spark: SparkSession, location: str, format: str = "auto",
               version: Optional[int] = None, timestamp: Any = None,
               what: str = "input") -> DataFrame:
    """Read a table, checked on the driver first.

    Parameters
    ----------
    spark : SparkSession
    location : str
        A Parquet path, a Delta path, or a catalog table name (``db.table``), at any
        location :mod:`sparkae.io` reaches (``s3a://``, ``hdfs://``, ...).
    format : {"auto", "parquet", "delta", "table"}
        ``auto`` picks by what ``location`` is.
    version : int, optional
        A Delta version to read (``versionAsOf``).
    timestamp : str or datetime, optional
        Read the Delta version current at this time (``timestampAsOf``), e.g.
        ``"2024-06-01 12:00:00"``, in the session time zone.
    what : str
        The setting's section, for messages (``input``, ``evaluation``).

    Returns
    -------
    DataFrame
        Its :func:`table_info` says what was read, with the Delta version.

    Raises
    ------
    FileNotFoundError
        No such path or table.
    ValueError
        A Delta format for a non-Delta table, time travel on a non-Delta table, a version
        or timestamp the table does not have, a session without Delta, an unreadable input.
    """
    check_time_travel(version, timestamp, what)
    ts = _timestamp_text(timestamp)
    fmt = resolve_format(spark, location, format, what)
    if fmt != "delta" and (version is not None or ts is not None):
        raise ValueError(f"{what}.version / {what}.timestamp: '{location}' is a {fmt} table; "
                         "time travel needs a Delta table")
    read_at = None
    if fmt == "delta":
        ref = delta.DeltaRef(location, by_name=looks_like_table(location)
                             and not _exists(location, f"{what}.path"))
        read_at = delta.resolve_version(spark, ref, version, ts, what)
        df = delta.read_version(spark, ref, read_at)
        log.info("reading Delta table %s at version %d", location, read_at)
    elif fmt == "table":
        df = spark.table(location)
    else:
        try:
            df = spark.read.parquet(location)
        except Exception as exc:  # an empty directory, or not Parquet
            raise ValueError(f"{what}.path: '{location}' could not be read as Parquet: "
                             f"{str(exc).strip().splitlines()[0]}") from None
    setattr(df, _ATTR, TableInfo(location, fmt, read_at, ts))
    return df


def table_info(df: Any) -> Optional[TableInfo]:
    """The :class:`TableInfo` of a DataFrame returned by :func:`read_table`, else None
    (DataFrames derived from it by a transformation carry none)."""
    # from the instance's own attributes: a Spark Connect DataFrame answers any unknown
    # attribute name with a Column
    value = getattr(df, "__dict__", {}).get(_ATTR)
    return value if isinstance(value, TableInfo) else None
