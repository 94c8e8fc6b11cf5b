"""Data-parallel gradient averaging for training ranks (pure ``torch.distributed``).

What DistributedDataParallel does for sparkae's networks, without it: every rank starts
from rank 0's weights (:func:`broadcast_parameters`), and before each optimizer step the
gradients of the parameters it updates are averaged over the ranks
(:func:`averaged_gradients`). Parameters without a gradient on every rank (the adversarial
family's alternating phases) keep none; a gradient present on some ranks only is averaged
with zeros, as DistributedDataParallel's ``find_unused_parameters`` does.

Why not DistributedDataParallel: its constructor imports ``torch._dynamo`` (to read one
setting), measured here (torch 2.13, 2 cores) at 5 s of CPU in every rank process, more
than the rest of a small rank's start; and its per-step work (buckets, autograd hooks, a
graph walk per forward for unused parameters) buys nothing for networks whose gradients
fit in one all-reduce. Here a step costs one ``all_reduce`` of the concatenated gradients
(plus one value per parameter: which ranks have it).
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Tuple

import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_pre_hook


def broadcast_parameters(net: torch.nn.Module) -> torch.nn.Module:
    """Give every rank rank 0's parameters and buffers (one broadcast per device and
    dtype); returns ``net``."""
    tensors = list(net.parameters()) + list(net.buffers())
    with torch.no_grad():
        for group in _by_kind(tensors).values():
            flat = torch.cat([t.detach().reshape(-1) for t in group])
            dist.broadcast(flat, src=0)
            for t, value in zip(group, _views(flat, group)):
                t.copy_(value)
    return net


def average_gradients(params: List[torch.nn.Parameter], world_size: int) -> None:
    """Replace each parameter's gradient by its mean over the ranks (every rank must call
    this with the same parameters, in the same order). A parameter that has no gradient on
    any rank keeps none."""
    for group in _by_kind(params).values():
        grads = [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1)
                 for p in group]
        have = torch.tensor([p.grad is not None for p in group], dtype=group[0].dtype,
                            device=group[0].device)
        flat = torch.cat(grads + [have])
        dist.all_reduce(flat)
        n_grads = flat.numel() - len(group)
        flat[:n_grads].div_(world_size)
        for p, mean, used in zip(group, _views(flat, group), flat[n_grads:].tolist()):
            if used == 0:
                continue
            if p.grad is None:
                p.grad = mean.clone()
            else:
                p.grad.copy_(mean)


@contextlib.contextmanager
def averaged_gradients(world_size: int) -> Iterator[None]:
    """While the block runs, every optimizer step of this process first averages the
    gradients of the parameters it updates over the ranks (a global optimizer step
    pre-hook: the adversarial family's own phase optimizers included). Use only in a
    process that is one rank of a process group."""

    def hook(optimizer: torch.optim.Optimizer, args: Tuple, kwargs: Dict[str, Any]) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if params:
            average_gradients(params, world_size)

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _views(flat: torch.Tensor, like: List[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Consecutive pieces of ``flat`` shaped like each tensor of ``like``."""
    offset = 0
    for t in like:
        yield flat[offset:offset + t.numel()].view_as(t)
        offset += t.numel()


def _by_kind(tensors: List[torch.Tensor]) -> Dict[Tuple[Any, Any], List[torch.Tensor]]:
    """``tensors`` grouped by (device, dtype), in order (one collective per group)."""
    out: Dict[Tuple[Any, Any], List[torch.Tensor]] = {}
    for t in tensors:
        out.setdefault((t.device, t.dtype), []).append(t)
    return out
