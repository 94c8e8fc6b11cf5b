"""Which rows each rank reads in an epoch, and in which batch sizes (pure NumPy).

A materialized table is a list of *units* (Parquet row groups). Every epoch the unit order
is permuted with a generator seeded by ``(seed, epoch)`` (the same on every rank), the
rows of the permuted units are laid end to end and cut into ``world_size`` contiguous
ranges whose lengths differ by at most one; rank ``r`` reads the units (or parts of
units) in range ``r``. So every row is seen exactly once per epoch across the ranks, and
a rank reads whole row groups except at the two ends of its range.

DistributedDataParallel needs every rank to take the same number of optimizer steps (a
rank that stops early leaves the others waiting in an all-reduce forever).
:func:`batch_sizes` gives every rank ``ceil(max_rows / batch_size)`` batches: full
batches first, the shortfall taken from the last ones, each at least one row.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np

#: (unit index, first row, end row) of one piece of a rank's range.
Piece = Tuple[int, int, int]


def rank_rows(total: int, world_size: int) -> List[int]:
    """Rows of each rank: ``total`` split into ``world_size`` counts that differ by <= 1."""
    base, extra = divmod(total, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def steps_per_epoch(total: int, world_size: int, batch_size: int) -> int:
    """Optimizer steps every rank takes per epoch."""
    return math.ceil(max(rank_rows(total, world_size)) / batch_size) if total else 0


def batch_sizes(rows: int, steps: int, batch_size: int) -> List[int]:
    """Split ``rows`` into exactly ``steps`` batches of at most ``batch_size`` rows.

    Full batches come first; the last batches give up rows so that each keeps at least
    one. When ``rows < steps`` (only possible with ``batch_size`` 1 and rows that do not
    divide evenly over the ranks) the missing batches are marked with size 0, and the
    reader repeats its previous batch for them.
    """
    if rows < steps:
        return [1] * rows + [0] * (steps - rows)
    sizes = []
    left = rows
    for i in range(steps):
        after = steps - i - 1
        take = min(batch_size, left - after)
        sizes.append(take)
        left -= take
    return sizes


def epoch_pieces(unit_rows: Sequence[int], epoch: int, seed: int, shuffle: bool,
                 rank: int, world_size: int) -> List[Piece]:
    """The pieces of units that ``rank`` reads in ``epoch``, in reading order.

    Parameters
    ----------
    unit_rows : sequence of int
        Rows of every unit, in the table's fixed (sorted) unit order.
    epoch, seed : int
        Seed the unit permutation (``shuffle``), identical on every rank.
    shuffle : bool
        Permute the units; otherwise they are read in their fixed order.
    rank, world_size : int
        This rank and the number of ranks.
    """
    rows = np.asarray(unit_rows, dtype=np.int64)
    order = (np.random.default_rng([seed, epoch]).permutation(len(rows)) if shuffle
             else np.arange(len(rows)))
    ends = np.cumsum(rows[order])
    starts = ends - rows[order]
    counts = rank_rows(int(ends[-1]) if len(ends) else 0, world_size)
    lo = sum(counts[:rank])
    hi = lo + counts[rank]
    pieces: List[Piece] = []
    for pos in np.flatnonzero((ends > lo) & (starts < hi)):
        a = max(lo, int(starts[pos])) - int(starts[pos])
        b = min(hi, int(ends[pos])) - int(starts[pos])
        pieces.append((int(order[pos]), a, b))
    return pieces
