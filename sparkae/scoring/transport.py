"""Scoring a DataFrame: driver-side checks, then the Arrow transport to the workers.

The input column goes as is (a Spark vector travels as its SQL struct ``(type, size,
indices, values)``, so a sparse vector stays sparse; an array column as an Arrow list;
``features_cols`` packed into one dense vector). The transport is ``mapInArrow`` (Spark
>= 3.3): the carried columns cross to Python and are handed back untouched. Where Spark
has ``arrow_udf`` (>= 4.1) and the table holds no user-defined-type column, a scalar
``arrow_udf`` is used instead, so only the input column crosses; Spark 4.x Arrow UDFs
(pandas ones too) fail on any table with a UDT column (a vector) read by the vectorized
Parquet reader ("Unsupported data type UDT" from ``RowToColumnConverter`` in the
columnar-input path), which ``mapInArrow`` avoids. A DataFrame that is exactly a scan of
local Parquet files (not cached) skips both: the workers read its row groups with pyarrow
(:func:`sparkae.scoring.parquet.score_parquet`), sparing the JVM's row-by-row conversion
of the input to Arrow.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator, List, Optional, Tuple

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkae.data.prepare import InputInfo, input_column
from sparkae.scoring.broadcasts import payload_source
from sparkae.scoring.encode import OUTPUT_TYPES, output_fields
from sparkae.scoring.faults import from_session as fault_hook
from sparkae.data.parquet_scan import scan_pieces
from sparkae.scoring.parquet import score_parquet, task_threads
from sparkae.scoring.payload import read_spec
from sparkae.scoring.worker import BatchScorer

log = logging.getLogger("sparkae")

ENGINES = ("arrow_udf", "map_in_arrow")

_TMP_COL = "__sparkae_scores"
_IN_COL = "__sparkae_input"


def input_expr(df: DataFrame, info: InputInfo, role: str) -> Tuple[Column, Optional[str]]:
    """The Column sent to the workers, and the plain column name when it is one.

    Vectors go as they are (their struct), arrays as arrays, ``features_cols`` packed
    into one ``array<double>``. Names and types are checked here, on the driver.

    Raises
    ------
    ValueError
        A missing or mistyped column, or a vector width in the column's ML attribute
        metadata that is not the model's.
    """
    col = input_column(df, info, role)  # raises on a missing or mistyped column
    if info.kind == "columns":  # numbers, null -> NaN, strings one-hot: one dense vector
        return col, None
    field = df.schema[info.column]
    size = (field.metadata or {}).get("ml_attr", {}).get("num_attrs")
    if isinstance(size, int) and size != info.size:
        raise ValueError(f"{role}: column '{info.column}' holds vectors of {size} features "
                         f"(from its ML attribute metadata); the model expects {info.size}")
    return F.col(f"`{info.column}`"), info.column


def check_request(outputs: List[str], layer: int, n_hidden: int, batch_size: int,
                  threshold: Optional[float]) -> None:
    """Validate what is asked of :func:`score`; every message names the value and what is
    allowed.

    Raises
    ------
    ValueError
        Unknown or repeated outputs, a layer outside ``1..n_hidden``, a batch size below
        1, or ``is_anomaly`` without a finite threshold.
    """
    if not isinstance(outputs, (list, tuple)) or not outputs:
        raise ValueError(f"outputs: got {outputs!r}, expected a non-empty list of "
                         f"{', '.join(OUTPUT_TYPES)}")
    for o in outputs:
        if o not in OUTPUT_TYPES:
            raise ValueError(f"outputs: got {o!r}, expected any of {', '.join(OUTPUT_TYPES)}")
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs: {list(outputs)} lists an output more than once")
    if not isinstance(layer, int) or not 1 <= layer <= n_hidden:
        raise ValueError(f"layer: got {layer!r}, expected a hidden layer number from 1 to "
                         f"{n_hidden}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"scoring_batch_size: got {batch_size!r}, expected an integer >= 1")
    if "is_anomaly" in outputs:
        if threshold is None:
            raise ValueError("output 'is_anomaly' needs a threshold: the model has none; set "
                             "anomaly_threshold, train with anomaly_quantile, or pass a "
                             "threshold when scoring")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or \
                not math.isfinite(threshold):
            raise ValueError(f"threshold: got {threshold!r}, expected a finite number")


def score(df: DataFrame, payload: bytes, key: str, info: InputInfo, outputs: List[str],
          layer: int, batch_size: int = 1024, threshold: Optional[float] = None,
          threads: Optional[int] = None, *, skip_missing: bool = False,
          status_col: Optional[str] = None, carry: Optional[List[str]] = None,
          engine: Optional[str] = None, direct: bool = True, clip: bool = False) -> DataFrame:
    """Add the requested score columns to ``df`` (existing columns of the same name are
    replaced).

    Rows whose features are null or hold an infinite value get null scores; missing
    values (NaN, or null in ``features_cols``) are imputed by the model (its training
    mean), or with ``skip_missing`` give the row null scores.

    Parameters
    ----------
    df : DataFrame
        Table holding the model's input column(s).
    payload : bytes
        The model as :func:`sparkae.scoring.payload.pack` bytes.
    key : str
        Identifies the model in the driver's broadcasts and the workers' network caches.
    info : InputInfo
        The model's input description; ``df`` is checked against it before any job.
    outputs : list of str
        Any of ``deep_features``, ``reconstruction_mse``, ``reconstruction``,
        ``feature_errors``, ``is_anomaly``.
    layer : int
        1-based hidden layer for ``deep_features``.
    batch_size : int
        Rows per forward pass (fewer for rows so wide that a pass would exceed
        :data:`sparkae.scoring.forward.PASS_ELEMENTS` values).
    threshold : float, optional
        Required for ``is_anomaly`` (``reconstruction_mse > threshold``).
    threads : int, optional
        Torch threads per Python worker (CPU executors); default ``spark.task.cpus``
        (1 unless set), the cores each scoring task holds.
    skip_missing : bool
        Null scores for rows with missing values (the model's
        ``missing_values_handling="skip"``) instead of imputing them.
    status_col : str, optional
        Also add this ``tinyint`` column: 0 scored, else why not (1 null features, 2 an
        infinite value, 3 missing values with ``skip_missing``; see
        :data:`sparkae.data.arrow_rows.SKIP_REASONS`).
    carry : list of str, optional
        Columns of ``df`` kept in the result (default: all).
    engine : {"arrow_udf", "map_in_arrow"}, optional
        Force a transport; by default ``arrow_udf`` where Spark has it (>= 4.1) and ``df``
        has no user-defined-type column, else ``mapInArrow``.
    direct : bool, default True
        When ``df`` is exactly a scan of local Parquet files (and no engine is forced), let
        the workers read its row groups themselves; False keeps Spark's reader (a caller
        that routes the Parquet read itself, as the score job does).
    clip : bool, default False
        Clamp the scaled inputs into each feature's scaled training range before the
        network (the model's ``clip_to_training_range``); every output then sees the
        clipped input, the errors included.

    Returns
    -------
    DataFrame
        The ``carry`` columns (less replaced ones), then ``outputs`` (then ``status_col``).

    Raises
    ------
    ValueError
        On the driver, before any job: a missing or mistyped input column, a vector
        width known from the schema that differs from the model's, unknown outputs, a bad
        layer, batch size, threshold or clip. In the tasks: a row of another width.
    """
    spec = read_spec(payload)
    check_request(list(outputs), layer, len(spec["hidden"]), batch_size, threshold)
    if not isinstance(clip, bool):
        raise ValueError(f"clip_to_training_range: got {clip!r}, expected True or False")
    requested = engine
    engine = engine or ("arrow_udf" if hasattr(F, "arrow_udf") and not has_udt(df.schema)
                        else "map_in_arrow")
    if engine not in ENGINES:
        raise ValueError(f"engine: got {engine!r}, expected one of {', '.join(ENGINES)}")
    expr, name = input_expr(df, info, "scoring input")
    outputs = list(outputs)
    before_batch = fault_hook(df.sparkSession)
    threads = threads or task_threads(df.sparkSession)
    added = outputs + ([status_col] if status_col is not None else [])
    if carry is not None:
        unknown = [c for c in carry if c not in df.columns]
        if unknown:
            raise ValueError(f"carry: column '{unknown[0]}' not found; the DataFrame has "
                             f"columns {sorted(df.columns)}")
    keep = [c for c in (df.columns if carry is None else carry) if c not in added]
    # a plain scan of local Parquet files: the workers read its row groups themselves
    direct = (scan_pieces(df) if direct and requested is None and info.kind in ("vector", "array")
              else [])
    if direct:
        log.debug("scoring %s with the workers reading %d Parquet row groups", outputs,
                  len(direct))
        return score_parquet(df.sparkSession, df.inputFiles()[0], df.schema, payload, key,
                             info, outputs, layer, batch_size, threshold, threads,
                             skip_missing=skip_missing, status_col=status_col, carry=keep,
                             pieces=direct, clip=clip)
    job = BatchScorer(payload_source(df.sparkSession, key, payload), tuple(outputs), layer,
                      threshold, batch_size, threads, status_col is not None,
                      bool(skip_missing), before_batch, clip)
    log.debug("scoring %s with %s, batch %d", outputs, engine, batch_size)
    if engine == "arrow_udf":
        return _via_arrow_udf(df, expr, keep, status_col, job)
    return _via_map_in_arrow(df, expr, name, keep, status_col, job)


def score_with(df: DataFrame, job: Any, info: InputInfo, *, carry: Optional[List[str]] = None,
               engine: Optional[str] = None) -> DataFrame:
    """Add the columns of ``job`` to ``df`` in one pass of the Python workers: ``job``
    maps the input column (as :func:`score` sends it) to ``(names, arrays)`` and has
    ``outputs`` (the names) and ``fields`` (their Spark fields), e.g. an ensemble of
    models scored together (:class:`sparkae.anomaly.ensemble.EnsembleScorer`).

    Parameters
    ----------
    df : DataFrame
        Table holding the input column(s) of ``info``; checked before any job.
    job : callable
        Run on each Arrow batch's input column in the workers.
    info : InputInfo
        The input description shared by whatever ``job`` scores.
    carry : list of str, optional
        Columns of ``df`` kept (default: all but the added ones).
    engine : {"arrow_udf", "map_in_arrow"}, optional
        As for :func:`score`.

    Returns
    -------
    DataFrame
        The ``carry`` columns, then ``job.outputs``.
    """
    engine = engine or ("arrow_udf" if hasattr(F, "arrow_udf") and not has_udt(df.schema)
                        else "map_in_arrow")
    if engine not in ENGINES:
        raise ValueError(f"engine: got {engine!r}, expected one of {', '.join(ENGINES)}")
    expr, name = input_expr(df, info, "scoring input")
    keep = [c for c in (df.columns if carry is None else carry) if c not in job.outputs]
    if engine == "arrow_udf":
        return _via_arrow_udf(df, expr, keep, None, job)
    return _via_map_in_arrow(df, expr, name, keep, None, job)


def _fields(job: Any, status: Optional[str]) -> List[T.StructField]:
    """Spark fields of ``job``'s columns (then the status column, named ``status``)."""
    fields = getattr(job, "fields", None)
    if fields is not None:
        return list(fields)
    return output_fields(job.outputs, status)


def has_udt(dt: T.DataType) -> bool:
    """True when ``dt`` is or holds a user-defined type (a vector, say)."""
    if isinstance(dt, T.UserDefinedType):
        return True
    if isinstance(dt, T.StructType):
        return any(has_udt(f.dataType) for f in dt.fields)
    if isinstance(dt, T.ArrayType):
        return has_udt(dt.elementType)
    if isinstance(dt, T.MapType):
        return has_udt(dt.keyType) or has_udt(dt.valueType)
    return False


def _via_arrow_udf(df: DataFrame, expr: Column, keep: List[str], status_col: Optional[str],
                   job: BatchScorer) -> DataFrame:
    """Only the input column crosses to Python; the scores come back as one struct."""
    schema = T.StructType(_fields(job, "status" if job.with_status else None))

    def _score(col: pa.Array) -> pa.Array:
        names, arrays = job(col)
        return pa.StructArray.from_arrays(arrays, names=names)

    udf = F.arrow_udf(_score, schema)
    scored = df.withColumn(_TMP_COL, udf(expr))
    cols = [F.col(f"`{c}`") for c in keep] + [F.col(f"{_TMP_COL}.{o}").alias(o)
                                              for o in job.outputs]
    if status_col is not None:
        cols.append(F.col(f"{_TMP_COL}.status").alias(status_col))
    return scored.select(*cols)


def _via_map_in_arrow(df: DataFrame, expr: Column, name: Optional[str], keep: List[str],
                      status_col: Optional[str], job: BatchScorer) -> DataFrame:
    """The carried columns and the input cross to Python; batches come back whole."""
    src = name if name in keep else _IN_COL
    cols = [F.col(f"`{c}`") for c in keep] + ([] if src == name else [expr.alias(_IN_COL)])
    feed = df.select(*cols)
    fields = [df.schema[c] for c in keep] + _fields(job, status_col)
    out_names = [f.name for f in fields]

    def _score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            col = batch.column(batch.schema.get_field_index(src))
            _, arrays = job(col)
            carried = [batch.column(batch.schema.get_field_index(c)) for c in keep]
            yield pa.RecordBatch.from_arrays(carried + arrays, names=out_names)

    return feed.mapInArrow(_score, T.StructType(fields))
