"""Materialize prepared features once as Parquet and stream them back as NumPy batches.

Spark writes ``ml.linalg`` vectors to Parquet as their SQL struct
``(type: int8, size: int, indices: list<int>, values: list<double>)``; type 0 is sparse,
1 is dense. :func:`decode_vectors` turns such an Arrow column into flat (row, column,
value) components without any per-row Python object, from which dense batches (or, for
wide sparse inputs, CSR batches) are built.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import uuid
from typing import Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from sparkae.data.prepare import FEATURES

log = logging.getLogger("sparkae")

#: Target Parquet row-group size: a rank holds about one row group in memory at a time.
ROW_GROUP_BYTES = 16 * 1024 * 1024


def materialize(vectors: DataFrame, directory: str) -> str:
    """Write the prepared ``features`` column of ``vectors`` as Parquet under ``directory``.

    The data is written to a sibling temporary directory and renamed into place, so a
    reader never sees a partial copy. Returns ``directory``.
    """
    tmp = f"{directory.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (vectors.select(FEATURES).write.option("parquet.block.size", ROW_GROUP_BYTES)
         .parquet(tmp))
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.debug("materialized features to %s", directory)
    return directory


def decode_vectors(col: pa.Array, size: int, role: str = "features"):
    """Decode an Arrow column of Spark vectors into flat components.

    Parameters
    ----------
    col : pyarrow.Array or ChunkedArray
        Struct column as Spark writes ``VectorUDT``.
    size : int
        Expected width of every vector.
    role : str
        Name used in error messages.

    Returns
    -------
    lengths : ndarray of int64, one per row (stored entries per row)
    cols : ndarray of int64, column index of every stored entry
    vals : ndarray of float32, every stored value

    Raises
    ------
    ValueError
        When a vector's width differs from ``size``.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    types, sizes, indices, values = col.flatten()
    lengths = pc.list_value_length(values).fill_null(0).to_numpy(zero_copy_only=False)
    lengths = lengths.astype(np.int64)
    vals = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    sparse = types.to_numpy(zero_copy_only=False) == 0
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(len(vals), dtype=np.int64) - np.repeat(starts, lengths)
    widths = lengths.copy()
    if sparse.any():
        widths[sparse] = sizes.filter(pa.array(sparse)).to_numpy(zero_copy_only=False)
        cols[np.repeat(sparse, lengths)] = indices.flatten().to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(widths != size)
    if len(bad):
        raise ValueError(f"{role}: a vector has {int(widths[bad[0]])} features where the model "
                         f"expects {size}; every row must have the same width")
    if len(cols) and (cols.min() < 0 or cols.max() >= size):
        raise ValueError(f"{role}: a sparse vector has an index outside [0, {size})")
    return lengths, cols, vals


def to_dense(lengths: np.ndarray, cols: np.ndarray, vals: np.ndarray, size: int) -> np.ndarray:
    """Dense float32 matrix (rows x size) from :func:`decode_vectors` components."""
    out = np.zeros((len(lengths), size), dtype=np.float32)
    out[np.repeat(np.arange(len(lengths)), lengths), cols] = vals
    return out


class ParquetBatches:
    """Stream a materialized feature table as dense NumPy batches, one row group at a time.

    Parameters
    ----------
    path : str
        Directory written by :func:`materialize`.
    size : int
        Width of every vector.
    batch_size : int
        Rows per batch; the last batch of an epoch may be smaller.
    shuffle : bool
        Shuffle row groups and rows within them, seeded by ``(seed, epoch)``.
    seed : int
        Shuffling seed: the same seed gives the same order.
    rank, world_size : int
        This reader takes every ``world_size``-th row group starting at ``rank``.
    """

    def __init__(self, path: str, size: int, batch_size: int, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, world_size: int = 1,
                 role: str = "features") -> None:
        self.path, self.size, self.batch_size = path, size, batch_size
        self.shuffle, self.seed, self.role = shuffle, seed, role
        files = sorted(glob.glob(os.path.join(path, "*.parquet")))
        units: List[Tuple[str, int, int]] = []
        for f in files:
            meta = pq.ParquetFile(f).metadata
            units += [(f, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
                      if meta.row_group(g).num_rows > 0]
        self.units = units[rank::world_size]
        self.num_rows = sum(u[2] for u in self.units)

    def _groups(self, epoch: int) -> Iterator[np.ndarray]:
        order = np.arange(len(self.units))
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            order = rng.permutation(order)
        for i in order:
            f, g, _ = self.units[i]
            table = pq.ParquetFile(f).read_row_group(g, columns=[FEATURES])
            x = to_dense(*decode_vectors(table.column(FEATURES), self.size, self.role),
                         self.size)
            yield x[rng.permutation(len(x))] if self.shuffle else x

    def epoch(self, epoch: int = 0) -> Iterator[np.ndarray]:
        """Yield the batches of one epoch."""
        carry: Optional[np.ndarray] = None
        for x in self._groups(epoch):
            if carry is not None:
                x = np.concatenate([carry, x])
                carry = None
            n_full = len(x) // self.batch_size * self.batch_size
            for start in range(0, n_full, self.batch_size):
                yield x[start:start + self.batch_size]
            if n_full < len(x):
                carry = x[n_full:]
        if carry is not None and len(carry):
            yield carry
