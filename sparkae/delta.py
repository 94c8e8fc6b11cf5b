"""Delta Lake tables: recognise them, pin the version read, time travel, schema checks.

A Delta table is named by a path (a folder holding ``_delta_log/``) or by a catalog name
whose provider is ``delta``. Everything here goes through Spark SQL and the DataFrame
reader (``DESCRIBE HISTORY``, ``versionAsOf``), so it needs Delta's jars and session
settings (:mod:`sparkae.io.jars` adds them) but not the ``delta-spark`` Python package,
and it works the same over Spark Connect.

The version read is pinned: a read resolves "latest" or a timestamp to a version number
first and then reads that version, so the number recorded (in a model's metadata or a run
summary) is the one whose rows were used, even when another writer commits meanwhile.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkae.io import fs
from sparkae.io.uri import join

log = logging.getLogger("sparkae")

__all__ = ["DeltaRef", "is_delta_path", "is_delta_table", "latest_version", "resolve_version",
           "read_version", "schema_mismatch", "describe_schema", "missing_delta_message"]


@dataclass(frozen=True)
class DeltaRef:
    """A Delta table by path (``by_name=False``) or by catalog name."""

    location: str
    by_name: bool = False

    @property
    def sql(self) -> str:
        """The table in SQL: ``delta.`<path>``` or the catalog name."""
        if self.by_name:
            return self.location
        return "delta.`" + self.location.replace("`", "``") + "`"


def is_delta_path(path: str, what: str) -> bool:
    """Whether the folder at ``path`` holds a Delta table (has ``_delta_log``)."""
    try:
        return fs.isdir(join(path, "_delta_log"), what)
    except OSError:
        return False


def is_delta_table(spark: SparkSession, name: str) -> bool:
    """Whether the catalog table ``name`` exists and is a Delta table."""
    if not spark.catalog.tableExists(name):
        return False
    try:
        row = spark.sql(f"DESCRIBE DETAIL {name}").select("format").first()
    except Exception:  # noqa: BLE001 - not Delta (or no Delta in this session)
        return False
    return row is not None and str(row[0]).lower() == "delta"


def _history(spark: SparkSession, ref: DeltaRef) -> DataFrame:
    try:
        return spark.sql(f"DESCRIBE HISTORY {ref.sql}")
    except Exception as exc:  # noqa: BLE001 - Delta missing from the session, or no table
        message = missing_delta_message(exc)
        if message:
            raise ValueError(f"'{ref.location}': {message}") from None
        raise


def latest_version(spark: SparkSession, ref: DeltaRef) -> int:
    """The table's newest committed version."""
    row = _history(spark, ref).agg(F.max("version")).first()
    return int(row[0])


def resolve_version(spark: SparkSession, ref: DeltaRef, version: Optional[int] = None,
                    timestamp: Optional[str] = None, what: str = "input") -> int:
    """The version to read: ``version`` checked against the table's history, the newest
    version committed at or before ``timestamp``, or the latest.

    Raises
    ------
    ValueError
        A version the history does not hold, or a timestamp before the first commit or
        after the last one (Delta's own rule for ``timestampAsOf``), naming the setting,
        the value and the range the table has.
    """
    history = _history(spark, ref).select("version", "timestamp")
    span = history.agg(F.min("version").alias("v0"), F.max("version").alias("v1"),
                       F.min("timestamp").alias("t0"), F.max("timestamp").alias("t1")).first()
    if version is not None:
        versions = {int(r[0]) for r in history.select("version").collect()}
        if int(version) not in versions:
            raise ValueError(f"{what}.version: got {version}, but table '{ref.location}' has "
                             f"versions {span['v0']} to {span['v1']}")
        return int(version)
    if timestamp is not None:
        at = F.lit(str(timestamp)).cast("timestamp")
        row = history.agg(F.max(F.when(F.col("timestamp") <= at, F.col("version"))).alias("v"),
                          F.max(F.col("timestamp") >= at).alias("covered"),
                          F.first(at.isNull()).alias("bad")).first()
        if row["bad"]:
            raise ValueError(f"{what}.timestamp: got {timestamp!r}, expected a time such as "
                             "'2024-06-01 12:00:00'")
        if row["v"] is None or not row["covered"]:
            raise ValueError(f"{what}.timestamp: got {timestamp!r}, but table "
                             f"'{ref.location}' has commits from {span['t0']} to {span['t1']} "
                             f"(versions {span['v0']} to {span['v1']}); give a time in that "
                             "range")
        return int(row["v"])
    return int(span["v1"])


def read_version(spark: SparkSession, ref: DeltaRef, version: int) -> DataFrame:
    """The rows of ``version`` of the table."""
    if ref.by_name:
        return spark.sql(f"SELECT * FROM {ref.sql} VERSION AS OF {int(version)}")
    return spark.read.format("delta").option("versionAsOf", int(version)).load(ref.location)


def _type_map(schema: Any) -> dict:
    return {f.name.lower(): f.dataType.simpleString() for f in schema.fields}


def schema_mismatch(have: Any, want: Any) -> bool:
    """Whether two schemas differ in column names or types (order and nullability aside)."""
    return _type_map(have) != _type_map(want)


def describe_schema(schema: Any) -> str:
    """``name type, name type, ...`` for an error message."""
    return ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in schema.fields)


_NO_DELTA = re.compile(r"(DATA_SOURCE_NOT_FOUND|Failed to find (the )?data source: delta|"
                       r"ClassNotFoundException: (io\.delta|delta\.DefaultSource)|"
                       r"PARSE_SYNTAX_ERROR.*HISTORY|"
                       # without Delta's parser, DESCRIBE HISTORY t reads as DESCRIBE TABLE HISTORY
                       r"table or view `?HISTORY`? (cannot be|not) found|"
                       r"Table or view not found: HISTORY)", re.IGNORECASE)


def missing_delta_message(exc: BaseException) -> Optional[str]:
    """A clear message when ``exc`` says this session has no Delta Lake, else None."""
    if not _NO_DELTA.search(str(exc)):
        return None
    from sparkae.io.jars import DELTA_RELEASES

    return ("this SparkSession has no Delta Lake. Start it with the io.delta jar built for "
            "its Spark and Delta's settings (./spark-submit.sh and sparkae.session.get_session "
            "add them; Delta has releases for Spark "
            f"{', '.join(sorted(DELTA_RELEASES))}), or pip install 'sparkae[delta]', which "
            "installs a pyspark that Delta supports")
