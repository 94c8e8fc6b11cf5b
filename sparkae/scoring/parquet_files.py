"""Scored Parquet files written by the Python workers themselves (the nightly job's path).

Through Spark, every scored row crosses back from the Python worker to the JVM, which
converts it into its own rows and writes them with its Parquet writer. Once the workers
read the input themselves (:mod:`sparkae.scoring.parquet`), that way back is most of
what a job writing only its output still pays. Here each reading task also writes its
scored rows with pyarrow, and only its file's name and its counts reach the driver.

The commit is all or nothing inside the caller's staging directory ``staged``:

- The driver creates ``staged/_attempts/`` before the job. A task attempt writes
  ``staged/_attempts/part-<partition>-<id>.parquet`` there and, only once that file is
  complete, moves it to ``staged/`` (Spark's readers skip ``_`` names; the move is one
  rename). A task creates no directory: once the driver has moved ``_attempts`` or
  ``staged`` away, an attempt still running (Spark stops a failed job's other tasks
  without waiting for their Python workers) can neither open its file nor move it in.
- The driver first moves ``_attempts`` out of ``staged`` (to ``<staged>.attempts``, then
  deletes it), so that no attempt can add a file after it looks. It then keeps exactly the
  files named by the task results that Spark accepted, one per partition, and deletes
  every other ``part-`` file, for example the one an attempt moved in just before its
  executor died, when Spark ran that partition again.
- A run with no rows still writes one file, holding the schema.

The caller moves ``staged`` into place (:class:`sparkae.jobs.partitions.PathPartitions`),
so readers never see a partial run. Only local (or shared) output directories are
written this way: the renames above must be atomic.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from sparkae.data.arrow_rows import SCORED, SKIP_REASONS
from sparkae.io import fs
from sparkae.io.uri import join
from sparkae.scoring.parquet import plan_pieces

log = logging.getLogger("sparkae")

#: Spark's Parquet codec names (``spark.sql.parquet.compression.codec``) and pyarrow's
#: for the same codec; another codec (lz4, lzo) makes the caller write through Spark.
CODECS = {"snappy": "snappy", "gzip": "gzip", "zstd": "zstd", "brotli": "brotli",
          "none": "none", "uncompressed": "none"}
#: Row status codes counted (see :mod:`sparkae.data.arrow_rows`).
STATUSES = [SCORED] + sorted(SKIP_REASONS)
_STATUS = "__sparkae_status"
_ATTEMPTS = "_attempts"
_RESULT = T.StructType(
    [T.StructField("file", T.StringType()), T.StructField("rows", T.LongType())]
    + [T.StructField(f"s{k}", T.LongType()) for k in STATUSES]
    + [T.StructField("anomalies", T.LongType())])


def parquet_codec(spark: Any) -> Optional[str]:
    """pyarrow's name for the session's Parquet codec, or None when pyarrow writes no
    codec Spark would read alike (then Spark writes)."""
    try:
        name = str(spark.conf.get("spark.sql.parquet.compression.codec", "snappy"))
    except Exception:  # noqa: BLE001 - no conf access: Spark's default
        name = "snappy"
    return CODECS.get(name.strip().lower())


def _anomalies(batch: pa.RecordBatch, outputs: List[str], threshold: Optional[float]) -> int:
    """Anomalies in ``batch``, counted as the job counts them: ``is_anomaly`` when it is an
    output, else ``reconstruction_mse`` above the threshold."""
    if "is_anomaly" in outputs:
        flags = batch.column(batch.schema.get_field_index("is_anomaly"))
        return int(np.count_nonzero(flags.fill_null(False).to_numpy(zero_copy_only=False)))
    mse = batch.column(batch.schema.get_field_index("reconstruction_mse"))
    values = mse.to_numpy(zero_copy_only=False).astype(float)
    return int(np.count_nonzero(values[~np.isnan(values)] > float(threshold)))


def write_parquet_files(spark: Any, staged: str, codec: str, path: str, schema: T.StructType,
                        payload: bytes, key: str, info: Any, outputs: List[str], layer: int,
                        batch_size: int = 1024, threshold: Optional[float] = None,
                        **kwargs: Any) -> Dict[str, Optional[int]]:
    """Score the local Parquet table at ``path`` into Parquet files under ``staged``,
    written by the workers (see the module docstring).

    Parameters
    ----------
    spark : SparkSession
    staged : str
        A new local directory; the caller moves it into place once this returns, and
        deletes it when this raises.
    codec : str
        pyarrow's name of the compression codec (see :func:`parquet_codec`).
    path, schema, payload, key, info, outputs, layer, batch_size, threshold
        As for :func:`sparkae.scoring.score_parquet`.
    **kwargs
        ``carry``, ``pieces``, ``skip_missing``, ``clip``, ``threads``: as for
        :func:`sparkae.scoring.score_parquet`.

    Returns
    -------
    dict
        ``rows`` (read), ``s<code>`` (rows of each status code) and ``anomalies`` (None
        when neither ``is_anomaly`` nor a threshold with ``reconstruction_mse`` is there).
    """
    piece, fields, numbers = plan_pieces(spark, path, schema, payload, key, info, outputs,
                                         layer, batch_size, threshold, status_col=_STATUS,
                                         **kwargs)
    arrow_schema = to_arrow_schema(T.StructType(fields[:-1]))
    keep = list(range(len(fields) - 1))          # all but the status column
    dictionary = [f.name for f in fields[:len(kwargs.get("carry") or [])]]
    counted = "is_anomaly" in outputs or ("reconstruction_mse" in outputs
                                          and threshold is not None)

    def _task(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        attempt = ctx.taskAttemptId()
        name = f"part-{ctx.partitionId():05d}-{attempt}.parquet"
        work = join(staged, _ATTEMPTS, name)
        counts, anomalies, writer, sink = np.zeros(len(STATUSES), np.int64), 0, None, None
        try:
            for numbers in batches:
                for batch in piece.scored(numbers):
                    status = batch.column(batch.num_columns - 1).to_numpy(zero_copy_only=False)
                    counts += np.bincount(status.astype(np.int64),
                                          minlength=max(STATUSES) + 1)[STATUSES]
                    if counted:
                        anomalies += _anomalies(batch, outputs, threshold)
                    table = pa.Table.from_batches([batch]).select(keep).cast(arrow_schema)
                    if writer is None:   # no makedirs: see the module docstring
                        files, inner = fs.arrow_filesystem(work, "output.path")
                        sink = files.open_output_stream(inner)
                        # dictionaries only for the carried ids: scores rarely repeat
                        writer = pq.ParquetWriter(sink, arrow_schema, compression=codec,
                                                  use_dictionary=dictionary)
                    writer.write_table(table)
            if writer is not None:
                writer.close()
                sink.close()
                fs.rename(work, join(staged, name), "output.path")
        except BaseException:
            for closing in (writer, sink):
                try:
                    if closing is not None:
                        closing.close()
                except Exception:  # noqa: BLE001 - the original error matters
                    pass
            fs.delete(work, "output.path")
            raise
        yield pa.RecordBatch.from_pylist(
            [{"file": name if writer is not None else None, "rows": int(counts.sum()),
              **{f"s{k}": int(c) for k, c in zip(STATUSES, counts)},
              "anomalies": anomalies if counted else None}],
            schema=to_arrow_schema(_RESULT))

    fs.makedirs(join(staged, _ATTEMPTS), "output.path")
    results = numbers.mapInArrow(_task, _RESULT).collect()
    _finish(staged, [r["file"] for r in results if r["file"]], arrow_schema, codec)
    totals: Dict[str, Optional[int]] = {"rows": sum(r["rows"] for r in results)}
    for k in STATUSES:
        totals[f"s{k}"] = sum(r[f"s{k}"] for r in results)
    totals["anomalies"] = sum(r["anomalies"] for r in results) if counted else None
    return totals


def _finish(staged: str, files: List[str], arrow_schema: pa.Schema, codec: str) -> None:
    """Keep exactly ``files`` (the accepted tasks') in ``staged``; a file with the schema
    when there are none; ``_SUCCESS`` as Spark's writer leaves it."""
    keep = set(files)
    # first the fence: an attempt still running can no longer move a file in
    if fs.exists(join(staged, _ATTEMPTS), "output.path"):
        spent = staged.rstrip("/") + ".attempts"
        fs.rename(join(staged, _ATTEMPTS), spent, "output.path")
        fs.delete(spent, "output.path")
    for n in fs.listdir(staged, "output.path"):
        if n.startswith("part-") and n not in keep:
            log.info("removing %s: written by a task attempt Spark did not keep", n)
            fs.delete(join(staged, n), "output.path")
    if not keep:
        fs.makedirs(staged, "output.path")
        files_, inner = fs.arrow_filesystem(join(staged, "part-00000-empty.parquet"),
                                            "output.path")
        with files_.open_output_stream(inner) as sink:
            pq.write_table(arrow_schema.empty_table(), sink, compression=codec)
    fs.write_bytes(join(staged, "_SUCCESS"), b"", "output.path")


__all__ = ["CODECS", "parquet_codec", "write_parquet_files"]
