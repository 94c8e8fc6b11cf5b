"""Reconstruction sampling for sparse batches (pure Torch).

Dauphin, Glorot & Bengio (2011), "Large-Scale Learning of Embeddings with Reconstruction
Sampling": for a wide sparse input, the reconstruction loss of a row is computed on its
stored (nonzero) columns plus ``k`` columns drawn uniformly from the rest, each drawn
column weighted by ``(columns not stored) / k``. The weighted sum is an unbiased estimate of
the row's full sum of squared errors, and the decoder computes only those ``(row, column)``
outputs (rows of the output weight are gathered), never a batch x full-width matrix.

Everything here lives in the *unshifted* scaled space of :mod:`sparkae.nn.sparse`: a
column a row does not store has target ``0`` there (its scaled zero ``-shift * scale``
plus the offset ``c = shift * scale``), and the reconstruction of an entry is ``y + c``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class SampledEntries:
    """The ``(row, column)`` outputs a sampled loss needs, with targets and weights.

    Attributes
    ----------
    rows, cols : Tensor of int64
        Row of every entry in the batch, and its column among the modelled features.
    target : Tensor
        The stored scaled value (unshifted space) of a stored entry; 0 for a sampled one.
    weight : Tensor
        1 for a stored entry; ``(width - stored in the row) / k`` for a sampled one.
    n_rows, width : int
        Rows of the batch and modelled features (the loss is a mean over both).
    """

    rows: torch.Tensor
    cols: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor
    n_rows: int
    width: int


def sample_entries(s: torch.Tensor, k: int,
                   generator: Optional[torch.Generator] = None) -> SampledEntries:
    """The stored entries of the CSR batch ``s`` plus ``k`` columns per row drawn uniformly
    (with replacement) from the columns the row does not store.

    The ``r``-th column a row does not store is ``r + #{m : s_m - m <= r}`` for its stored
    columns ``s_0 < s_1 < ...``: one ``searchsorted`` over the batch's stored entries,
    without any rows x width array. A row that stores every column draws nothing (its
    draws get weight 0).

    Parameters
    ----------
    s : Tensor
        ``torch.sparse_csr`` batch (rows x modelled features), unshifted scaled values;
        the columns of a row must be distinct.
    k : int
        Columns drawn per row (>= 1).
    generator : torch.Generator, optional
        Source of the draws.
    """
    if k < 1:
        raise ValueError(f"reconstruction_sampling: got {k!r}, expected an integer >= 1")
    n, width = int(s.shape[0]), int(s.shape[1])
    crow, col, val = s.crow_indices(), s.col_indices(), s.values()
    dev = crow.device
    lengths = crow.diff()
    rows = torch.repeat_interleave(torch.arange(n, device=dev), lengths)
    # stored columns sorted within each row, as one increasing key per entry
    stride = width + 1
    key = torch.sort(rows * stride + col).values
    sorted_col = key - rows * stride
    within = torch.arange(col.numel(), device=dev) - crow[:-1].index_select(0, rows)
    gaps = rows * stride + (sorted_col - within)            # row * stride + (s_m - m)
    rest = width - lengths                                  # columns a row does not store
    draw = torch.rand((n, k), generator=generator, device=dev, dtype=torch.float64)
    r = (draw * rest.unsqueeze(1)).long().clamp_max((rest - 1).clamp_min(0).unsqueeze(1))
    qrow = torch.arange(n, device=dev).unsqueeze(1).expand(n, k)
    before = torch.searchsorted(gaps, qrow * stride + r, right=True) - crow[:-1].unsqueeze(1)
    picked = (r + before).clamp_max(width - 1).reshape(-1)
    w = (rest.to(val.dtype) / k).unsqueeze(1).expand(n, k).reshape(-1)
    return SampledEntries(
        rows=torch.cat([rows, qrow.reshape(-1)]),
        cols=torch.cat([col, picked]),
        target=torch.cat([val, torch.zeros(n * k, dtype=val.dtype, device=dev)]),
        weight=torch.cat([torch.ones_like(val), w]),
        n_rows=n, width=width)


def sampled_mse(y: torch.Tensor, e: SampledEntries) -> torch.Tensor:
    """Unbiased estimate of the batch's reconstruction MSE (mean over rows and modelled
    features) from the reconstructions ``y`` of the entries ``e`` (unshifted space)."""
    return ((y - e.target) ** 2 * e.weight).sum() / (e.n_rows * e.width)
