"""The reconstruction error of sparse rows without a full-width reconstruction (pure Torch).

A sparse row's scaled input is a dense vector ``zero`` (every feature's scaled zero) plus
its stored entries; a linear output layer reconstructs ``y = W h + b``. The squared error
over all ``D`` modelled features splits into a part that is the same quadratic form for
every row and a correction on the row's stored columns::

    sum_j (y_j - z_j)^2 = h'Gh + 2 u'h + beta                       (z = zero everywhere)
                        + sum_{c stored} (y_c - s_c)^2 - (y_c - zero_c)^2

with ``G = W'W``, ``u = W'(b - zero)`` and ``beta = |b - zero|^2`` computed once per model.
A row costs ``k^2 + stored * k`` multiply-adds (``k``: the last hidden layer's width)
instead of ``D * k``: on 100,000 features, 20 stored and ``k = 256``, about 360 times fewer,
and no batch x ``D`` tensor. Sums run in float64: the quadratic form and the correction are
of the order of ``D`` while the error of a well-fitted row can be much smaller.

It holds only for a linear output layer (``output_activation="linear"``, the default) and
for ``reconstruction_mse`` / ``is_anomaly``; ``feature_errors`` and ``reconstruction`` need
every output, and :class:`sparkae.scoring.forward.Scorer` computes those the usual way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

#: Rows of ``W`` multiplied at a time when forming ``G`` (bounds the float64 copy).
_GRAM_ROWS = 1 << 15
#: Values of the ``entries x k`` float64 products formed at once where the stored entries'
#: outputs are gathered (:func:`stored_outputs` off the CPU): 8 MiB.
GATHER_VALUES = 1 << 20


@dataclass
class GramTerms:
    """``G = W'W``, ``u = W'(b - zero)``, ``beta = |b - zero|^2`` (float64), with the
    output layer's float64 weights and bias for the stored columns' outputs."""

    gram: torch.Tensor
    u: torch.Tensor
    beta: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    zero: torch.Tensor


def gram_terms(weight: torch.Tensor, bias: torch.Tensor, zero: torch.Tensor) -> GramTerms:
    """The per-model terms of the output layer ``y = weight @ h + bias`` (``weight``:
    D x k) against the scaled zeros ``zero`` (D)."""
    w, b, z0 = weight.double(), bias.double(), zero.double()
    d = b - z0
    k = w.shape[1]
    gram = torch.zeros(k, k, dtype=torch.float64, device=w.device)
    u = torch.zeros(k, dtype=torch.float64, device=w.device)
    for i in range(0, w.shape[0], _GRAM_ROWS):
        part = w[i:i + _GRAM_ROWS]
        gram += part.t() @ part
        u += part.t() @ d[i:i + _GRAM_ROWS]
    return GramTerms(gram, u, d @ d, w, b, z0)


def stored_outputs(terms: GramTerms, h: torch.Tensor, crow: torch.Tensor,
                   cols: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The output layer's value ``W[c] . h_row + b[c]`` at each stored entry (float64, in
    entry order; ``rows``: each entry's row, as ``crow`` gives it).

    On the CPU it is ``h W'`` sampled at the stored columns
    (``torch.sparse.sampled_addmm``), one dot product per entry and no ``entries x k``
    tensor: the gather of both factors it replaces allocated two such float64 tensors
    per pass (64 MB each at 1,024 rows of 784 features, 10 % stored) and scored 7-55
    times slower (docs/DESIGN.md section 7). Elsewhere, and where Torch lacks it, the
    factors are gathered in slices of :data:`GATHER_VALUES` values.
    """
    n, k = h.shape
    if h.device.type == "cpu":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                # the columns are the decoder's checked, in-range kept columns
                mask = torch.sparse_csr_tensor(
                    crow, cols, torch.zeros(cols.numel(), dtype=h.dtype),
                    size=(n, len(terms.bias)), check_invariants=False)
                y = torch.sparse.sampled_addmm(mask, h, terms.weight.t()).values()
            return y + terms.bias.index_select(0, cols)
        except (RuntimeError, NotImplementedError):   # a Torch without it here
            pass
    step = max(1, GATHER_VALUES // max(1, k))
    parts = [(h.index_select(0, rows[a:a + step])
              * terms.weight.index_select(0, cols[a:a + step])).sum(dim=1)
             for a in range(0, cols.numel(), step)]
    return torch.cat(parts) + terms.bias.index_select(0, cols)


def squared_error(terms: GramTerms, h: torch.Tensor, crow: torch.Tensor, cols: torch.Tensor,
                  stored: torch.Tensor) -> torch.Tensor:
    """Each row's sum of squared errors over all modelled features (float64).

    Parameters
    ----------
    terms : GramTerms
        From :func:`gram_terms`.
    h : Tensor of shape (rows, k)
        The last hidden layer's activations.
    crow, cols : Tensor of int64
        CSR row pointers (rows + 1) and the stored entries' columns.
    stored : Tensor
        The stored entries' scaled values (what the row's input holds there).
    """
    h = h.double()
    n = h.shape[0]
    err = ((h @ terms.gram) * h).sum(dim=1) + 2.0 * (h @ terms.u) + terms.beta
    if cols.numel():
        rows = torch.repeat_interleave(torch.arange(n, device=h.device), crow.diff())
        y = stored_outputs(terms, h, crow, cols, rows)
        s = stored.double()
        corr = (y - s) ** 2 - (y - terms.zero.index_select(0, cols)) ** 2
        err = err.index_add(0, rows, corr)
    return err.clamp_min(0.0)
