"""Scoring a plain local Parquet table with the Python workers reading its row groups.

Through Spark, the JVM decodes every row and converts it to Arrow for the Python workers,
the cost that dominates scoring. Here the JVM only starts the tasks (``spark.range`` of
task numbers; the row groups are shared out on the driver, balanced by rows, and travel
with the function), and each worker reads its row groups with
pyarrow, in batches of ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows (bounded
memory), and scores them as :func:`sparkae.scoring.transport.score` would.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from sparkae.data.parquet_scan import parquet_pieces
from sparkae.data.prepare import InputInfo
from sparkae.scoring.broadcasts import payload_source
from sparkae.scoring.encode import output_fields
from sparkae.scoring.faults import from_session as fault_hook
from sparkae.scoring.worker import BatchScorer, rows_within

#: Rows per Arrow batch read when the session does not say (Spark's own default).
_READ_ROWS = 10000
#: Bytes per value of Parquet's fixed-width physical types, as decoded into Arrow.
_WIDTHS = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}


def row_bytes(group: Any, columns: Tuple[str, ...]) -> float:
    """Bytes per row of ``columns`` once a row group (``pyarrow.parquet.RowGroupMetaData``)
    is decoded into Arrow: every value of their leaf columns at its type's width (a
    dense vector's 784 doubles are 6,272 bytes a row however well they compress);
    variable-width values count their uncompressed size."""
    total = 0.0
    for i in range(group.num_columns):
        chunk = group.column(i)
        path = chunk.path_in_schema
        if not any(path == c or path.startswith(c + ".") for c in columns):
            continue
        width = _WIDTHS.get(chunk.physical_type)
        total += (chunk.num_values * width if width is not None
                  else chunk.total_uncompressed_size)
    return total / max(group.num_rows, 1)


def _read_rows(spark: Any) -> int:
    """Rows per Arrow batch read, as Spark's own Arrow batches (bounded memory)."""
    try:
        rows = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch",
                                  str(_READ_ROWS)) or _READ_ROWS)
    except Exception:  # noqa: BLE001
        rows = _READ_ROWS
    return max(1, rows)


def task_threads(spark: Any) -> int:
    """Torch threads of a CPU scoring worker: the cores its task holds
    (``spark.task.cpus``, default 1), never more, so tasks sharing an executor do not
    oversubscribe its cores."""
    try:
        return max(1, int(spark.conf.get("spark.task.cpus", "1") or 1))
    except Exception:  # noqa: BLE001 - no conf access: one thread
        return 1


def _slots(spark: Any) -> int:
    """Task slots of the session, for the number of reading tasks."""
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - Spark Connect: no SparkContext here
        return int(spark.conf.get("spark.default.parallelism", "2") or 2)


@dataclass(frozen=True)
class PieceScorer:
    """What a reading task runs: read its row groups with pyarrow, score them, keep
    ``carry``.

    Attributes
    ----------
    job : BatchScorer
        The scoring call on the input column.
    read : tuple of str
        Columns read, the input column first.
    carry : tuple of str
        Columns of the table kept in the result.
    names : tuple of str
        Names of the result's columns: ``carry``, then the outputs (then the status).
    read_rows : int
        Most rows per Arrow batch read; fewer where a row group's rows are wide
        (:func:`row_bytes`, at most :data:`sparkae.scoring.worker.SLICE_BYTES` a batch).
    tasks : tuple of tuple of (str, int)
        The ``(file, row group)`` pieces of each task, by task number.
    """

    job: BatchScorer
    read: Tuple[str, ...]
    carry: Tuple[str, ...]
    names: Tuple[str, ...]
    read_rows: int
    tasks: Tuple[Tuple[Tuple[str, int], ...], ...]

    def scored(self, numbers: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """The scored batches of the pieces of the tasks numbered in ``numbers`` (the
        ``id`` column of ``spark.range``)."""
        for task in numbers.column(0).to_pylist():
            for f, g in self.tasks[task]:
                reader = pq.ParquetFile(f)
                rows = rows_within(row_bytes(reader.metadata.row_group(g), self.read),
                                   self.read_rows)
                # one thread: the task holds one core; more only compete with the
                # executor's other tasks
                for part in reader.iter_batches(batch_size=rows, row_groups=[g],
                                                columns=list(self.read), use_threads=False,
                                                use_pandas_metadata=False):
                    _, arrays = self.job(part.column(0))
                    carried = [part.column(self.read.index(c)) for c in self.carry]
                    yield pa.RecordBatch.from_arrays(carried + arrays, names=list(self.names))


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def _conf_bytes(spark: Any, name: str, default: int) -> int:
    """A byte-size Spark conf (``134217728``, ``128m``, ``4MB``); ``default`` when unset
    or unreadable."""
    try:
        raw = str(spark.conf.get(name, str(default))).strip().lower()
        m = re.fullmatch(r"(\d+)\s*([a-z]*)", raw)
        return int(m.group(1)) * _UNITS[m.group(2)] if m and m.group(2) in _UNITS else default
    except Exception:  # noqa: BLE001 - no conf access
        return default


def task_count(spark: Any, pieces: List[Tuple[str, int, int]]) -> int:
    """Tasks to share ``pieces`` over, sized as Spark sizes a file scan's tasks: each file
    counts its size plus ``spark.sql.files.openCostInBytes`` (4 MB), and a task takes up
    to ``min(maxPartitionBytes, max(openCostInBytes, total / slots))`` of that (128 MB
    at most); never more tasks than row groups. Starting a task costs about 0.1 s on a
    2-core machine, so tasks of a few row groups each lost a third of the rate there
    (200,000 sparse rows: 2.1 s in 8 tasks, 1.3-1.4 s in 2)."""
    max_bytes = _conf_bytes(spark, "spark.sql.files.maxPartitionBytes", 128 << 20)
    open_cost = _conf_bytes(spark, "spark.sql.files.openCostInBytes", 4 << 20)
    total = 0
    for f in dict.fromkeys(p[0] for p in pieces):
        try:
            total += os.path.getsize(f) + open_cost
        except OSError:
            total += open_cost
    split = max(1, min(max_bytes, max(open_cost, -(-total // max(1, _slots(spark))))))
    return max(1, min(len(pieces), -(-total // split)))


def assign_pieces(pieces: List[Tuple[str, int, int]], tasks: int
                  ) -> Tuple[Tuple[Tuple[str, int], ...], ...]:
    """``pieces`` (file, row group, rows) shared out over ``tasks`` tasks with balanced
    rows: the largest first, each to the task with the fewest rows so far; each task
    reads its pieces in file order."""
    loads = [0] * tasks
    out: List[List[Tuple[str, int]]] = [[] for _ in range(tasks)]
    for f, g, rows in sorted(pieces, key=lambda p: -p[2]):
        i = loads.index(min(loads))
        loads[i] += rows
        out[i].append((f, g))
    return tuple(tuple(sorted(t)) for t in out)


def plan_pieces(spark: Any, path: str, schema: T.StructType, payload: bytes, key: str,
                info: InputInfo, outputs: List[str], layer: int, batch_size: int = 1024,
                threshold: Optional[float] = None, threads: Optional[int] = None, *,
                skip_missing: bool = False, status_col: Optional[str] = None,
                carry: Optional[List[str]] = None,
                pieces: Optional[List[Tuple[str, int, int]]] = None,
                clip: bool = False) -> Tuple[PieceScorer, List[T.StructField], DataFrame]:
    """The work of :func:`score_parquet` (same parameters): the per-task scorer, the
    Spark fields of its result, and ``spark.range`` of the task numbers, one per Spark
    partition (no shuffle: each task finds its pieces by its number)."""
    if info.kind not in ("vector", "array"):
        raise ValueError("score_parquet: features_cols input is scored through Spark")
    pieces = pieces if pieces is not None else parquet_pieces(path)
    if not pieces:
        raise ValueError(f"score_parquet: '{path}' is not a plain local Parquet table")
    carry = list(carry or [])
    source = payload_source(spark, key, payload)
    threads = threads or task_threads(spark)
    job = BatchScorer(source, tuple(outputs), layer, threshold, batch_size, threads,
                      status_col is not None, bool(skip_missing), fault_hook(spark),
                      clip=bool(clip))
    fields = [schema[c] for c in carry] + output_fields(outputs, status_col)
    read = tuple(dict.fromkeys([info.column] + carry))    # the input may be carried too
    tasks = task_count(spark, pieces)
    piece = PieceScorer(job, read, tuple(carry), tuple(f.name for f in fields),
                        _read_rows(spark), assign_pieces(pieces, tasks))
    return piece, fields, spark.range(0, tasks, 1, tasks)


def score_parquet(spark: Any, path: str, schema: T.StructType, payload: bytes, key: str,
                  info: InputInfo, outputs: List[str], layer: int, batch_size: int = 1024,
                  threshold: Optional[float] = None, threads: Optional[int] = None, *,
                  skip_missing: bool = False, status_col: Optional[str] = None,
                  carry: Optional[List[str]] = None,
                  pieces: Optional[List[Tuple[str, int, int]]] = None,
                  clip: bool = False) -> DataFrame:
    """Like :func:`sparkae.scoring.transport.score` on ``spark.read.parquet(path)``, but
    the Python workers read the Parquet row groups themselves with pyarrow.

    Parameters
    ----------
    spark : SparkSession
    path : str
        A plain local (or shared) Parquet table, see :func:`parquet_pieces`.
    schema : StructType
        The table's Spark schema (for the carried columns).
    payload, key, info, outputs, layer, batch_size, threshold, threads, skip_missing,
    status_col, clip
        As for :func:`sparkae.scoring.transport.score`; the request is not checked here.
    carry : list of str, optional
        Columns of the table kept in the result (default: none).
    pieces : list of (str, int, int), optional
        :func:`parquet_pieces` of ``path`` when the caller has them.

    Returns
    -------
    DataFrame
        The ``carry`` columns, then ``outputs`` (then ``status_col``).

    Raises
    ------
    ValueError
        ``features_cols`` input, or ``path`` is not a plain local Parquet table.
    """
    piece, fields, numbers = plan_pieces(
        spark, path, schema, payload, key, info, outputs, layer, batch_size, threshold,
        threads, skip_missing=skip_missing, status_col=status_col, carry=carry,
        pieces=pieces, clip=clip)

    def _score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield from piece.scored(batch)

    return numbers.mapInArrow(_score, T.StructType(fields))
