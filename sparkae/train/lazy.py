"""A lazy, row-wise training step for wide sparse inputs with reconstruction sampling
(pure Torch; one rank).

With reconstruction sampling (:mod:`sparkae.nn.sampling`) a step's loss touches only a
few columns of the two wide matrices: the first layer's weight columns of the batch's
stored input columns, and the output layer's weight rows (and biases) of the stored plus
sampled output columns. :class:`LazyStep` gathers those slices as leaf tensors, runs the
forward and backward on them, and updates only them and their optimizer state (the lazy
update of ``torch.optim.SparseAdam``, here for adam, adadelta and sgd); every other
parameter goes through the usual optimizer. A step then costs the batch's entries, not
the width.

The shift of the H2O scaling makes the first layer's exact gradient dense (a zero input
is ``-c`` once scaled: ``W z + b = W S + (b - W c)``). The lazy step therefore trains the
first layer's *effective* bias ``b' = b - W c`` as its own parameter, so that the
gradient of ``W`` touches only the stored columns; ``b = b' + W c`` is written back after
every step (``W c`` is kept up to date from the changed columns), so the network is
always the ordinary one. This reparametrization gives the same function and loss but a
different optimizer path from the dense step.

Under DistributedDataParallel (``num_workers > 1``) the gradients must be dense for the
all-reduce: there the loop keeps the sampled loss and dense gradients (see
:func:`sparkae.train.loop.train`).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from sparkae.nn import sparse
from sparkae.nn.models import AutoencoderNet
from sparkae.nn.sampling import SampledEntries, sampled_mse

log = logging.getLogger("sparkae")


def lazy_eligible(net: torch.nn.Module, model: torch.nn.Module, cfg: Any) -> Optional[str]:
    """None when the lazy step applies to this fit, else why not (for the log)."""
    if model is not net:
        return "several ranks (DistributedDataParallel needs dense gradients)"
    if not isinstance(net, AutoencoderNet) or getattr(net, "dense_input", False):
        return f"architecture {cfg.architecture!r}"
    if cfg.l1 or cfg.l2:
        return "l1/l2 penalties (their gradients are dense)"
    if cfg.max_w2 < float("inf"):
        return "max_w2 (a full-width norm per step)"
    if cfg.contractive_lambda:
        return "contractive_lambda (uses the whole first layer)"
    return None


class LazyStep:
    """The optimizer of a lazy sparse fit: row-wise state for the wide matrices, the
    loop's usual optimizer (``dense``) for everything else and the effective bias.

    Parameters
    ----------
    net : AutoencoderNet
    cfg : TrainConfig
    dense : callable
        ``dense(params)`` builds the usual optimizer over ``params``
        (:func:`sparkae.train.loop.make_optimizer`).
    """

    def __init__(self, net: AutoencoderNet, cfg: Any, dense) -> None:
        self.net, self.cfg = net, cfg
        first, out = net.layers[0], net.output
        # (tensor, dim along which the wide side runs)
        self.wide: Dict[str, Tuple[torch.Tensor, int]] = {
            "w1": (first.weight, 1), "w2": (out.weight, 0), "b2": (out.bias, 0)}
        skip = {id(first.weight), id(first.bias), id(out.weight), id(out.bias)}
        self.bias_eff = torch.zeros_like(first.bias, requires_grad=True)
        others = [p for p in net.parameters() if id(p) not in skip]
        self.dense = dense(others + [self.bias_eff])
        slots = {"adam": 2, "adadelta": 2, "sgd": 1}[cfg.optimizer]   # see _update
        # row-wise state, (slots, wide size, ...): one gather and one scatter per step
        self.state: Dict[str, torch.Tensor] = {
            w: torch.zeros((slots,) + tuple((t.t() if d == 1 else t).shape), dtype=t.dtype,
                           device=t.device)
            for w, (t, d) in self.wide.items()}
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
        # leaf slices, one row per wide-side index (the first layer's columns transposed)
        self.leaf = {w: (t.detach().index_select(d, self.index[w]).t().contiguous() if d == 1
                         else t.detach().index_select(d, self.index[w])).requires_grad_()
                     for w, (t, d) in self.wide.items()}
        w1 = self.leaf["w1"]

        def first(_: torch.Tensor) -> torch.Tensor:
            return F.embedding_bag(inv1, w1, z.crow_indices()[:-1], mode="sum",
                                   per_sample_weights=val.to(w1.dtype)) + self.bias_eff

        acts = net.hidden_activations(z, first=first)
        y = net.decode_entries(acts[-1], e.rows, e.cols,
                               weight_rows=F.embedding(inv2, self.leaf["w2"]),
                               bias=self.leaf["b2"].index_select(0, inv2))
        return sampled_mse(y, e), acts

    @torch.no_grad()
    def step(self) -> None:
        """Update the gathered slices (row-wise optimizer), then everything else."""
        self.steps += 1
        group = self.dense.param_groups[0]
        for w, (t, d) in self.wide.items():
            leaf, idx = self.leaf[w], self.index[w]
            g = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
            p = leaf.detach()       # a gathered copy: updated in place, then scattered
            cur = self.state[w].index_select(1, idx)
            if d == 1:
                c = sparse.offset(self.net.scaler).index_select(0, idx)
                self.wc -= p.t() @ c                  # W c follows the changed columns
            self._update(p, g, cur, group)
            self.state[w].index_copy_(1, idx, cur)
            if d == 1:
                self.wc += p.t() @ c
                p = p.t()
            t.index_copy_(d, idx, p)
        self.dense.step()
        self.net.layers[0].bias.copy_(self.bias_eff + self.wc)
        self.leaf = {}

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: torch.Tensor,
                group: Dict[str, Any]) -> None:
        """One optimizer update of a slice ``p`` (in place) with gradient ``g``; ``state``
        (slots x slice) in place: adam's ``exp_avg``, ``exp_avg_sq``; adadelta's
        ``square_avg``, ``acc_delta``; sgd's ``momentum_buffer`` (torch's formulas)."""
        cfg = self.cfg
        if cfg.optimizer == "adam":
            (b1, b2), eps, lr = group["betas"], group["eps"], group["lr"]
            m, v = state[0], state[1]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            c1, c2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
            p.addcdiv_(m, v.sqrt().div_(c2 ** 0.5).add_(eps), value=-lr / c1)
        elif cfg.optimizer == "adadelta":
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
        """For checkpoints: the usual optimizer's state, the row-wise state and the step."""
        return {"lazy": True, "dense": self.dense.state_dict(), "rows": dict(self.state),
                "steps": self.steps}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if not state.get("lazy"):
            raise ValueError("reconstruction_sampling: the checkpoint's optimizer state was "
                             "written without the lazy sparse step; resume with the same "
                             "reconstruction_sampling setting")
        self.dense.load_state_dict(state["dense"])
        for k, v in state["rows"].items():
            self.state[k].copy_(v)
        self.steps = int(state["steps"])
        self.refresh()
