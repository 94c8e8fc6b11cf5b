"""Extra training terms beyond the reconstruction MSE (pure Torch), each with the history
entries it logs: the variational family's KL, the contractive penalty and the
winner-take-all activity. :mod:`sparkae.train.family` picks those of a fit."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from sparkae.nn.losses import contractive_penalty
from sparkae.train.config import TrainConfig


class Term:
    """One source of extra training terms: the loop calls these hooks; the defaults add
    no loss and log the per-epoch sums of :attr:`names` (history entries, per row).

    Parameters
    ----------
    net : Module
        The network being trained (not a wrapper of it).
    cfg : TrainConfig
        The loop's settings.
    """

    #: History entries: the per-epoch sums this term keeps, reported per row.
    names: Tuple[str, ...] = ()
    #: Values :meth:`totals` reports after the sums of :attr:`names`.
    extra_totals = 0

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig) -> None:
        self.net, self.cfg = net, cfg
        self.start_epoch()

    def start_epoch(self) -> None:
        """Reset the per-epoch sums."""
        self.sums = {n: 0.0 for n in self.names}

    def loss(self, inp: torch.Tensor, acts: List[torch.Tensor],
             rows: int) -> Optional[torch.Tensor]:
        """The term's loss for a reconstruction step on network input ``inp`` (hidden
        activations ``acts``, ``rows`` rows), recording what it logs; None: no loss."""
        return None

    def after_step(self, model: torch.nn.Module, z: torch.Tensor) -> None:
        """Run after the reconstruction step's update on scaled batch ``z``."""

    def parameters(self) -> Optional[List[torch.nn.Parameter]]:
        """What the reconstruction optimizer updates; None: every parameter."""
        return None

    def state(self) -> Optional[List[Dict[str, Any]]]:
        """The term's optimizer states, for checkpoints; None: it has none."""
        return None

    def resume(self, states: Optional[List[Dict[str, Any]]]) -> None:
        """Continue from a checkpoint's :meth:`state`."""

    def totals(self) -> List[float]:
        """The epoch's values to sum across ranks: :attr:`names`' sums, then
        :attr:`extra_totals` more."""
        return [self.sums[n] for n in self.names]

    def entry(self, totals: List[float], rows: int) -> Dict[str, Any]:
        """History entries from the summed :meth:`totals` of an epoch of ``rows`` rows."""
        return {n: v / rows for n, v in zip(self.names, totals)}


class VariationalKL(Term):
    """The variational family's ``kl_beta * KL / kept`` (the network computes the KL of
    each training forward); logs ``kl``, the KL in nats per row."""

    names = ("kl",)

    def loss(self, inp: torch.Tensor, acts: List[torch.Tensor],
             rows: int) -> Optional[torch.Tensor]:
        kl = self.net.last_kl
        self.sums["kl"] += float(kl.detach()) * rows
        return self.cfg.kl_beta * kl / self.net.scaler.keep.numel()


class Contractive(Term):
    """``contractive_lambda * ||J||_F^2``, the encoder's Jacobian at the input; logs
    ``contractive``, the Jacobian's squared norm."""

    names = ("contractive",)

    def loss(self, inp: torch.Tensor, acts: List[torch.Tensor],
             rows: int) -> Optional[torch.Tensor]:
        cfg = self.cfg
        jac = contractive_penalty(self.net, inp, acts, cfg.coding_layer, cfg.activation)
        self.sums["contractive"] += float(jac.detach()) * rows
        return cfg.contractive_lambda * jac


class WTAActivity(Term):
    """No loss; logs ``wta_active_fraction``, the share of non-zero coding activations (of
    non-zero coding maps for convolutional networks)."""

    names = ("wta_active_fraction",)

    def loss(self, inp: torch.Tensor, acts: List[torch.Tensor],
             rows: int) -> Optional[torch.Tensor]:
        h = acts[self.cfg.coding_layer - 1].detach()
        shapes = getattr(self.net, "shapes", None)
        if shapes is not None:  # convolutional: a map is active when any value is
            h = h.reshape(h.shape[0], shapes[self.net.coding - 1][0], -1).abs().amax(dim=2)
        self.sums["wta_active_fraction"] += float((h != 0).float().mean()) * rows
        return None
