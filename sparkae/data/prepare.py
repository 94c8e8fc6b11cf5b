"""Driver side of the data path: schema checks, one input layout, scaling statistics.

Every accepted input (a vector column, an ``array<float|double>`` column, or a list of
numeric ``features_cols``) becomes one ``ml.linalg`` vector column named ``features``.
Statistics come from a single Spark aggregation; the data is never collected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
from pyspark.ml.functions import array_to_vector
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkae.nn.scaling import FeatureStats

log = logging.getLogger("sparkae")

#: Name of the single feature column of a prepared DataFrame.
FEATURES = "features"

_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
            T.DecimalType)


@dataclass
class InputInfo:
    """How the model's input was given: enough to check and prepare a table to score."""

    kind: str                      # "vector" | "array" | "columns"
    column: Optional[str]          # features_col for vector/array input
    columns: List[str] = field(default_factory=list)  # features_cols for column input
    size: int = 0                  # input width

    def to_json(self) -> Dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "columns": self.columns,
                "size": self.size}

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "InputInfo":
        return cls(kind=d["kind"], column=d.get("column"), columns=list(d.get("columns") or []),
                   size=int(d["size"]))


def _describe(dt: T.DataType) -> str:
    return dt.simpleString() if hasattr(dt, "simpleString") else str(dt)


def resolve_input(df: DataFrame, features_col: str,
                  features_cols: Optional[List[str]]) -> tuple[Column, InputInfo]:
    """Check the input columns of ``df`` and return one vector-valued Column for them.

    Raises
    ------
    ValueError
        A named column is missing, or has a type that is not a vector, a numeric array or
        (for ``features_cols``) a number.
    """
    fields = {f.name: f.dataType for f in df.schema.fields}
    if features_cols:
        for c in features_cols:
            if c not in fields:
                raise ValueError(f"features_cols: column '{c}' not found; the DataFrame has "
                                 f"columns {sorted(fields)}")
            if not isinstance(fields[c], _NUMERIC):
                raise ValueError(f"features_cols: column '{c}' has type "
                                 f"{_describe(fields[c])}; expected a numeric type (int, long, "
                                 "float, double, decimal)")
        dupes = sorted({c for c in features_cols if features_cols.count(c) > 1})
        if dupes:
            raise ValueError(f"features_cols: columns {dupes} are listed more than once")
        col = array_to_vector(F.array(*[F.col(f"`{c}`").cast("double") for c in features_cols]))
        return col, InputInfo("columns", None, list(features_cols), len(features_cols))
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
        raise
    if int(row["rows"]) == 0:
        raise ValueError(f"{role} is empty: {what} has no rows")
    s = row["s"]
    mean = np.asarray(s["mean"].toArray(), dtype=np.float64)
    bad = ~np.isfinite(mean)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} contains NaN or infinite values in {int(bad.sum())} "
                         f"features (first: feature index {first}); remove or impute them")
    return FeatureStats(count=int(s["count"]), mean=mean,
                        std=np.asarray(s["std"].toArray(), dtype=np.float64),
                        min=np.asarray(s["min"].toArray(), dtype=np.float64),
                        max=np.asarray(s["max"].toArray(), dtype=np.float64))


def _what(info: InputInfo) -> str:
    if info.kind == "columns":
        return f"features_cols ({len(info.columns)} columns)"
    return f"features_col '{info.column}'"


def prepare(df: DataFrame, features_col: str,
            features_cols: Optional[List[str]]) -> tuple[DataFrame, InputInfo, FeatureStats]:
    """Validate ``df``, reduce it to one ``features`` vector column and compute statistics."""
    col, info = resolve_input(df, features_col, features_cols)
    vectors = df.select(col.alias(FEATURES))
    stats = compute_stats(vectors, info)
    info.size = len(stats.mean)
    log.info("prepared %s: %d rows, %d features", _what(info), stats.count, info.size)
    return vectors, info, stats


def input_column(df: DataFrame, info: InputInfo, role: str) -> Column:
    """The vector Column of ``df`` laid out like the training input ``info``.

    The schema is checked here, before any job starts; the width is checked by the
    consumer (the Parquet reader or the scoring UDF) against ``info.size``.
    """
    try:
        col, _ = resolve_input(df, info.column or FEATURES,
                               info.columns if info.kind == "columns" else None)
    except ValueError as exc:
        raise ValueError(f"{role}: {exc}") from None
    return col


def prepare_like(df: DataFrame, info: InputInfo, role: str) -> DataFrame:
    """Reduce ``df`` to a ``features`` vector column laid out like the training input."""
    return df.select(input_column(df, info, role).alias(FEATURES))
