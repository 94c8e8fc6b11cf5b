"""The forward pass of scoring: raw feature rows in, the requested outputs out as NumPy.

Pure Torch and NumPy (no Spark). One forward pass computes every requested output and
skips what is not requested: ``deep_features`` alone stops at the coding layer. Sparse
rows with few stored entries enter the first layer as a CSR matrix (the input scaling is
folded into that layer's weights), so a 1,000,000-wide sparse row costs its stored
entries; outputs of full width (``reconstruction_mse``, ``feature_errors``,
``reconstruction``, ``is_anomaly``) are computed in passes of at most
:data:`PASS_ELEMENTS` values, which bounds a worker's memory for any width. Sparse rows'
``reconstruction_mse`` and ``is_anomaly`` alone (a linear output layer) need no
full-width output at all: :mod:`sparkae.scoring.sparse_mse`.

With ``clip`` (the ``clip_to_training_range`` Param) the scaled inputs are clamped into
each feature's scaled training range before the first layer, and every output sees the
clipped input: ``deep_features``, ``reconstruction`` and the errors, which are measured
against the clipped input. Sparse rows stay sparse (see :mod:`sparkae.nn.sparse`).
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from sparkae.data.arrow_rows import RowBlock
from sparkae.data.batches import index_on, scatter_on, to_device
from sparkae.nn import sparse as csr
from sparkae.nn.models import AutoencoderNet
from sparkae.scoring import sparse_mse

#: Largest number of values one dense tensor of a forward pass may hold (64 MiB of
#: float32); wider rows are scored in passes of fewer rows.
PASS_ELEMENTS = 1 << 24
#: Sparse rows whose stored entries are below this share of the width use a CSR first layer.
SPARSE_DENSITY = 0.05
#: The same share on the CPU when only hidden layers are asked for (``deep_features``): no
#: decoder runs, and the CSR first layer beat the dense one up to about 30 % stored (784
#: features, [100], 1 thread, by hand on 2026-12-05: 580k against 280k rows/s at 10 %,
#: 312k against 245k at 20 %, 230k against 218k at 30 %, 135k against 180k at 50 %).
SPARSE_DENSITY_ENCODER = 0.25
#: Columns of the first layer's weights folded with the scaling at a time (float64 sums).
_FOLD_COLUMNS = 1 << 16


def needs_full_width(outputs: Sequence[str]) -> bool:
    """Whether ``outputs`` need the decoder (anything besides ``deep_features``)."""
    return any(o != "deep_features" for o in outputs)


def _hidden_from_first(net: AutoencoderNet, pre1: torch.Tensor,
                       upto: Optional[int]) -> List[torch.Tensor]:
    """Hidden activations when the first layer's pre-activation is already computed."""
    last = len(net.layers) if upto is None else upto
    drops = list(getattr(net, "dropouts", [None] * len(net.layers)))  # identity in eval mode
    acts = [net.acts[0](pre1)]
    for i in range(1, last):
        z = drops[i - 1](acts[-1]) if drops[i - 1] is not None else acts[-1]
        acts.append(net.acts[i](net.layers[i](z)))
    return acts


def _outputs(net: AutoencoderNet, acts: List[torch.Tensor], z: Callable[[], torch.Tensor],
             outputs: Sequence[str], layer: int,
             threshold: Optional[float]) -> Dict[str, np.ndarray]:
    """The requested outputs from the hidden activations; ``z`` gives the scaled input
    (only called when an output needs it)."""
    out: Dict[str, np.ndarray] = {}
    if "deep_features" in outputs:
        out["deep_features"] = acts[layer - 1].cpu().numpy()
    if needs_full_width(outputs):
        y = net.decode_from_last(acts[-1])
        if "reconstruction" in outputs:
            out["reconstruction"] = net.scaler.unscale(y).cpu().numpy()
        # in place: y is the decoder's own new tensor (taken for ``reconstruction`` above);
        # ``(y - z) ** 2`` made two more full-width tensors per pass (0.076 s against
        # 0.029 s per 50,000 rows of [100] on one thread, docs/DESIGN.md section 7)
        err = y.sub_(z()).square_()
        mse = err.mean(dim=1).double().cpu().numpy()
        if "reconstruction_mse" in outputs:
            out["reconstruction_mse"] = mse
        if "feature_errors" in outputs:
            out["feature_errors"] = err.cpu().numpy()
        if "is_anomaly" in outputs:
            out["is_anomaly"] = mse > threshold
    return out


def score_matrix(net: AutoencoderNet, x: np.ndarray, outputs: List[str], layer: int,
                 threshold: Optional[float] = None, clip: bool = False
                 ) -> Dict[str, np.ndarray]:
    """Compute the requested outputs for raw feature rows ``x`` (rows x input width).

    Parameters
    ----------
    net : AutoencoderNet
        An evaluation-mode network (its scaler scales ``x``).
    x : ndarray
        Raw feature rows, one per row of the result.
    outputs : list of str
        Any of ``deep_features``, ``reconstruction_mse``, ``reconstruction``,
        ``feature_errors``, ``is_anomaly``.
    layer : int
        1-based hidden layer for ``deep_features``.
    threshold : float, optional
        Needed for ``is_anomaly`` (``reconstruction_mse > threshold``).
    clip : bool, default False
        Clamp the scaled inputs into the scaled training range first
        (``clip_to_training_range``).

    Returns
    -------
    dict of str to ndarray
        Only the requested outputs; the network runs once.
    """
    with torch.inference_mode():
        z = net.scaler(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        if clip:
            z = net.scaler.clip(z)
        upto = None if needs_full_width(outputs) else layer
        return _outputs(net, net.hidden_activations(z, upto=upto), lambda: z, outputs, layer,
                        threshold)


def _joined(parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """The outputs of consecutive passes joined (empty when there was none)."""
    if not parts:
        return {}
    return {o: np.concatenate([p[o] for p in parts]) for o in parts[0]}


def _scored_only(block: RowBlock, flags: List[torch.Tensor],
                 parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """The outputs of an unchecked block's scored rows: the passes' NaN / infinite row
    flags (2 x rows each, on the device) set the block's status."""
    f = (torch.cat(flags, dim=1).cpu().numpy() if flags else np.zeros((2, 0), dtype=bool))
    keep = block.mark_nonfinite(f[0], f[1])
    out = _joined(parts)
    if keep.all():
        return out
    return {o: v[keep] for o, v in out.items()}


def scatter_block(block: RowBlock, lo: int, hi: int, device: torch.device) -> torch.Tensor:
    """:meth:`RowBlock.to_dense` of rows ``lo:hi`` of a block of vectors, scattered on
    ``device`` from the stored entries (:func:`sparkae.data.batches.scatter_on`)."""
    starts = block.starts
    e0, e1 = int(starts[lo]), int(starts[hi])
    return scatter_on(block.lengths[lo:hi], block.cols[e0:e1], block.vals[e0:e1], block.size,
                      device)


class Scorer:
    """A network on this worker's device, with what its sparse first layer needs.

    Parameters
    ----------
    net : AutoencoderNet
        An evaluation-mode network; moved to ``device``.
    device : torch.device
        Where the forward passes run.

    Attributes
    ----------
    check_on_device : bool
        Whether dense rows reach :meth:`score` unchecked for NaN and infinite values
        (:func:`sparkae.data.arrow_rows.decode_rows` with ``check_finite=False``) and are
        checked on the device while they are scored; true on a GPU, where that check and
        the cast to float32 leave the worker's CPU (which bounded dense rows there).
    """

    def __init__(self, net: AutoencoderNet, device: torch.device) -> None:
        self.net, self.device = net.to(device), device
        self.check_on_device = device.type != "cpu"
        sc = net.scaler
        self.size, self.kept = int(sc.input_size), int(sc.keep.numel())
        self.keep_pos: Optional[np.ndarray] = None
        if not sc.all_kept:
            self.keep_pos = np.full(self.size, -1, dtype=np.int64)
            self.keep_pos[sc.keep.cpu().numpy()] = np.arange(self.kept)
        self.shift, self.scale = sc.shift, sc.scale
        self._first: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._clipped: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._gram: Dict[bool, sparse_mse.GramTerms] = {}
        shift, scale = sc.shift.double(), sc.scale.double()
        self.z_zero = (-shift * scale).float()  # scaled value of a stored zero
        # a missing (NaN) entry in raw units: what the scaler's imputation maps it to
        self.raw_impute = (shift + sc.impute.double() / scale).float().cpu().numpy() \
            if hasattr(sc, "impute") else None

    def first_layer(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(W * scale)^T`` and ``b - W @ (shift * scale)``, built on first sparse use:
        ``layer1((x - shift) * scale) = x @ (W * scale)^T + (b - W @ (shift * scale))``."""
        if self._first is None:
            w, b = self.net.layers[0].weight, self.net.layers[0].bias
            offset = (self.shift.double() * self.scale.double())
            b_eff = b.double().clone()
            for i in range(0, w.shape[1], _FOLD_COLUMNS):
                b_eff -= w[:, i:i + _FOLD_COLUMNS].double() @ offset[i:i + _FOLD_COLUMNS]
            self._first = ((w * self.scale).t().contiguous(), b_eff.float())
        return self._first

    def clipped_first(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``z0`` (:func:`sparkae.nn.sparse.clipped_zero`) and ``b + W @ z0``, the first
        layer's bias for clipped sparse rows, built on first use:
        ``layer1(z0 + U) = (U / scale) @ (W * scale)^T + (b + W @ z0)``."""
        if self._clipped is None:
            w, b = self.net.layers[0].weight, self.net.layers[0].bias
            z0 = csr.clipped_zero(self.net.scaler)
            z0d = z0.double()
            b_eff = b.double().clone()
            for i in range(0, w.shape[1], _FOLD_COLUMNS):
                b_eff += w[:, i:i + _FOLD_COLUMNS].double() @ z0d[i:i + _FOLD_COLUMNS]
            self._clipped = (z0, b_eff.float())
        return self._clipped

    def rows_per_pass(self, batch_size: int, width: int) -> int:
        """Rows of one pass: ``batch_size``, fewer when a pass would exceed
        :data:`PASS_ELEMENTS` values of ``width`` each (at least one)."""
        return max(1, min(batch_size, PASS_ELEMENTS // max(1, width)))

    def score(self, block: RowBlock, outputs: List[str], layer: int,
              threshold: Optional[float], batch_size: int,
              clip: bool = False) -> Dict[str, np.ndarray]:
        """Outputs for the scored rows of ``block``, in passes of at most ``batch_size``;
        with ``clip`` the scaled inputs are clamped into the scaled training range first.

        Returns
        -------
        dict of str to ndarray
            One entry per requested output, one row per scored row of ``block``; empty
            when ``block`` has no row to score. A block of unchecked dense rows
            (``block.checked`` false) is checked on the device as it is scored: its rows
            with NaN or infinite values get their status
            (:meth:`~sparkae.data.arrow_rows.RowBlock.mark_nonfinite`) and their results
            are left out.
        """
        full = needs_full_width(outputs)
        share = (SPARSE_DENSITY_ENCODER if not full and self.device.type == "cpu"
                 else SPARSE_DENSITY)
        # the CSR first layer is the dense network's; other families score densified rows
        sparse = (getattr(self.net, "supports_csr_scoring", True) and block.dense is None and
                  block.nnz < share * max(1, block.rows) * self.kept)
        parts: List[Dict[str, np.ndarray]] = []
        with torch.inference_mode():
            if sparse:
                lengths, cols, vals = self._kept_entries(block)
                starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
                gram = self.gram_applies(outputs)
                step = (self.rows_per_pass(batch_size, self.kept) if full and not gram
                        else batch_size)
                for lo in range(0, block.rows, step):
                    hi = min(block.rows, lo + step)
                    parts.append(self._sparse_pass(starts, cols, vals, lo, hi, outputs, layer,
                                                   threshold, full, clip, gram))
            else:
                step = self.rows_per_pass(batch_size, self.size)
                flags: List[torch.Tensor] = []
                for lo in range(0, block.rows, step):
                    x = self.dense_rows(block, lo, min(block.rows, lo + step))
                    if not block.checked:
                        flags.append(torch.stack((torch.isnan(x).any(dim=1),
                                                  torch.isinf(x).any(dim=1))))
                    z = self.net.scaler(x)
                    if clip:
                        z = self.net.scaler.clip(z)
                    acts = self.net.hidden_activations(z, upto=None if full else layer)
                    parts.append(_outputs(self.net, acts, lambda: z, outputs, layer, threshold))
                if not block.checked:
                    return _scored_only(block, flags, parts)
        return _joined(parts)

    def dense_rows(self, block: RowBlock, lo: int, hi: int) -> torch.Tensor:
        """Scored rows ``lo:hi`` of ``block`` as a dense float32 matrix on the device. On a
        GPU, vectors' stored entries travel and are scattered there: fewer bytes to copy
        than the dense rows and no scatter on the worker's CPU (on an H200, sparse
        vectors of MNIST scored at 0.19x a plain forward when densified on the CPU)."""
        if self.device.type == "cpu" or block.dense is not None:
            return to_device(block.to_dense(lo, hi), self.device, np.float32)
        return scatter_block(block, lo, hi, self.device)

    def gram_applies(self, outputs: Sequence[str]) -> bool:
        """Whether sparse rows' ``outputs`` come from :mod:`sparkae.scoring.sparse_mse`
        (no full-width reconstruction): only ``reconstruction_mse``, ``is_anomaly`` and
        ``deep_features`` are asked for, and the output layer is linear."""
        return (needs_full_width(outputs)
                and set(outputs) <= {"deep_features", "reconstruction_mse", "is_anomaly"}
                and isinstance(getattr(self.net, "output", None), torch.nn.Linear)
                and getattr(self.net, "output_act", True) is None)

    def gram_terms(self, clip: bool) -> sparse_mse.GramTerms:
        """The output layer's :func:`sparkae.scoring.sparse_mse.gram_terms` against the
        scaled zeros (clipped ones with ``clip``), built on first use."""
        if clip not in self._gram:
            zero = self.clipped_first()[0] if clip else self.z_zero
            self._gram[clip] = sparse_mse.gram_terms(self.net.output.weight,
                                                     self.net.output.bias, zero)
        return self._gram[clip]

    def _kept_entries(self, block: RowBlock) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sparse components restricted to the modelled features, in network column order."""
        lengths, kc, vals = block.lengths, block.cols, block.vals
        if self.keep_pos is not None:
            kc = self.keep_pos[block.cols]
            m = kc >= 0
            if not m.all():
                rows = np.repeat(np.arange(block.rows), block.lengths)
                lengths, kc, vals = np.bincount(rows[m], minlength=block.rows), kc[m], vals[m]
        missing = np.isnan(vals)
        if missing.any():  # mean imputation, folded into the raw value
            vals = vals.copy()
            vals[missing] = (self.raw_impute[kc[missing]] if self.raw_impute is not None
                             else 0.0)
        return lengths, kc, vals

    def _sparse_pass(self, starts: np.ndarray, cols: np.ndarray, vals: np.ndarray, lo: int,
                     hi: int, outputs: List[str], layer: int, threshold: Optional[float],
                     full: bool, clip: bool = False,
                     gram: bool = False) -> Dict[str, np.ndarray]:
        """Outputs for scored rows ``lo:hi`` through the CSR first layer; with ``clip`` the
        stored entries are clamped and implicit zeros read as ``z0`` (still sparse); with
        ``gram`` (:meth:`gram_applies`) the errors come without a full-width output."""
        e0, e1 = int(starts[lo]), int(starts[hi])
        n, dev = hi - lo, self.device
        c, v = index_on(cols[e0:e1], dev), to_device(vals[e0:e1], dev)
        crow = to_device(starts[lo:hi + 1] - e0, dev)
        w_eff_t, b_eff = self.first_layer()
        zero, stored = self.z_zero, None
        if clip:   # z' = z0 + U: U's entries in raw units, for the folded (W * scale)^T
            zero, b_eff = self.clipped_first()
            stored = csr.clip_stored(self.net.scaler, c, (v - self.shift[c]) * self.scale[c])
            v = (stored - zero[c]) / self.scale[c]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            x = torch.sparse_csr_tensor(crow, c, v, size=(n, self.kept))
            pre1 = torch.sparse.mm(x, w_eff_t) + b_eff
        acts = _hidden_from_first(self.net, pre1, None if full else layer)
        if gram:
            s = stored if clip else (v - self.shift[c]) * self.scale[c]
            mse = (sparse_mse.squared_error(self.gram_terms(clip), acts[-1], crow, c, s)
                   / self.kept).cpu().numpy()
            out = _outputs(self.net, acts, lambda: None,
                           [o for o in outputs if o == "deep_features"], layer, threshold)
            if "reconstruction_mse" in outputs:
                out["reconstruction_mse"] = mse
            if "is_anomaly" in outputs:
                out["is_anomaly"] = mse > threshold
            return out

        def z() -> torch.Tensor:
            rows = torch.repeat_interleave(torch.arange(n, device=dev), crow.diff())
            dense = zero.expand(n, self.kept).clone()
            dense[rows, c] = stored if clip else (v - self.shift[c]) * self.scale[c]
            return dense
        return _outputs(self.net, acts, z, outputs, layer, threshold)
