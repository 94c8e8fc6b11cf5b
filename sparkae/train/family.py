"""The extra training terms of one fit (pure Torch): the network family's own terms
(:data:`FAMILY_TERMS`) and those of the options any family may set (contractive penalty,
winner-take-all), with their per-epoch bookkeeping together."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Type

import torch

from sparkae.train.adversarial import AdversarialPhases
from sparkae.train.config import TrainConfig
from sparkae.train.terms import Contractive, Term, VariationalKL, WTAActivity

#: Architecture -> the terms its networks bring to the loss (other families: none).
FAMILY_TERMS: Dict[str, Type[Term]] = {"variational": VariationalKL,
                                       "adversarial": AdversarialPhases}


class FitTerms:
    """Every extra term of a fit, called by the loop as one.

    History entries: ``kl`` (variational), ``contractive`` (the encoder's ``||J||_F^2``),
    ``wta_active_fraction``, ``discriminator_loss``, ``generator_loss``, ``prior_mmd`` and
    ``prior_mmd_initial`` (adversarial); see each :class:`~sparkae.train.terms.Term`.
    """

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig) -> None:
        own = FAMILY_TERMS.get(cfg.architecture)
        #: the family's own terms, the only ones with optimizer state
        self.family: Optional[Term] = own(net, cfg) if own is not None else None
        options: List[Term] = []
        if cfg.contractive_lambda:
            options.append(Contractive(net, cfg))
        if getattr(net, "wta_sparsity", None):
            options.append(WTAActivity(net, cfg))
        self.terms = ([self.family] if self.family is not None else []) + options

    def parameters(self) -> Optional[List[torch.nn.Parameter]]:
        """What the reconstruction optimizer updates; None: every parameter."""
        return self.family.parameters() if self.family is not None else None

    def start_epoch(self) -> None:
        """Reset the per-epoch sums."""
        for term in self.terms:
            term.start_epoch()

    def loss(self, inp: torch.Tensor, acts: List[torch.Tensor],
             rows: int) -> Optional[torch.Tensor]:
        """The extra loss of a reconstruction step (recording the logged values); None
        when no term adds one."""
        extra = None
        for term in self.terms:
            value = term.loss(inp, acts, rows)
            if value is not None:
                extra = value if extra is None else extra + value
        return extra

    def after_step(self, model: torch.nn.Module, z: torch.Tensor) -> None:
        """Run each term's work after the reconstruction step's update."""
        for term in self.terms:
            term.after_step(model, z)

    def totals(self) -> List[float]:
        """The epoch's values to sum across ranks, term after term."""
        return [v for term in self.terms for v in term.totals()]

    def entry(self, totals: List[float], rows: int) -> Dict[str, Any]:
        """The history entries from the summed :meth:`totals` of an epoch of ``rows`` rows."""
        out: Dict[str, Any] = {}
        for term in self.terms:
            width = len(term.names) + term.extra_totals
            out.update(term.entry(totals[:width], rows))
            totals = totals[width:]
        return out

    def state(self) -> Optional[List[Dict[str, Any]]]:
        """The family's optimizer states, for checkpoints (None when it has none)."""
        return self.family.state() if self.family is not None else None

    def resume(self, states: Optional[List[Dict[str, Any]]]) -> None:
        """Continue from a checkpoint's :meth:`state`."""
        if self.family is not None:
            self.family.resume(states)
