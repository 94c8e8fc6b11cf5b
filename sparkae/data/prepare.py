"""Driver side of the data path: schema checks, one input layout, scaling statistics.

Every accepted input (a vector column, an ``array<float|double>`` column, or a list of
numeric ``features_cols``) becomes one ``ml.linalg`` vector column named ``features``.
Statistics come from a single Spark aggregation; the data is never collected.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
from pyspark.ml.functions import array_to_vector
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkae.data.vectors import FEATURES
from sparkae.nn.scaling import FeatureStats

log = logging.getLogger("sparkae")


_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
            T.DecimalType)


@dataclass
class InputInfo:
    """How the model's input was given: enough to check and prepare a table to score."""

    kind: str                      # "vector" | "array" | "columns"
    column: Optional[str]          # features_col for vector/array input
    columns: List[str] = field(default_factory=list)  # features_cols for column input
    size: int = 0                  # input width
    levels: Dict[str, List[str]] = field(default_factory=dict)  # one-hot levels of strings

    def to_json(self) -> Dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "columns": self.columns,
                "size": self.size, "levels": self.levels}

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "InputInfo":
        return cls(kind=d["kind"], column=d.get("column"), columns=list(d.get("columns") or []),
                   size=int(d["size"]), levels={k: list(v) for k, v in
                                                 (d.get("levels") or {}).items()})


def _describe(dt: T.DataType) -> str:
    return dt.simpleString() if hasattr(dt, "simpleString") else str(dt)


#: Most levels a string column in ``features_cols`` may have (each becomes a feature).
MAX_LEVELS = 1000


def string_columns(df: DataFrame, features_cols: Optional[List[str]]) -> List[str]:
    """The string-typed columns among ``features_cols``."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    return [c for c in features_cols or [] if isinstance(fields.get(c), T.StringType)]


def find_levels(df: DataFrame, columns: List[str]) -> Dict[str, List[str]]:
    """The sorted distinct non-null values of each string column (one aggregation).

    Raises
    ------
    ValueError
        A column has more than :data:`MAX_LEVELS` levels.
    """
    if not columns:
        return {}
    row = df.agg(*[F.array_sort(F.collect_set(F.col(f"`{c}`"))).alias(f"l{i}")
                   for i, c in enumerate(columns)]).first()
    levels = {c: list(row[f"l{i}"]) for i, c in enumerate(columns)}
    for c, lv in levels.items():
        if len(lv) > MAX_LEVELS:
            raise ValueError(f"features_cols: string column '{c}' has {len(lv)} levels; at most "
                             f"{MAX_LEVELS} are one-hot encoded (index or hash it first)")
    return levels


def resolve_input(df: DataFrame, features_col: str, features_cols: Optional[List[str]],
                  levels: Optional[Dict[str, List[str]]] = None) -> tuple[Column, InputInfo]:
    """Check the input columns of ``df`` and return one vector-valued Column for them.

    Numeric ``features_cols`` become one feature each (null -> NaN, handled by
    ``missing_values_handling``); string ones become one 0/1 feature per level of
    ``levels`` (every level kept, as H2O does for autoencoders; unseen or null values
    encode as all zeros).

    Raises
    ------
    ValueError
        A named column is missing, or has a type that is not a vector, a numeric array or
        (for ``features_cols``) a number or string.
    """
    fields = {f.name: f.dataType for f in df.schema.fields}
    levels = levels or {}
    wanted = list(features_cols) if features_cols else [features_col]
    names = [f.name for f in df.schema.fields]
    for c in wanted:
        if names.count(c) > 1:
            role = "features_cols" if features_cols else "features_col"
            raise ValueError(f"{role}: the DataFrame has {names.count(c)} columns named '{c}'; "
                             "column names must be unique: rename or drop the duplicates "
                             "first (e.g. after a join)")
    if features_cols:
        parts: List[Column] = []
        for c in features_cols:
            if c not in fields:
                raise ValueError(f"features_cols: column '{c}' not found; the DataFrame has "
                                 f"columns {sorted(fields)}")
            ref = F.col(f"`{c}`")
            if isinstance(fields[c], T.StringType):
                if c not in levels:
                    raise ValueError(f"features_cols: column '{c}' is a string column the model "
                                     "was not trained with; expected a numeric column")
                parts += [F.coalesce((ref == lv).cast("double"), F.lit(0.0)) for lv in levels[c]]
            elif isinstance(fields[c], _NUMERIC + (T.BooleanType,)):
                parts.append(F.coalesce(ref.cast("double"), F.lit(float("nan"))))
            else:
                raise ValueError(f"features_cols: column '{c}' has type "
                                 f"{_describe(fields[c])}; expected a numeric type (int, long, "
                                 "float, double, decimal, boolean) or a string (one-hot encoded)")
        dupes = sorted({c for c in features_cols if features_cols.count(c) > 1})
        if dupes:
            raise ValueError(f"features_cols: columns {dupes} are listed more than once")
        return array_to_vector(F.array(*parts)), InputInfo(
            "columns", None, list(features_cols), len(parts),
            {c: levels[c] for c in features_cols if c in levels})
    if features_col not in fields:
        raise ValueError(f"features_col: column '{features_col}' not found; the DataFrame has "
                         f"columns {sorted(fields)} (set features_col, or features_cols for "
                         "numeric columns)")
    dt = fields[features_col]
    ref = F.col(f"`{features_col}`")
    if isinstance(dt, VectorUDT):
        return ref, InputInfo("vector", features_col)
    if isinstance(dt, T.ArrayType) and isinstance(dt.elementType, _NUMERIC):
        return array_to_vector(ref.cast("array<double>")), InputInfo("array", features_col)
    raise ValueError(f"features_col: column '{features_col}' has type {_describe(dt)}; expected "
                     "a vector (pyspark.ml.linalg), an array of float/double, or set "
                     "features_cols to a list of numeric columns")


def compute_stats(vectors: DataFrame, info: InputInfo,
                  role: str = "the training DataFrame") -> FeatureStats:
    """One aggregation over the prepared ``features`` column: count, mean, std, min, max.

    Raises
    ------
    ValueError
        The table is empty, has null feature rows, vectors of different lengths, or NaN /
        infinite values.
    """
    what = f"{role}: {_what(info)}" if role != "the training DataFrame" else _what(info)
    summary = Summarizer.metrics("count", "mean", "std", "min", "max")
    try:
        row = vectors.select(
            F.count(F.lit(1)).alias("rows"),
            summary.summary(F.col(FEATURES)).alias("s"),
        ).first()
    except Exception as exc:  # Spark wraps the JVM error; keep the user-facing part
        text = str(exc)
        if "MatchError: null" in text:  # the Summarizer fails on null vectors: count them
            nulls = vectors.where(F.col(FEATURES).isNull()).count()
            raise ValueError(f"{what} has {nulls} null rows; drop or fill them first") from None
        if "Nothing has been added to this summarizer" in text:
            raise ValueError(f"{role} is empty: {what} has no rows") from None
        if "Dimensions mismatch" in text or "dimension" in text.lower() and "mismatch" in text:
            detail = text.split("Dimensions mismatch", 1)[-1].split("\n", 1)[0].strip(" .:")
            raise ValueError(f"{what} holds vectors of different lengths ({detail}); every row "
                             "must have the same number of features") from None
        bounds = re.search(r"Index (-?\d+) out of bounds for vector of size (\d+)", text)
        if bounds:
            raise ValueError(f"{what} has a sparse vector with index {bounds.group(1)} outside "
                             f"[0, {bounds.group(2)}): every index must be below the vector's "
                             "size") from None
        raise
    if int(row["rows"]) == 0:
        raise ValueError(f"{role} is empty: {what} has no rows")
    if int(row["rows"]) == 1 and role == "the training DataFrame":
        raise ValueError(f"{role} has a single row: {what} needs at least 2 rows to learn "
                         "feature scaling and a reconstruction")
    s = row["s"]
    stats = FeatureStats(count=int(s["count"]),
                         mean=np.asarray(s["mean"].toArray(), dtype=np.float64),
                         std=np.asarray(s["std"].toArray(), dtype=np.float64),
                         min=np.asarray(s["min"].toArray(), dtype=np.float64),
                         max=np.asarray(s["max"].toArray(), dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(stats.mean))
    if len(bad):
        _missing_stats(vectors, stats, bad, what)
    return stats


#: Most features with missing values whose statistics are recomputed one by one.
MAX_MISSING_FEATURES = 2000


def _missing_stats(vectors: DataFrame, stats: FeatureStats, bad: np.ndarray, what: str) -> None:
    """Recompute the statistics of features holding NaN, ignoring the NaN (one aggregation
    over just those features); infinite values are an error."""
    if len(bad) > MAX_MISSING_FEATURES:
        raise ValueError(f"{what} has NaN or infinite values in {len(bad)} features; at most "
                         f"{MAX_MISSING_FEATURES} are imputed here: impute them upstream")
    from pyspark.ml.functions import vector_to_array

    arr = vector_to_array(F.col(FEATURES))
    aggs = []
    for j, i in enumerate(bad.tolist()):
        v = arr[int(i)]
        ok = F.when(~F.isnan(v), v)
        aggs += [F.avg(ok).alias(f"m{j}"), F.stddev(ok).alias(f"s{j}"),
                 F.min(ok).alias(f"lo{j}"), F.max(ok).alias(f"hi{j}"),
                 F.sum((F.abs(ok) == float("inf")).cast("long")).alias(f"inf{j}"),
                 F.sum(F.isnan(v).cast("long")).alias(f"nan{j}")]
    row = vectors.agg(*aggs).first()
    nans = 0
    for j, i in enumerate(bad.tolist()):
        if row[f"inf{j}"]:
            raise ValueError(f"{what} contains infinite values in feature index {i} "
                             f"({row[f'inf{j}']} rows); replace them (NaN is treated as missing)")
        if row[f"m{j}"] is None:
            raise ValueError(f"{what}: feature index {i} is NaN (missing) in every row")
        stats.mean[i], stats.std[i] = row[f"m{j}"], row[f"s{j}"] or 0.0
        stats.min[i], stats.max[i] = row[f"lo{j}"], row[f"hi{j}"]
        nans += row[f"nan{j}"]
    log.info("%s: %d missing (NaN) values in %d features", what, nans, len(bad))


def _what(info: InputInfo) -> str:
    if info.kind == "columns":
        return f"features_cols ({len(info.columns)} columns)"
    return f"features_col '{info.column}'"


def prepare(df: DataFrame, features_col: str,
            features_cols: Optional[List[str]]) -> tuple[DataFrame, InputInfo, FeatureStats]:
    """Validate ``df``, reduce it to one ``features`` vector column and compute statistics."""
    vectors, info = resolve(df, features_col, features_cols)
    return vectors, info, described(info, compute_stats(vectors, info))


def resolve(df: DataFrame, features_col: str,
            features_cols: Optional[List[str]]) -> tuple[DataFrame, InputInfo]:
    """Validate ``df`` and reduce it to one ``features`` vector column (the levels of
    string ``features_cols`` take one aggregation; nothing else runs a job)."""
    levels = find_levels(df, string_columns(df, features_cols))
    col, info = resolve_input(df, features_col, features_cols, levels)
    return df.select(col.alias(FEATURES)), info


def described(info: InputInfo, stats: FeatureStats) -> FeatureStats:
    """Record the width that ``stats`` found in ``info`` and log the prepared input."""
    info.size = len(stats.mean)
    log.info("prepared %s: %d rows, %d features", _what(info), stats.count, info.size)
    return stats


def input_column(df: DataFrame, info: InputInfo, role: str) -> Column:
    """The vector Column of ``df`` laid out like the training input ``info``.

    The schema is checked here, before any job starts; the width is checked by the
    consumer (the Parquet reader or the scoring UDF) against ``info.size``.
    """
    try:
        col, _ = resolve_input(df, info.column or FEATURES,
                               info.columns if info.kind == "columns" else None, info.levels)
    except ValueError as exc:
        raise ValueError(f"{role}: {exc}") from None
    return col


def prepare_like(df: DataFrame, info: InputInfo, role: str) -> DataFrame:
    """Reduce ``df`` to a ``features`` vector column laid out like the training input."""
    return df.select(input_column(df, info, role).alias(FEATURES))
