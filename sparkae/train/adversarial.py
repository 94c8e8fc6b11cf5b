"""The adversarial family's training terms (pure Torch): the regularization phase after
each reconstruction step, its two optimizers, and the per-epoch check of the codings
against the prior."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import torch

from sparkae.nn.adversarial import adversarial_losses, generator_loss, mmd
from sparkae.train.config import TrainConfig
from sparkae.train.optim import make_optimizer
from sparkae.train.terms import Term

#: Rows per rank whose codings are compared with the prior after each adversarial epoch.
PRIOR_CHECK_ROWS = 1024


class AdversarialPhases(Term):
    """After every reconstruction step, a discriminator update then an encoder update,
    each with its own optimizer. Logs ``discriminator_loss`` and ``generator_loss`` (per
    row), and ``prior_mmd``: the squared MMD between the codings of a rank's first
    :data:`PRIOR_CHECK_ROWS` rows and prior draws, averaged over ranks (the first epoch
    also has ``prior_mmd_initial``, the untrained encoder's on the same rows)."""

    names = ("discriminator_loss", "generator_loss")
    extra_totals = 3   # the rank's MMD, a count of ranks, the untrained encoder's MMD

    def __init__(self, net: torch.nn.Module, cfg: TrainConfig) -> None:
        super().__init__(net, cfg)
        self.initial: Optional[torch.nn.Module] = copy.deepcopy(net)
        self.opt_d = make_optimizer(net, cfg, net.discriminator.parameters())
        self.opt_g = make_optimizer(net, cfg, net.encoder_parameters())

    def parameters(self) -> List[torch.nn.Parameter]:
        """What the reconstruction optimizer updates: the encoder and decoder."""
        return self.net.autoencoder_parameters()

    def start_epoch(self) -> None:
        super().start_epoch()
        self.kept: List[torch.Tensor] = []

    def after_step(self, model: torch.nn.Module, z: torch.Tensor) -> None:
        """The regularization phase: a discriminator update, then an encoder update, each
        one forward and backward of ``model``; with several ranks each phase optimizer's step
        averages its gradients first (:mod:`sparkae.train.gradsync`)."""
        real, fake = model(z, phase="discriminator")
        d_loss = adversarial_losses(real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        g_loss = generator_loss(model(z, phase="generator"))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.sums["discriminator_loss"] += float(d_loss.detach()) * z.shape[0]
        self.sums["generator_loss"] += float(g_loss.detach()) * z.shape[0]
        have = sum(t.shape[0] for t in self.kept)
        if have < PRIOR_CHECK_ROWS:
            self.kept.append(z.detach()[:PRIOR_CHECK_ROWS - have])

    def totals(self) -> List[float]:
        return super().totals() + self._prior_mmd()

    @torch.no_grad()
    def _prior_mmd(self) -> List[float]:
        if not self.kept:
            return [0.0, 0.0, 0.0]
        rows = torch.cat(self.kept)
        gen = torch.Generator().manual_seed(self.cfg.seed + 17)
        prior = self.net.sample_prior(rows.shape[0], generator=gen).cpu()
        was = self.net.training
        self.net.eval()
        out = [mmd(self.net.encode(rows).cpu(), prior), 1.0]
        self.net.train(was)
        initial, self.initial = self.initial, None   # the untrained encoder, first epoch only
        out.append(mmd(initial.eval().encode(rows).cpu(), prior) if initial is not None else 0.0)
        return out

    def entry(self, totals: List[float], rows: int) -> Dict[str, Any]:
        out = super().entry(totals, rows)
        mmd_sum, ranks, initial = totals[len(self.names):len(self.names) + 3]
        out["prior_mmd"] = mmd_sum / ranks if ranks else None
        if initial and ranks:
            out["prior_mmd_initial"] = initial / ranks
        return out

    def state(self) -> List[Dict[str, Any]]:
        """The two phase optimizers' states, for checkpoints."""
        return [self.opt_d.state_dict(), self.opt_g.state_dict()]

    def resume(self, states: Optional[List[Dict[str, Any]]]) -> None:
        """Continue from a checkpoint's :meth:`state`; ``prior_mmd_initial`` belongs to a
        fit's first epoch only, so a resumed fit has none."""
        if states:
            self.opt_d.load_state_dict(states[0])
            self.opt_g.load_state_dict(states[1])
        self.initial = None
