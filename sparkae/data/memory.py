"""A rank's training rows kept in memory from one epoch to the next, when they fit a budget.

:class:`~sparkae.data.converter.ParquetBatches` reads, decodes, shuffles and densifies
every row group it needs in every epoch, batch by batch. When the whole table fits in
:func:`budget_bytes` as the loop's input (rows x width float32; every rank may read any
row group over the epochs, so the whole table counts), :class:`MemoryEpochs` does that
work once per row group instead: the first time a row group is needed it is decoded,
densified and passed through ``transform`` (the network's scaler) in chunks, and the
result is stored in one tensor. Every batch is then one gather of rows from that tensor.

The batches are the streaming reader's, row for row: the same pieces of row groups, the
same window shuffles and the same batch sizes, computed on row positions
(:class:`~sparkae.data.batches.RowIds`) by the very code that orders the rows themselves
(:meth:`ParquetBatches.row_batches <sparkae.data.converter.ParquetBatches.row_batches>`).
The transform applies row by row (selection, shift, scale, imputation), so a row scaled in
a chunk is bit-identical to the same row scaled in its batch.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from sparkae.data.batches import CsrRows, RowIds, to_device
from sparkae.data.converter import ParquetBatches, close

log = logging.getLogger("sparkae")

#: Most bytes one rank keeps in memory by default (see :func:`budget_bytes`).
EPOCH_MEMORY_BYTES = 1 << 30
#: Share of the memory available on the machine a rank keeps at most by default.
EPOCH_MEMORY_SHARE = 0.25
#: Most bytes of one raw (dense, full-width) chunk while row groups are loaded.
CHUNK_BYTES = 16 << 20

Transform = Callable[[torch.Tensor], torch.Tensor]


def available_bytes() -> Optional[int]:
    """Memory available on this machine (``MemAvailable`` of ``/proc/meminfo``), or None
    where that is not known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def budget_bytes(setting: Optional[int] = None) -> int:
    """The bytes a rank may keep in memory: ``setting`` when given (0: never), else the
    smaller of :data:`EPOCH_MEMORY_BYTES` and :data:`EPOCH_MEMORY_SHARE` of the memory
    available now.

    Raises
    ------
    ValueError
        ``setting`` is negative.
    """
    if setting is not None:
        if setting < 0:
            raise ValueError(f"epoch_memory: got {setting}, expected a number of bytes >= 0 "
                             "(0 streams every epoch from the materialized files)")
        return int(setting)
    free = available_bytes()
    share = EPOCH_MEMORY_BYTES if free is None else int(free * EPOCH_MEMORY_SHARE)
    return min(EPOCH_MEMORY_BYTES, share)


def table_bytes(source: ParquetBatches, width: int) -> int:
    """Bytes of ``source``'s whole table held as ``width`` float32 columns per row."""
    return source.total_rows * width * 4


class MemoryEpochs:
    """Every epoch of ``source`` as batches gathered from rows kept in memory.

    Parameters
    ----------
    source : ParquetBatches
        The streaming reader (dense batches) whose batches this yields, in its order.
    transform : callable
        Applied once to each chunk of raw dense rows (float32, rows x ``source.size``),
        e.g. the network's scaler; it must treat rows independently.
    device : torch.device, optional
        Where the rows are kept and the batches are made (default CPU).
    skip_missing : bool
        Leave out of every batch the rows that hold a missing (NaN) raw value, as
        :func:`sparkae.train.inputs.drop_missing` does to a streamed batch.

    Raises
    ------
    ValueError
        ``source`` yields sparse batches.
    """

    def __init__(self, source: ParquetBatches, transform: Transform,
                 device: Optional[torch.device] = None, skip_missing: bool = False) -> None:
        if source.sparse:
            raise ValueError("MemoryEpochs: the source yields sparse CSR batches; only dense "
                             "batches are kept in memory")
        self.source, self.transform = source, transform
        self.device = device or torch.device("cpu")
        with torch.no_grad():   # the transform's output width, from one row
            probe = transform(torch.zeros(1, source.size, device=self.device))
        self.width = int(probe.shape[1])
        rows = [u.rows for u in source.units]
        self.starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)]).astype(np.int64)
        # pages are touched only as row groups load: a rank holds what it has read so far
        self.rows = torch.empty((source.total_rows, self.width), dtype=probe.dtype,
                                device=self.device)
        self.missing = np.zeros(source.total_rows, dtype=bool) if skip_missing else None
        self.loaded = np.zeros(len(rows), dtype=bool)
        self.chunk = max(1, CHUNK_BYTES // max(1, 4 * source.size))
        #: After the first epoch, send each epoch's row ids in one copy (on a GPU).
        self.whole_epoch_ids = self.device.type != "cpu"

    @property
    def nbytes(self) -> int:
        """Bytes of the kept rows once every row group is loaded."""
        return self.rows.numel() * self.rows.element_size()

    def _load(self, index: int, block: CsrRows) -> None:
        first = int(self.starts[index])
        with torch.no_grad():
            for a in range(0, len(block), self.chunk):
                b = min(len(block), a + self.chunk)
                raw = block.slice(a, b).dense_on(self.device)
                if self.missing is not None:
                    self.missing[first + a:first + b] = (
                        torch.isnan(raw).any(dim=1).cpu().numpy())
                self.rows[first + a:first + b] = self.transform(raw)
        self.loaded[index] = True

    def _blocks(self, epoch: int) -> Iterator[RowIds]:
        pieces = self.source.pieces(epoch)
        # the units not loaded yet, read in the background in the order they are needed
        blocks = self.source.read_ahead([i for i, _, _ in pieces if not self.loaded[i]])
        for index, start, stop in pieces:
            if not self.loaded[index]:
                self._load(index, next(blocks))
            first = int(self.starts[index])
            yield RowIds(np.arange(first + start, first + stop, dtype=np.int64))
        close(blocks)

    def epoch(self, epoch: int = 0) -> Iterator[torch.Tensor]:
        """Yield the batches of one epoch: transformed rows (rows x :attr:`width`), exactly
        the rows, order and batch sizes of ``source.epoch(epoch)`` (without the rows that
        hold a missing value, with ``skip_missing``)."""
        batches = (self._ids(b) for b in self.source.row_batches(epoch, self._blocks(epoch)))
        if not (self.whole_epoch_ids and
                all(self.loaded[i] for i, _, _ in self.source.pieces(epoch))):
            for ids in batches:
                yield self.rows.index_select(0, to_device(ids, self.device))
            return
        # every row loaded: the epoch's row ids reach the device in one copy, not one per
        # batch (each copy costs the step loop a few microseconds of host work on a GPU)
        ids = list(batches)
        flat = to_device(np.concatenate(ids) if ids else np.zeros(0, np.int64), self.device)
        for part in torch.split(flat, [len(i) for i in ids]):
            yield self.rows.index_select(0, part)

    def _ids(self, batch: RowIds) -> np.ndarray:
        if self.missing is None:
            return batch.ids
        return batch.ids[~self.missing[batch.ids]]

    def __len__(self) -> int:
        return len(self.source)
