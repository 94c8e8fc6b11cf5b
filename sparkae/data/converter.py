"""Materialize prepared features once as Parquet and stream them back as batches.

Spark writes ``ml.linalg`` vectors to Parquet as their SQL struct; each row group read is
decoded by :mod:`sparkae.data.vectors` (also the flat layout the Petastorm loader reads,
:mod:`sparkae.data.petastorm`).

:class:`ParquetBatches` streams one rank's share of an epoch (:mod:`sparkae.data.shards`)
as dense NumPy batches or, for wide sparse input, ``torch.sparse_csr`` batches.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import pyarrow.parquet as pq
import torch
from pyspark.sql import DataFrame

from sparkae.data import held
from sparkae.data.batches import Block, CsrRows, assemble
from sparkae.data.vectors import FEATURES, VECTOR_FIELDS, decode_table
from sparkae.io import fs
from sparkae.io.uri import join
from sparkae.data.shards import batch_sizes, epoch_pieces, rank_rows, steps_per_epoch

log = logging.getLogger("sparkae")

#: Target Parquet row-group size: a rank holds about ``window`` row groups in memory.
ROW_GROUP_BYTES = 16 * 1024 * 1024
#: Row groups a rank's background reader reads ahead of the one being batched.
READ_AHEAD = 2
#: Most threads reading a GPU rank's units (:func:`read_threads`).
GPU_READ_THREADS = 4


def materialize(vectors: DataFrame, directory: str,
                meta: Optional[Tuple[str, str]] = None) -> str:
    """Write the prepared ``features`` column of ``vectors`` as Parquet under ``directory``.

    ``directory`` is any location :mod:`sparkae.io` reaches (local, ``s3a://``, ...); Spark
    writes the files (through its own connectors), then ``meta`` = ``(file name, text)``
    is written last: the entry's commit marker, since object stores cannot rename a
    directory into place. Whatever was at ``directory`` without that marker is replaced.
    Under Spark Connect the server writes the files: ``directory`` must be a location this
    process reaches too (the training ranks read it). Returns ``directory``.
    """
    where = "cache_dir"
    if meta is not None:
        fs.delete(join(directory, meta[0]), where)
    try:
        (vectors.select(FEATURES).write.mode("overwrite")
         .option("parquet.block.size", ROW_GROUP_BYTES).parquet(directory))
        if not fs.isdir(directory, where):  # Spark Connect: the server wrote it elsewhere
            raise FileNotFoundError(
                f"cache_dir: Spark wrote the materialized data to '{directory}', which this "
                "Python process cannot see (a Spark Connect server on another machine?); set "
                "the cache_dir Param (or spark.sparkae.cacheDir) to a location that both the "
                "Spark cluster and this process reach, e.g. s3a://..., a /dbfs or /Volumes path")
        if meta is not None:
            fs.write_bytes(join(directory, meta[0]), meta[1].encode(), where)
    except BaseException:
        try:
            fs.delete(directory, where)
        except OSError:
            pass
        raise
    log.debug("materialized features to %s", directory)
    return directory


def local_path(path: str) -> str:
    """A local file system path for ``path`` (a plain path or a ``file:`` URL)."""
    if path.startswith("file://"):
        return path[len("file://"):]
    if path.startswith("file:"):
        return path[len("file:"):]
    if "://" in path:
        raise ValueError(f"'{path}': only local (or mounted shared) paths are read; set "
                         "cache_dir to a directory every worker sees")
    return path


@dataclass(frozen=True)
class Unit:
    """One Parquet row group: ``group`` of ``groups`` in ``path``, holding ``rows`` rows."""

    path: str
    group: int
    groups: int
    rows: int


def parquet_files(path: str) -> List[str]:
    """The ``*.parquet`` files of a materialized directory, sorted (or ``[path]`` for a file)."""
    if held.is_held(path) or fs.isfile(path, "cache_dir"):
        return [path]
    return [join(path, n) for n in fs.listdir(path, "cache_dir") if n.endswith(".parquet")]


#: Open Parquet files of this process, newest last (bounded): a rank reads the row groups
#: of a few files over and over, and on an object store every open costs a footer read.
_OPEN: "OrderedDict[str, pq.ParquetFile]" = OrderedDict()
_OPEN_MAX = 16


#: Threads that read units side by side keep their own open files (a ParquetFile serves
#: one reader at a time); set by :func:`_own_open_files`.
_THREAD = threading.local()


def _own_open_files() -> None:
    _THREAD.files = OrderedDict()


def _parquet(path: str) -> pq.ParquetFile:
    cache = getattr(_THREAD, "files", _OPEN)
    pf = cache.pop(path, None)
    if pf is None:
        pf = pq.ParquetFile(fs.open_input(path, "cache_dir"), pre_buffer=True)
    cache[path] = pf
    while len(cache) > _OPEN_MAX:
        cache.popitem(last=False)
    return pf


def forget_open_files(prefix: str = "") -> None:
    """Close the cached open files under ``prefix`` (all by default), e.g. before the
    directory is deleted or rewritten."""
    for path in [p for p in _OPEN if p.startswith(prefix)]:
        _OPEN.pop(path).close()


def list_units(files: List[str]) -> List[Unit]:
    """Row groups (with rows) of ``files`` in file order, from the Parquet footers."""
    units: List[Unit] = []
    for f in files:
        if held.is_held(f):
            parts = held.groups(f)
            units += [Unit(f, g, len(parts), rows) for g, (_, rows) in enumerate(parts)]
            continue
        meta = _parquet(f).metadata
        units += [Unit(f, g, meta.num_row_groups, meta.row_group(g).num_rows)
                  for g in range(meta.num_row_groups) if meta.row_group(g).num_rows > 0]
    return units


def stored_values(files: List[str]) -> int:
    """Stored vector entries (about nnz) of a materialized table, from the footers."""
    total = 0
    for f in files:
        if held.is_held(f):
            total += held.stored_values(f)
            continue
        meta = _parquet(f).metadata
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                parts = col.path_in_schema.split(".")
                if parts[0] == "values" or parts[:2] == [FEATURES, "values"]:
                    total += col.num_values
    return total


def read_unit_arrow(unit: Unit, size: int, role: str) -> CsrRows:
    """Read and decode one row group with pyarrow (any location :mod:`sparkae.io` reaches,
    or a table held in memory, :mod:`sparkae.data.held`)."""
    if held.is_held(unit.path):
        return decode_table(held.read_group(unit.path, unit.group), size, role)
    pf = _parquet(unit.path)
    names = pf.schema_arrow.names
    columns = [FEATURES] if FEATURES in names else list(VECTOR_FIELDS)
    return decode_table(pf.read_row_group(unit.group, columns=columns), size, role)


def close(iterator: Iterator) -> None:
    """Close ``iterator`` when it is a generator (a background reader stops its thread)."""
    if hasattr(iterator, "close"):
        iterator.close()


UnitReader = Callable[[Unit, int, str], CsrRows]
Batch = Union[np.ndarray, torch.Tensor]


def read_threads(device_type: str, cores: Optional[int] = None) -> int:
    """Threads that read a rank's units: 1 on the CPU (its cores train), else up to
    :data:`GPU_READ_THREADS` of the process's cores (pyarrow and NumPy's casts leave the
    interpreter free, so units decode in parallel while the GPU trains)."""
    if device_type == "cpu":
        return 1
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(GPU_READ_THREADS, cores - 1))


class ParquetBatches:
    """Stream a rank's share of a materialized feature table, one epoch at a time.

    Parameters
    ----------
    path : str or list of str
        Directory written by :func:`materialize` (or by the Petastorm converter), or its
        Parquet files.
    size : int
        Width of every vector.
    batch_size : int
        Rows per batch. Every rank yields :attr:`steps` batches per epoch: full ones, then
        a few smaller ones at the end of the epoch (see :mod:`sparkae.data.shards`).
    shuffle : bool
        Shuffle units and rows, seeded by ``(seed, epoch)`` and ``(seed, epoch, rank)``.
    seed : int
        Shuffling seed: the same seed gives the same order.
    rank, world_size : int
        This reader's rank and the number of ranks; the ranks' rows partition the table.
    role : str
        Name used in error messages.
    sparse : bool
        Yield ``torch.sparse_csr`` tensors instead of dense NumPy matrices.
    reader : callable, optional
        ``reader(unit, size, role) -> CsrRows``; default :func:`read_unit_arrow`.
    skip_missing : bool
        Drop rows holding NaN from sparse batches (the loop does it for dense ones).
    window : int
        Units shuffled together (memory holds about this many row groups).
    read_threads : int
        Units read at once in the background (Arrow reader). One suits a rank whose
        cores train; a GPU rank's idle cores read several (:func:`read_threads`).
    """

    def __init__(self, path: Union[str, List[str]], size: int, batch_size: int,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 role: str = "features", sparse: bool = False,
                 reader: Optional[UnitReader] = None, skip_missing: bool = False,
                 window: int = 2, read_threads: int = 1) -> None:
        self.read_threads = max(1, int(read_threads))
        self.size, self.batch_size = size, batch_size
        self.shuffle, self.seed, self.role = shuffle, seed, role
        self.rank, self.world_size = rank, world_size
        self.sparse, self.skip_missing, self.window = sparse, skip_missing, window
        self.reader = reader or read_unit_arrow
        files = parquet_files(path) if isinstance(path, str) else list(path)
        for f in files:   # a file opened earlier in this process may have been rewritten
            forget_open_files(f)
        self.units = list_units(files)
        self.total_rows = sum(u.rows for u in self.units)
        self.num_rows = rank_rows(self.total_rows, world_size)[rank]
        self.steps = steps_per_epoch(self.total_rows, world_size, batch_size)

    def pieces(self, epoch: int = 0) -> List[Tuple[int, int, int]]:
        """``(unit index, first row, end row)`` of what this rank reads in ``epoch``."""
        return epoch_pieces([u.rows for u in self.units], epoch, self.seed, self.shuffle,
                            self.rank, self.world_size)

    def read(self, index: int) -> CsrRows:
        """Unit ``index`` (of :attr:`units`) read and decoded, its row count checked."""
        unit = self.units[index]
        block = self.reader(unit, self.size, self.role)
        if len(block) != unit.rows:
            raise ValueError(f"{self.role}: row group {unit.group} of {unit.path} has "
                             f"{len(block)} rows, its footer says {unit.rows}")
        return block

    def read_ahead(self, indices: List[int]) -> Iterator[CsrRows]:
        """:meth:`read` each unit of ``indices``, in order. With the Arrow reader, a
        background thread (:attr:`read_threads` of them) reads up to :data:`READ_AHEAD`
        units (or as many as threads) ahead of the one yielded
        (pyarrow and NumPy leave the interpreter free, so reading overlaps training); close
        the iterator (``close()``, when it has one) if it is left before its end."""
        if len(indices) <= 1 or self.reader is not read_unit_arrow:
            return map(self.read, indices)
        return self._read_in_background(indices)

    def _read_in_background(self, indices: List[int]) -> Iterator[CsrRows]:
        ahead = max(READ_AHEAD, self.read_threads)
        own = _own_open_files if self.read_threads > 1 else None
        with ThreadPoolExecutor(self.read_threads, thread_name_prefix="sparkae-read",
                                initializer=own) as pool:
            todo = iter(indices)
            pending = deque(pool.submit(self.read, i) for i in islice(todo, ahead))
            while pending:
                block = pending.popleft().result()
                following = next(todo, None)
                if following is not None:
                    pending.append(pool.submit(self.read, following))
                yield block

    def blocks(self, epoch: int = 0) -> Iterator[CsrRows]:
        """The row blocks this rank reads in ``epoch`` (before shuffling and batching)."""
        pieces = self.pieces(epoch)
        units = self.read_ahead([p[0] for p in pieces])
        for _, start, stop in pieces:
            block = next(units)
            yield block if (start, stop) == (0, len(block)) else block.slice(start, stop)
        close(units)

    def row_batches(self, epoch: int = 0, blocks: Optional[Iterable[Block]] = None
                    ) -> Iterator[Block]:
        """The epoch's batches: :class:`CsrRows` blocks, or, given ``blocks`` standing
        for :meth:`blocks` (e.g. :class:`~sparkae.data.batches.RowIds` of rows kept in
        memory), those cut and shuffled exactly alike."""
        rng = (np.random.default_rng([self.seed, epoch, self.rank]) if self.shuffle else None)
        sizes = batch_sizes(self.num_rows, self.steps, self.batch_size)
        return assemble(self.blocks(epoch) if blocks is None else blocks, sizes, rng,
                        self.window)

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        """Yield the batches of one epoch (dense float32 arrays, or sparse CSR tensors)."""
        for rows in self.row_batches(epoch):
            if self.sparse:
                yield (rows.without_nan_rows() if self.skip_missing else rows).torch_csr()
            else:
                yield rows.dense()

    def __len__(self) -> int:
        return self.steps


def table_layout(files: List[str], size: int) -> Tuple[int, int, float]:
    """``(rows, stored values, density)`` of a materialized table, from its footers."""
    rows = sum(u.rows for u in list_units(files))
    nnz = stored_values(files)
    return rows, nnz, nnz / max(1, rows * size)
