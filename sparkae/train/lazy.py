"""A lazy, row-wise training step for wide sparse inputs with reconstruction sampling
(pure Torch; one rank).

With reconstruction sampling (:mod:`sparkae.nn.sampling`) a step's loss touches only a
few columns of the two wide matrices: the first layer's weight columns of the batch's
stored input columns, and the output layer's weight rows (and biases) of the stored plus
sampled output columns. :class:`LazyStep` gathers those slices as leaf tensors, runs the
forward and backward on them, and updates only them and their optimizer state (the lazy
update of ``torch.optim.SparseAdam``, here for adam, adadelta and sgd); every other
parameter goes through the usual optimizer. A step then costs the batch's entries, not
the width. Each wide tensor and its state share one packed buffer for the fit (see
:class:`LazyStep`), and with Numba the touched rows are updated where they lie
(:mod:`sparkae.train.rowkernel`): on 2 cores at 100,000 columns a fit runs 12-14x the
dense fit's rows/s, 7-8x with Torch ops alone (``bench/bench_training.py``).

The shift of the H2O scaling makes the first layer's exact gradient dense (a zero input
is ``-c`` once scaled: ``W z + b = W S + (b - W c)``). The lazy step therefore trains the
first layer's *effective* bias ``b' = b - W c`` as its own parameter, so that the
gradient of ``W`` touches only the stored columns; ``b = b' + W c`` is written back after
every step (``W c`` is kept up to date from the changed columns), so the network is
always the ordinary one. This reparametrization gives the same function and loss but a
different optimizer path from the dense step.

With several ranks (``num_workers > 1``) the gradients must be dense for their
all-reduce (:mod:`sparkae.train.gradsync`): there the loop keeps the sampled loss and
dense gradients (see :func:`sparkae.train.loop.train`).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.optim.adam import adam as adam_update

from sparkae.nn import sparse
from sparkae.nn.dense import AutoencoderNet
from sparkae.nn.sampling import SampledEntries, sampled_mse
from sparkae.train import rowkernel

log = logging.getLogger("sparkae")


def lazy_eligible(net: torch.nn.Module, cfg: Any, distributed: bool) -> Optional[str]:
    """None when the lazy step applies to this fit, else why not (for the log)."""
    if distributed:
        return "several ranks (their gradients are averaged dense)"
    if not isinstance(net, AutoencoderNet) or getattr(net, "dense_input", False):
        return f"architecture {cfg.architecture!r}"
    if cfg.l1 or cfg.l2:
        return "l1/l2 penalties (their gradients are dense)"
    if cfg.max_w2 < float("inf"):
        return "max_w2 (a full-width norm per step)"
    if cfg.contractive_lambda:
        return "contractive_lambda (uses the whole first layer)"
    return None


class _RowDot(torch.autograd.Function):
    """``h[rows[e]] . w[cols[e]]`` for every entry ``e`` (CPU, Numba): the sampled
    decoder without Torch's entries x width gather-multiply-sum temporaries."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, rows: torch.Tensor, w: torch.Tensor,
                cols: torch.Tensor) -> torch.Tensor:
        h, w = h.detach().contiguous(), w.detach().contiguous()
        out = torch.empty(rows.shape[0], dtype=h.dtype)
        rowkernel.row_dot(h.numpy(), rows.numpy(), w.numpy(), cols.numpy(), out.numpy())
        ctx.save_for_backward(h, rows, w, cols)
        return out

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        h, rows, w, cols = ctx.saved_tensors
        dh, dw = torch.empty_like(h), torch.empty_like(w)
        rowkernel.row_dot_backward(gy.contiguous().numpy(), h.numpy(), rows.numpy(),
                                   w.numpy(), cols.numpy(), dh.numpy(), dw.numpy())
        return dh, None, dw, None


class LazyStep:
    """The optimizer of a lazy sparse fit: row-wise state for the wide matrices, the
    loop's usual optimizer (``dense``) for everything else and the effective bias.

    Each wide tensor lives for the fit in one packed buffer, wide side first: row ``j``
    holds the parameter's slice ``j`` (the first layer's column ``j``, the output layer's
    row ``j`` or bias ``j``) followed by its optimizer state, so that a step moves a
    batch's rows with one gather and one scatter per tensor (three times fewer, and
    contiguous, against strided columns and separate state). The module's parameters are
    views of slot 0 meanwhile; :meth:`close` gives them their own contiguous storage back.

    Parameters
    ----------
    net : AutoencoderNet
    cfg : TrainConfig
    dense : callable
        ``dense(params)`` builds the usual optimizer over ``params``
        (:func:`sparkae.train.optim.make_optimizer`).
    row_kernel : bool, optional
        Update adam's rows in place with the Numba kernel of
        :mod:`sparkae.train.rowkernel` (CPU; the rows then cross memory once, not three
        times). Default: where Numba imports; False keeps Torch ops.
    """

    #: optimizer state slots per row: adam's ``exp_avg``, ``exp_avg_sq``; adadelta's
    #: ``square_avg``, ``acc_delta``; sgd's ``momentum_buffer`` (torch's names)
    SLOTS = {"adam": 2, "adadelta": 2, "sgd": 1}

    def __init__(self, net: AutoencoderNet, cfg: Any, dense,
                 row_kernel: Optional[bool] = None) -> None:
        self.net, self.cfg = net, cfg
        first, out = net.layers[0], net.output
        slots = self.SLOTS[cfg.optimizer]
        # (parameter, its wide side first): packed as (wide, 1 + slots, ...)
        params = {"w1": (first.weight, first.weight.detach().t()),
                  "w2": (out.weight, out.weight.detach()),
                  "b2": (out.bias, out.bias.detach())}
        self.buf: Dict[str, torch.Tensor] = {}
        for w, (param, wide) in params.items():
            buf = torch.zeros((wide.shape[0], 1 + slots) + tuple(wide.shape[1:]),
                              dtype=wide.dtype, device=wide.device)
            buf[:, 0].copy_(wide)
            param.data = buf[:, 0].t() if w == "w1" else buf[:, 0]
            self.buf[w] = buf
        skip = {id(first.weight), id(first.bias), id(out.weight), id(out.bias)}
        self.bias_eff = torch.zeros_like(first.bias, requires_grad=True)
        others = [p for p in net.parameters() if id(p) not in skip]
        self.dense = dense(others + [self.bias_eff])
        self._scratch: Dict[str, torch.Tensor] = {}
        cpu = all(b.device.type == "cpu" and b.dtype in (torch.float32, torch.float64)
                  for b in self.buf.values())
        if row_kernel is None or row_kernel:
            row_kernel = cfg.optimizer == "adam" and cpu and rowkernel.available()
        self.row_kernel = bool(row_kernel)
        log.info("lazy sparse step: %s", "Numba row kernel (adam in place)"
                 if self.row_kernel else "Torch gathers and scatters")
        self.steps = 0
        self.refresh()

    @property
    def param_groups(self) -> List[Dict[str, Any]]:
        """The usual optimizer's groups (the loop sets sgd's rate and momentum there)."""
        return self.dense.param_groups

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute ``W c`` from the whole first layer (once per epoch: no drift)."""
        self.wc = self.net.layers[0].weight @ sparse.offset(self.net.scaler)

    @torch.no_grad()
    def close(self) -> None:
        """Give the wide parameters their own contiguous storage back and drop the packed
        buffers (at the end of the fit, or when the loop leaves the lazy step)."""
        first, out = self.net.layers[0], self.net.output
        self._scratch, self.rows, self.leaf = {}, {}, {}
        for w, param in (("w1", first.weight), ("w2", out.weight), ("b2", out.bias)):
            if w in self.buf:
                param.data = param.data.contiguous()
                del self.buf[w]       # one buffer at a time: a bounded peak

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.dense.zero_grad(set_to_none=set_to_none)

    def forward(self, z: torch.Tensor, e: SampledEntries):
        """Loss and hidden activations of the CSR batch ``z`` on gathered leaf slices;
        :meth:`step` applies the update after ``loss.backward()``."""
        net = self.net
        col, val = z.col_indices(), z.values()
        u1, inv1 = torch.unique(col, return_inverse=True)
        u2, inv2 = torch.unique(e.cols, return_inverse=True)
        with torch.no_grad():
            self.bias_eff.copy_(net.layers[0].bias - self.wc)
        self.index = {"w1": u1, "w2": u2, "b2": u2}
        # the batch's packed rows, gathered slot-major ((1 + slots) x rows x ...: every
        # slot contiguous for the update), and the parameter slices as leaves
        # (the row kernel reads the state where it lies: only the parameter is gathered)
        self.rows = {w: self._gather(w, self.index[w], 1 if self.row_kernel else None)
                     for w in self.buf}
        self.leaf = {w: r[0].detach().requires_grad_() for w, r in self.rows.items()}
        w1 = self.leaf["w1"]

        def first(_: torch.Tensor) -> torch.Tensor:
            return F.embedding_bag(inv1, w1, z.crow_indices()[:-1], mode="sum",
                                   per_sample_weights=val.to(w1.dtype)) + self.bias_eff

        acts = net.hidden_activations(z, first=first)
        w2 = self.leaf["w2"]
        if self.row_kernel:
            def dot(h: torch.Tensor) -> torch.Tensor:
                return _RowDot.apply(h, e.rows, w2, inv2)
        else:
            def dot(h: torch.Tensor) -> torch.Tensor:
                return (F.embedding(e.rows, h) * F.embedding(inv2, w2)).sum(dim=1)
        y = net.decode_entries(acts[-1], e.rows, e.cols, dot=dot,
                               bias=self.leaf["b2"].index_select(0, inv2))
        return sampled_mse(y, e), acts

    @torch.no_grad()
    def step(self) -> None:
        """Update the gathered rows (row-wise optimizer), then everything else."""
        self.steps += 1
        group = self.dense.param_groups[0]
        if self.row_kernel:
            self._kernel_step(group)
        else:
            self._torch_step(group)
        self.dense.step()
        self.net.layers[0].bias.copy_(self.bias_eff + self.wc)
        self.leaf, self.rows = {}, {}

    def _grad(self, w: str) -> torch.Tensor:
        leaf = self.leaf[w]
        return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)

    def _torch_step(self, group: Dict[str, Any]) -> None:
        """The optimizer on the gathered rows, scattered back slot by slot (Torch ops)."""
        for w, rows in self.rows.items():
            idx = self.index[w]
            p = rows[0]             # the gathered parameter rows: updated in place
            if w == "w1":
                c = sparse.offset(self.net.scaler).index_select(0, idx)
                self.wc -= p.t() @ c                  # W c follows the changed columns
            self._update(p, self._grad(w), rows[1:], group)
            if w == "w1":
                self.wc += p.t() @ c
            for k in range(rows.shape[0]):
                self.buf[w][:, k].index_copy_(0, idx, rows[k])

    def _kernel_step(self, group: Dict[str, Any]) -> None:
        """Adam on the touched rows of every packed buffer, in place (Numba)."""
        for w, buf in self.buf.items():
            idx = self.index[w]
            n = idx.numel()
            delta = self._scratch_for(f"{w}.delta", (1, n) + tuple(buf.shape[2:]), buf)[0]
            rowkernel.adam_rows(buf.reshape(buf.shape[0], buf.shape[1], -1).numpy(),
                                idx.numpy(), self._grad(w).contiguous().reshape(n, -1).numpy(),
                                delta.reshape(n, -1).numpy(), self.steps, group["lr"],
                                group["betas"], group["eps"],
                                threads=torch.get_num_threads())
            if w == "w1":   # W c follows the changed columns
                self.wc += delta.t() @ sparse.offset(self.net.scaler).index_select(0, idx)

    def _scratch_for(self, key: str, shape: Tuple[int, ...], like: torch.Tensor
                     ) -> torch.Tensor:
        """A ``shape`` view of a buffer kept from step to step under ``key`` (grown by a
        quarter when a batch needs more along dim 1): a fresh multi-MiB tensor per step
        would be page-faulted in by the allocator every time."""
        out = self._scratch.get(key)
        if out is None or out.shape[0] != shape[0] or out.shape[1] < shape[1]:
            out = torch.empty((shape[0], shape[1] + shape[1] // 4) + tuple(shape[2:]),
                              dtype=like.dtype, device=like.device)
            self._scratch[key] = out
        return out[:, :shape[1]]

    def _gather(self, w: str, idx: torch.Tensor, slots: Optional[int] = None) -> torch.Tensor:
        """Rows ``idx`` of the packed buffer ``w`` (its first ``slots`` slots, default
        all), slot-major: ``slots x len(idx) x ...``, each slot contiguous, in a buffer
        kept from step to step (:meth:`_scratch_for`)."""
        buf, n = self.buf[w], idx.numel()
        slots = buf.shape[1] if slots is None else slots
        rows = self._scratch_for(w, (slots, n) + tuple(buf.shape[2:]), buf)
        for k in range(slots):   # slot by slot: contiguous writes, 2x one strided
            torch.index_select(buf[:, k], 0, idx, out=rows[k])
        return rows

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: torch.Tensor,
                group: Dict[str, Any]) -> None:
        """One optimizer update of the rows ``p`` (in place) with gradient ``g`` and their
        state ``state`` (slots x rows x ..., each slot contiguous; in place), by torch's
        formulas (adam through its fused kernel)."""
        cfg = self.cfg
        if cfg.optimizer == "adam":
            (b1, b2), eps, lr = group["betas"], group["eps"], group["lr"]
            adam_update([p], [g], [state[0]], [state[1]], [],
                        [torch.tensor(float(self.steps - 1), device=p.device)], fused=True,
                        amsgrad=False, beta1=b1, beta2=b2, lr=lr, weight_decay=0.0,
                        eps=eps, maximize=False)
            return
        if cfg.optimizer == "adadelta":
            rho, eps, lr = group["rho"], group["eps"], group["lr"]
            sq, acc = state[0], state[1]
            sq.mul_(rho).addcmul_(g, g, value=1 - rho)
            delta = acc.add(eps).sqrt_().div_(sq.add(eps).sqrt_()).mul_(g)
            acc.mul_(rho).addcmul_(delta, delta, value=1 - rho)
            p.add_(delta, alpha=-lr)
        else:
            mu, lr = group["momentum"], group["lr"]
            if not mu:
                p.add_(g, alpha=-lr)
                return
            buf = state[0]
            buf.mul_(mu).add_(g)
            p.add_(g.add(buf, alpha=mu) if group["nesterov"] else buf, alpha=-lr)

    def state_dict(self) -> Dict[str, Any]:
        """For checkpoints: the usual optimizer's state, the row-wise state (slots x wide
        x ...) and the step."""
        return {"lazy": True, "dense": self.dense.state_dict(),
                "rows": {w: b[:, 1:].transpose(0, 1) for w, b in self.buf.items()},
                "steps": self.steps}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not state.get("lazy"):
            raise ValueError("reconstruction_sampling: the checkpoint's optimizer state was "
                             "written without the lazy sparse step; resume with the same "
                             "reconstruction_sampling setting")
        self.dense.load_state_dict(state["dense"])
        with torch.no_grad():
            for k, v in state["rows"].items():
                self.buf[k][:, 1:].copy_(v.transpose(0, 1))
        self.steps = int(state["steps"])
        self.refresh()
