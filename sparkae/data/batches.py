"""Row blocks in CSR form, and the assembly of an epoch's batches from them.

Whatever the loader (Arrow or Petastorm), a unit of the materialized table is decoded to
a :class:`CsrRows` block: row pointers, column indices and values, no Python object per
row; a unit whose rows are all dense vectors of the model's width is decoded by the
Arrow loader to a :class:`DenseRows` block instead (one float32 matrix: no column
indices to build, shuffle or scatter), which behaves the same. Blocks are shuffled
within a window of a few units (seeded), cut into the batch sizes of
:func:`sparkae.data.shards.batch_sizes`, and each batch leaves as a dense float32 matrix
or, for wide sparse input, a ``torch.sparse_csr`` tensor that is never densified on the
input side.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, TypeVar

import numpy as np
import torch


def to_device(x, device: torch.device, dtype: Optional[np.dtype] = None) -> torch.Tensor:
    """``x`` (a NumPy array or a CPU tensor) on ``device``; a NumPy ``x`` is cast to
    ``dtype`` when one is given. To a GPU it goes through pinned memory without waiting:
    ``.to("cuda")`` of pageable memory copies and then waits for every kernel queued so
    far, which once per batch leaves the GPU idle while Python prepares the next step
    (measured on an H200: the training loop at 0.59x a plain loop at batch 256,
    bench/bench_gpu.py); the cast happens in the copy into the pinned block (one pass over
    ``x``). The pinned block is reused only after its copy. On the CPU the tensor may share
    ``x``'s memory (an Arrow buffer's too, which is read-only): read it, never write it."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
    if device.type != "cuda":
        if isinstance(x, torch.Tensor):
            return x.to(device)
        if dtype is not None:
            x = np.asarray(x, dtype=dtype)
        with warnings.catch_warnings():   # read only, as the docstring says
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(x).to(device)
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu" or x.layout != torch.strided:
            return x.to(device)
        return x.pin_memory().to(device, non_blocking=True)
    # copied into a pinned block (Arrow's read-only buffers included: no writable copy first)
    kind = np.dtype(dtype if dtype is not None else x.dtype)
    pinned = torch.empty(x.shape, dtype=torch.from_numpy(np.empty(0, kind)).dtype,
                         pin_memory=True)
    pinned.numpy()[...] = x
    return pinned.to(device, non_blocking=True)


def index_on(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """An integer array (int32 column indices included) as an int64 tensor on ``device``
    (read it, never write it: see :func:`to_device`): on a GPU it travels as it is (half
    the bytes of int64 for int32) and is widened there; on the CPU NumPy widens it."""
    if device.type == "cpu":
        return to_device(x, device, np.int64)
    return to_device(x, device).long()


def scatter_rows(lengths: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                 size: int) -> np.ndarray:
    """A dense float32 matrix (``len(lengths)`` x ``size``) of rows whose ``lengths[i]``
    stored entries (column ``cols``, value ``vals``) follow each other; one scatter through
    flat positions (half the time of a two-index scatter)."""
    n = len(lengths)
    out = np.zeros(n * size, dtype=np.float32)
    flat = np.repeat(np.arange(0, n * size, size, dtype=np.int64), lengths)
    flat += cols
    out[flat] = vals
    return out.reshape(n, size)


def scatter_on(lengths: np.ndarray, cols: np.ndarray, vals: np.ndarray, size: int,
               device: torch.device) -> torch.Tensor:
    """:func:`scatter_rows` on ``device``: the stored entries travel and are scattered
    there (on a GPU: fewer bytes to copy than the dense rows of sparse data, and no
    scatter on the host's CPU)."""
    n, nnz = len(lengths), len(cols)
    rows = torch.repeat_interleave(torch.arange(n, device=device), index_on(lengths, device),
                                   output_size=nnz)
    out = torch.zeros((n, size), dtype=torch.float32, device=device)
    out[rows, index_on(cols, device)] = to_device(vals, device).to(torch.float32)
    return out


@dataclass
class CsrRows:
    """Rows of one width in CSR form: ``indptr`` (int64, rows + 1), ``cols`` (int32),
    ``vals`` (float32)."""

    indptr: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    size: int

    @classmethod
    def from_lengths(cls, lengths: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                     size: int) -> "CsrRows":
        """Build from per-row entry counts (as :func:`sparkae.data.vectors.decode_vectors`
        returns them)."""
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return cls(indptr, np.asarray(cols, dtype=np.int32),
                   np.asarray(vals, dtype=np.float32), size)

    @classmethod
    def from_dense(cls, x: np.ndarray) -> "CsrRows":
        """All entries of a dense matrix, zeros included (keeps NaN)."""
        x = np.asarray(x, dtype=np.float32)
        n, size = x.shape
        return cls(np.arange(n + 1, dtype=np.int64) * size,
                   np.tile(np.arange(size, dtype=np.int32), n), x.reshape(-1).copy(), size)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def dense_on(self, device: torch.device) -> torch.Tensor:
        """The rows as a dense float32 tensor on ``device`` (scattered there on a GPU)."""
        if device.type == "cpu":
            return torch.from_numpy(self.dense())
        return scatter_on(self.lengths, self.cols, self.vals, self.size, device)

    def slice(self, start: int, stop: int) -> "CsrRows":
        """Rows ``start:stop``."""
        a, b = self.indptr[start], self.indptr[stop]
        return CsrRows(self.indptr[start:stop + 1] - a, self.cols[a:b], self.vals[a:b],
                       self.size)

    def take(self, rows: np.ndarray) -> "CsrRows":
        """Rows in the order of the index array ``rows``."""
        lengths = self.lengths[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        src = np.repeat(self.indptr[:-1][rows] - indptr[:-1], lengths)
        idx = src + np.arange(indptr[-1], dtype=np.int64)
        return CsrRows(indptr, self.cols[idx], self.vals[idx], self.size)

    @staticmethod
    def concat(blocks: List["CsrRows"]) -> "CsrRows":
        """Rows of every block, in order (:class:`DenseRows` blocks among them in CSR form)."""
        if len(blocks) == 1:
            return blocks[0]
        blocks = [b.to_csr() if isinstance(b, DenseRows) else b for b in blocks]
        offsets = np.cumsum([0] + [b.indptr[-1] for b in blocks[:-1]])
        indptr = np.concatenate([[0]] + [b.indptr[1:] + o for b, o in zip(blocks, offsets)])
        return CsrRows(indptr.astype(np.int64), np.concatenate([b.cols for b in blocks]),
                       np.concatenate([b.vals for b in blocks]), blocks[0].size)

    def without_nan_rows(self) -> "CsrRows":
        """The rows with no NaN value (``missing_values_handling='skip'``)."""
        bad = np.isnan(self.vals)
        if not bad.any():
            return self
        row_of = np.repeat(np.arange(len(self)), self.lengths)
        keep = np.ones(len(self), dtype=bool)
        keep[row_of[bad]] = False
        return self.take(np.flatnonzero(keep))

    def dense(self) -> np.ndarray:
        """A dense float32 matrix (rows x size)."""
        return scatter_rows(self.lengths, self.cols, self.vals, self.size)

    def torch_csr(self) -> torch.Tensor:
        """A ``torch.sparse_csr`` tensor (rows x size) sharing nothing with this block."""
        with warnings.catch_warnings():   # Torch's notes, once per process: "... support is
            # in beta state" and (on a GPU) "Sparse invariant checks are implicitly disabled"
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
            return torch.sparse_csr_tensor(torch.from_numpy(self.indptr.copy()),
                                           torch.from_numpy(self.cols.astype(np.int64)),
                                           torch.from_numpy(self.vals.copy()),
                                           size=(len(self), self.size), check_invariants=False)


@dataclass
class DenseRows:
    """Rows of dense vectors, every one of width ``size``, as one float32 matrix: the same
    interface as :class:`CsrRows` (each row's entries are all of its columns, in order,
    zeros included, as a dense vector's are), with no column indices. Slicing, taking and
    concatenating move whole rows; :meth:`dense` returns the rows without a scatter."""

    x: np.ndarray       # float32, rows x size, C-contiguous

    @property
    def size(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return np.full(len(self), self.size, dtype=np.int64)

    @property
    def indptr(self) -> np.ndarray:
        return np.arange(len(self) + 1, dtype=np.int64) * self.size

    @property
    def cols(self) -> np.ndarray:
        return np.tile(np.arange(self.size, dtype=np.int32), len(self))

    @property
    def vals(self) -> np.ndarray:
        return self.x.reshape(-1)

    def to_csr(self) -> CsrRows:
        """The same rows as a :class:`CsrRows` block (every entry stored)."""
        return CsrRows(self.indptr, self.cols, self.vals.copy(), self.size)

    def slice(self, start: int, stop: int) -> "DenseRows":
        """Rows ``start:stop`` (a view)."""
        return DenseRows(self.x[start:stop])

    def take(self, rows: np.ndarray) -> "DenseRows":
        """Rows in the order of the index array ``rows``."""
        return DenseRows(self.x[rows])

    @staticmethod
    def concat(blocks: List["Block"]) -> "Block":
        """Rows of every block, in order: a :class:`DenseRows` block when every block is
        one, else a :class:`CsrRows` block."""
        if len(blocks) == 1:
            return blocks[0]
        if all(isinstance(b, DenseRows) for b in blocks):
            return DenseRows(np.concatenate([b.x for b in blocks]))
        return CsrRows.concat(blocks)

    def without_nan_rows(self) -> "DenseRows":
        """The rows with no NaN value (``missing_values_handling='skip'``)."""
        bad = np.isnan(self.x).any(axis=1)
        return self if not bad.any() else DenseRows(self.x[~bad])

    def dense(self) -> np.ndarray:
        """The rows as a dense float32 matrix (rows x size); it may share memory with this
        block."""
        return self.x

    def dense_on(self, device: torch.device) -> torch.Tensor:
        """The rows as a dense float32 tensor on ``device``."""
        return to_device(self.x, device)

    def torch_csr(self) -> torch.Tensor:
        """A ``torch.sparse_csr`` tensor (rows x size) storing every entry, sharing nothing
        with this block."""
        return self.to_csr().torch_csr()


@dataclass
class RowIds:
    """Rows named by their position in a table kept in memory (:mod:`sparkae.data.memory`):
    the same ``slice``/``take``/``concat`` as :class:`CsrRows`, so that :func:`assemble`
    orders and cuts them exactly as it would the rows themselves."""

    ids: np.ndarray     # int64 row positions

    def __len__(self) -> int:
        return len(self.ids)

    def slice(self, start: int, stop: int) -> "RowIds":
        """Rows ``start:stop``."""
        return RowIds(self.ids[start:stop])

    def take(self, rows: np.ndarray) -> "RowIds":
        """Rows in the order of the index array ``rows``."""
        return RowIds(self.ids[rows])

    @staticmethod
    def concat(blocks: List["RowIds"]) -> "RowIds":
        """Rows of every block, in order."""
        return blocks[0] if len(blocks) == 1 else RowIds(np.concatenate([b.ids for b in blocks]))


Block = TypeVar("Block", CsrRows, DenseRows, RowIds)


def assemble(blocks: Iterable[Block], sizes: List[int],
             rng: Optional[np.random.Generator], window: int = 2) -> Iterator[Block]:
    """Cut a stream of row blocks into batches of the given ``sizes``.

    Parameters
    ----------
    blocks : iterable of CsrRows and DenseRows, or of RowIds
        The pieces of units a rank reads in an epoch, in order (row blocks, or row
        positions).
    sizes : list of int
        Batch sizes (:func:`sparkae.data.shards.batch_sizes`); a size of 0 repeats the
        previous batch (the padding case described there).
    rng : numpy Generator, optional
        Shuffles rows within each window of ``window`` blocks; None keeps the order.
    window : int
        Blocks shuffled together: memory holds about ``window`` units at a time.
    """
    pending: Optional[Block] = None
    pos, sizes = 0, list(sizes)
    last: Optional[Block] = None
    group: List[Block] = []

    def drain(final: bool) -> Iterator[Block]:
        nonlocal pending, pos, last
        while pos < len(sizes):
            need = sizes[pos]
            if need == 0:
                if last is None:
                    break
                pos += 1
                yield last
                continue
            have = len(pending) if pending is not None else 0
            if have < need and not final:
                return
            if have == 0:
                return
            take = min(need, have)
            last = pending.slice(0, take)
            pending = pending.slice(take, have)
            pos += 1
            yield last

    blocks = iter(blocks)
    while True:
        block = next(blocks, None)
        if block is not None and len(block):
            group.append(block)
        if group and (len(group) >= window or block is None):
            fresh = type(group[0]).concat(group)
            group = []
            if rng is not None:
                fresh = fresh.take(rng.permutation(len(fresh)))
            pending = fresh if pending is None or not len(pending) else type(fresh).concat(
                [pending, fresh])
            yield from drain(final=False)
        if block is None:
            break
    yield from drain(final=True)
