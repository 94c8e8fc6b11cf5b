"""Which DataFrames are plain scans of local Parquet files, read with pyarrow instead of
through the JVM, and their row groups.

The JVM's row-by-row conversion of a table to Arrow is most of the cost of scoring it and
of a small fit's preparation. A plain local Parquet table (a path, or a DataFrame that is
exactly ``spark.read.parquet(...)`` of local files) is read by pyarrow instead: scoring's
workers read its row groups (:mod:`sparkae.scoring.parquet`), a fit's driver reads its
feature column (:mod:`sparkae.data.local_prepare`). Anything else, or the Spark conf
:data:`DIRECT_CONF` = ``false``, leaves the reading to Spark.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_type

import sparkae.spark_private as spark_private

#: Spark conf: ``false`` makes scoring read Parquet through Spark only.
DIRECT_CONF = "spark.sparkae.scoring.directParquet"
#: A canonicalized analyzed plan that is one scan of Parquet files, nothing on top.
_SCAN = re.compile(r"^Relation \[[^\]\n]*\] parquet$")
#: Column types (or list elements) read directly: pyarrow and Spark agree on them.
_DIRECT_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType,
                 T.DoubleType, T.StringType, T.BooleanType, T.DateType)


def _plain_local(path: str) -> bool:
    """True for a plain path (no ``scheme://``, no ``file:``): only those are read here;
    a URI goes through Spark, which knows its file system."""
    return "://" not in path and not path.startswith("file:")


def parquet_pieces(path: str) -> List[Tuple[str, int, int]]:
    """``(file, row group, rows)`` of every Parquet file under the local ``path``.

    Returns
    -------
    list of (str, int, int)
        Empty when ``path`` is not a plain local Parquet table (then the caller lets Spark
        read it): not a plain local path, Hive-partitioned (``col=value`` directories
        carry columns the files lack), or unreadable by pyarrow.
    """
    if not _plain_local(path):
        return []
    files: List[str] = []
    if os.path.isfile(path):
        files = [path]
    else:
        for base, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            if base != path and "=" in os.path.basename(base):
                return []
            files += [os.path.join(base, n) for n in sorted(names)
                      if not n.startswith(("_", ".")) and n.endswith(".parquet")]
    return _file_pieces(files)


def _file_pieces(files: List[str]) -> List[Tuple[str, int, int]]:
    """``(file, row group, rows)`` of local Parquet ``files``; empty when pyarrow cannot
    read one of them."""
    pieces = []
    try:
        for f in files:
            meta = pq.ParquetFile(f).metadata
            pieces += [(f, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    except Exception:  # noqa: BLE001 - not something pyarrow reads: Spark will say why
        return []
    return pieces


def _local_file(uri: str) -> Optional[str]:
    """The local path of a ``file:`` URI as ``DataFrame.inputFiles`` lists it, else None."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" and not parsed.netloc else None


def _same_type(arrow_type: pa.DataType, spark_type: T.DataType) -> bool:
    """Whether pyarrow reads a column as Spark reads it (vectors: their SQL struct); only
    plain numbers, strings, booleans, dates and lists of numbers qualify."""
    if isinstance(spark_type, T.UserDefinedType):
        spark_type = spark_type.sqlType()   # a vector's struct, compared whole below
    else:
        elem = spark_type.elementType if isinstance(spark_type, T.ArrayType) else spark_type
        if not isinstance(elem, _DIRECT_TYPES):
            return False
    try:
        return from_arrow_type(arrow_type).simpleString() == spark_type.simpleString()
    except Exception:  # noqa: BLE001 - a type Spark has no match for
        return False


def scan_pieces(df: DataFrame, columns: Optional[List[str]] = None, cached: bool = False
                ) -> List[Tuple[str, int, int]]:
    """The row groups of ``df`` when it is exactly a scan of local Parquet files (no
    projection, filter or partition columns; not cached unless ``cached``) whose columns
    pyarrow reads as Spark does, unless :data:`DIRECT_CONF` is ``false``; else ``[]``
    (Spark reads it).

    Parameters
    ----------
    df : DataFrame
        The table to score.
    columns : list of str, optional
        The columns that will be read (default: all); only those must read alike.
    cached : bool, default False
        Also read a cached scan's files, when each is as Spark listed it when the
        DataFrame was made (same size and modification time): then its cache holds what
        the files hold. Scoring keeps a cache (it is what the user chose to read); a fit's
        preparation reads its rows once, and pyarrow reads them 10-20 times faster than
        the JVM converts the cache to Arrow (60,000 x 784: 0.09 s against 1.2-2.0 s).

    Returns
    -------
    list of (str, int, int)
        ``(file, row group, rows)``, as :func:`parquet_pieces`.
    """
    try:
        if str(df.sparkSession.conf.get(DIRECT_CONF, "true")).lower() == "false":
            return []
    except Exception:  # noqa: BLE001 - no conf access: keep the default
        pass
    plan = spark_private.analyzed_plan(df)
    if plan is None or not _SCAN.match(plan.strip()):
        return []
    level = df.storageLevel
    if level.useMemory or level.useDisk or level.useOffHeap:
        listed = spark_private.listed_files(df) if cached else None
        if not listed or not _as_listed(listed):
            return []           # the cache is what the user wants read
        uris = list(listed)
    else:
        uris = df.inputFiles()
    files = [_local_file(f) for f in uris]
    if not files or any(f is None for f in files):
        return []
    try:
        schema = pq.read_schema(files[0])
    except Exception:  # noqa: BLE001 - Spark will read it
        return []
    for f in df.schema.fields:
        if columns is not None and f.name not in columns:
            continue
        i = schema.get_field_index(f.name)
        if i < 0 or not _same_type(schema.field(i).type, f.dataType):
            return []           # a partition column, or a type read otherwise
    pieces = _file_pieces(sorted(files))
    if any(pq.read_schema(f) != schema for f in {p[0] for p in pieces}):
        return []
    return pieces


def _as_listed(listed: Dict[str, Tuple[int, int]]) -> bool:
    """Whether every local file in ``listed`` (:func:`sparkae.spark_private.listed_files`)
    still has the size and modification time Spark listed."""
    for uri, (size, mtime_ms) in listed.items():
        path = _local_file(uri)
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            return False
        if st is None or st.st_size != size or st.st_mtime_ns // 1_000_000 != mtime_ms:
            return False
    return True
