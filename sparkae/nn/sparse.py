"""Sparse CSR input batches through the network (pure Torch).

A wide, mostly-zero input stays sparse from Parquet into the first layer. The H2O scaling
``z = (x - m) * s`` would turn every zero into ``-m * s``, so a sparse batch is kept in
the *unshifted* scaled space ``S = x * s`` (as sparse as ``x``) and the shift
``c = m * s`` moves into the network:

- the first layer computes ``W z + b = W S + (b - W c)``; ``W S`` gathers only the
  columns of ``W`` that the batch's stored entries touch (:func:`first_layer`);
- the reconstruction is returned in the same unshifted space, ``y_u = y + c``
  (:func:`unshift`), so that ``y_u - S = y - z`` exactly.

The reconstruction target is therefore H2O's: every modelled feature of the scaled row,
its zeros (which scale to ``-m * s``) included, and the loss equals the dense path's.
:func:`reconstruction_mse` and :func:`row_mse` compute it from the dense ``y_u`` and the
sparse ``S`` as ``sum(y_u^2) + sum over stored entries of ((y_u - v)^2 - y_u^2)``: the
output side is dense (batch x kept), the input side never is.

Scoring with ``clip_to_training_range`` clamps every scaled input into its feature's
training range ``[lo, hi]`` (the scaler's buffers). A CSR batch stays sparse: the clipped
batch is ``z' = z0 + U``, where ``z0`` is the clipped value of an implicit zero
(:func:`clipped_zero`) and ``U`` has the batch's stored entries only
(``clip_stored(z) - z0``), so the first layer is ``W U + (b + W z0)``. An implicit zero
scales to ``-c``, which is inside ``[lo, hi]`` exactly when the feature's raw training
minimum <= 0 <= maximum (every ``standardize`` mode scales increasingly); that holds for
any feature that some training row leaves at zero (Spark's Summarizer counts a sparse
vector's implicit zeros), but not for one stored with the same sign in every training row:
there ``z0`` is the nearer bound, not ``-c``, and the decomposition above still holds.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


def is_sparse(t: object) -> bool:
    """True for a ``torch.sparse_csr`` tensor."""
    return isinstance(t, torch.Tensor) and t.layout == torch.sparse_csr


def offset(scaler: nn.Module) -> torch.Tensor:
    """``c = shift * scale``: what the scaling subtracts from every kept feature."""
    return scaler.shift * scaler.scale


def _positions(scaler: nn.Module) -> torch.Tensor:
    """Input column -> kept feature position, or -1 for a feature left out (cached)."""
    cached = getattr(scaler, "_sparse_positions", None)
    if cached is not None and cached[0] is scaler.keep and cached[1].device == scaler.keep.device:
        return cached[1]
    pos = torch.full((scaler.input_size,), -1, dtype=torch.long, device=scaler.keep.device)
    pos[scaler.keep] = torch.arange(scaler.keep.numel(), device=scaler.keep.device)
    scaler._sparse_positions = (scaler.keep, pos)
    return pos


def _parts(s: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(row of every entry, column, value, row pointers)`` of a CSR tensor."""
    crow, col, val = s.crow_indices(), s.col_indices(), s.values()
    rows = torch.repeat_interleave(torch.arange(s.shape[0], device=crow.device), crow.diff())
    return rows, col, val, crow


def scale(scaler: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Scale a raw CSR batch (rows x input width) to ``S = x[:, keep] * scale``, CSR (rows x
    kept). A NaN entry becomes the value whose shifted form is the scaler's ``impute``."""
    rows, col, val, _ = _parts(x)
    pos = _positions(scaler)[col]
    kept = pos >= 0
    if not bool(kept.all()):
        rows, pos, val = rows[kept], pos[kept], val[kept]
    v = val.to(scaler.scale.dtype) * scaler.scale[pos]
    nan = torch.isnan(v)
    if bool(nan.any()):
        impute = getattr(scaler, "impute", torch.zeros_like(scaler.scale))
        v = torch.where(nan, (impute + offset(scaler))[pos], v)
    n = x.shape[0]
    crow = torch.zeros(n + 1, dtype=torch.long, device=v.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return torch.sparse_csr_tensor(crow, pos, v, size=(n, scaler.keep.numel()),
                                   check_invariants=False)


def first_layer(layer: nn.Linear, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``layer(S - c)`` for a CSR batch ``S`` without densifying it: the weight columns of
    the stored entries are gathered, weighted and summed per row, then ``b - W c`` added."""
    rows, col, val, _ = _parts(s)
    picked = layer.weight.index_select(1, col) * val           # (out, stored entries)
    out = torch.zeros(layer.weight.shape[0], s.shape[0], dtype=picked.dtype,
                      device=picked.device).index_add_(1, rows, picked)
    return out.t() + (layer.bias - layer.weight @ c)


def unshift(y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The reconstruction in the unshifted space of a sparse batch: ``y + c``."""
    return y + c


def _row_sums(y_u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    rows, col, val, _ = _parts(s)
    at = y_u[rows, col]
    fix = torch.zeros(y_u.shape[0], dtype=y_u.dtype, device=y_u.device).index_add_(
        0, rows, (at - val) ** 2 - at ** 2)
    return (y_u * y_u).sum(dim=1) + fix


def row_mse(y_u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared error between the dense ``y_u`` and the CSR target ``S``."""
    return _row_sums(y_u, s) / y_u.shape[1]


def reconstruction_mse(y_u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Mean squared error over rows and features (the dense ``mse_loss`` of ``y - z``)."""
    return _row_sums(y_u, s).sum() / y_u.numel()


def clipped_zero(scaler: nn.Module) -> torch.Tensor:
    """``z0 = clamp(-c, lo, hi)``: an implicit zero's scaled value clamped into the scaled
    training range of each kept feature (``-c`` itself where the raw training range holds 0)."""
    return torch.clamp(-offset(scaler), scaler.lo, scaler.hi)


def clip_stored(scaler: nn.Module, cols: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Scaled values ``z`` of stored entries at kept positions ``cols``, clamped into their
    features' scaled training range ``[lo, hi]``."""
    return torch.clamp(z, scaler.lo[cols], scaler.hi[cols])


def densify(s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The dense scaled batch ``z = S - c`` (for tests and small batches only)."""
    return s.to_dense() - c
