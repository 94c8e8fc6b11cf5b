"""The loop's optimizers and weight rules (pure Torch): Adam, H2O's ADADELTA or SGD with
H2O's rate and momentum schedule; the L1/L2 penalty and the ``max_w2`` constraint."""

from __future__ import annotations

from typing import Iterable, Optional

import torch

from sparkae.nn.losses import weight_penalty
from sparkae.train.config import TrainConfig


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig,
                   params: Optional[Iterable[torch.nn.Parameter]] = None) -> torch.optim.Optimizer:
    """Adam with ``rate``; H2O's ADADELTA (``rho``, ``epsilon``, unit learning rate); or SGD
    with momentum (its rate and momentum follow :func:`sgd_schedule`). ``params`` (default
    all of ``net``'s) are the parameters it updates."""
    params = list(net.parameters() if params is None else params)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.rate)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=1.0, rho=cfg.rho, eps=cfg.epsilon)
    if cfg.optimizer == "sgd":
        nesterov = cfg.nesterov and max(cfg.momentum_start, cfg.momentum_stable) > 0
        return torch.optim.SGD(params, lr=cfg.rate, nesterov=nesterov,
                               momentum=max(cfg.momentum_start, cfg.momentum_stable))
    raise ValueError(f"optimizer: got {cfg.optimizer!r}, expected 'adam', 'adadelta' or 'sgd'")


def sgd_schedule(cfg: TrainConfig, samples: int) -> tuple[float, float]:
    """H2O's schedule after ``samples`` training rows: ``rate / (1 + rate_annealing *
    samples)`` and a momentum ramped linearly from ``momentum_start`` to ``momentum_stable``
    over ``momentum_ramp`` rows."""
    lr = cfg.rate / (1.0 + cfg.rate_annealing * samples)
    frac = min(1.0, samples / cfg.momentum_ramp) if cfg.momentum_ramp > 0 else 1.0
    return lr, cfg.momentum_start + (cfg.momentum_stable - cfg.momentum_start) * frac


def penalty(net: torch.nn.Module, cfg: TrainConfig) -> torch.Tensor:
    """``l1 * sum|W| + l2 / 2 * sum W^2`` over weight matrices (H2O's decay, no biases)."""
    return weight_penalty(net.weight_matrices(), cfg.l1, cfg.l2)


@torch.no_grad()
def apply_max_w2(net: torch.nn.Module, max_w2: float) -> None:
    """Scale each unit's incoming weights so that their squared norm is at most ``max_w2``."""
    for w in net.weight_matrices():
        norms = (w * w).sum(dim=1, keepdim=True)
        w.mul_(torch.where(norms > max_w2, torch.sqrt(max_w2 / norms), torch.ones_like(norms)))
