"""The loop's optimizers and weight rules (pure Torch): Adam, H2O's ADADELTA or SGD with
H2O's rate and momentum schedule; the L1/L2 penalty and the ``max_w2`` constraint."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional

import torch

from sparkae.nn.losses import weight_penalty
from sparkae.train.config import TrainConfig


def _undecorated(fn: Callable) -> Callable:
    """``fn`` without Torch's decorator (``functools.wraps`` keeps it as ``__wrapped__``);
    ``fn`` itself when it has none."""
    return getattr(fn, "__wrapped__", fn)


class _WithoutDynamo:
    """Torch's optimizer, less its first-call import of ``torch._dynamo``.

    ``torch.optim``'s ``step`` (through ``_use_grad_for_differentiable``) and
    ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` (through
    ``torch._disable_dynamo``) import ``torch._dynamo`` when first called, which exists to
    keep ``torch.compile`` out of them: measured here (torch 2.13, 2 cores), 4.3-5.7 s of
    CPU in every process that trains -- each rank, each job, each tuning trial's worker --
    against 0.02 s for the first steps without it. sparkae never compiles, so these call
    the undecorated methods: the same code, the same numbers (``step`` under
    ``torch.no_grad``, as the decorator runs it for a non-differentiable optimizer). Where
    a Torch release drops the decorators, the methods are Torch's own.
    """

    _base: type

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        _undecorated(torch.optim.Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _undecorated(torch.optim.Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self) -> Dict[str, Any]:
        return _undecorated(torch.optim.Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        _undecorated(torch.optim.Optimizer.load_state_dict)(self, state_dict)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        return _undecorated(self._base.step)(self, closure)


class Adam(_WithoutDynamo, torch.optim.Adam):
    """``torch.optim.Adam`` without the ``torch._dynamo`` import (:class:`_WithoutDynamo`)."""

    _base = torch.optim.Adam


class Adadelta(_WithoutDynamo, torch.optim.Adadelta):
    """``torch.optim.Adadelta`` without the ``torch._dynamo`` import."""

    _base = torch.optim.Adadelta


class SGD(_WithoutDynamo, torch.optim.SGD):
    """``torch.optim.SGD`` without the ``torch._dynamo`` import."""

    _base = torch.optim.SGD


def fused_adam(params: List[torch.nn.Parameter]) -> Dict[str, bool]:
    """``{"fused": True}`` where Torch has a fused Adam kernel for ``params`` (CPU from
    torch 2.4, CUDA), else ``{}``. One kernel per step instead of a dozen elementwise passes
    over each tensor: measured here (2 cores, [100] on 784 pixels, batch 64, 1 thread)
    26,000 -> 36,000 rows/s for a plain loop; the same formulas, rounded differently in
    the last bits."""
    try:
        Adam(params, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {}
    return {"fused": True}


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig,
                   params: Optional[Iterable[torch.nn.Parameter]] = None) -> torch.optim.Optimizer:
    """Adam with ``rate`` (fused where Torch can: :func:`fused_adam`); H2O's ADADELTA
    (``rho``, ``epsilon``, unit learning rate); or SGD with momentum (its rate and momentum
    follow :func:`sgd_schedule`). ``params`` (default all of ``net``'s) are the parameters
    it updates."""
    params = list(net.parameters() if params is None else params)
    if cfg.optimizer == "adam":
        return Adam(params, lr=cfg.rate, **fused_adam(params))
    if cfg.optimizer == "adadelta":
        return Adadelta(params, lr=1.0, rho=cfg.rho, eps=cfg.epsilon)
    if cfg.optimizer == "sgd":
        nesterov = cfg.nesterov and max(cfg.momentum_start, cfg.momentum_stable) > 0
        return SGD(params, lr=cfg.rate, nesterov=nesterov,
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
