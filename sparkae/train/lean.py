"""The commonest fit's training step written out (pure Torch; no Spark imports).

A plain dense autoencoder -- :class:`~sparkae.nn.dense.AutoencoderNet` with tanh, rectifier,
exp_rectifier or linear hidden units, no dropout, a linear output, the reconstruction MSE
as the whole loss, dense batches, one rank -- is small enough that at the batch sizes
autoencoders train with, a step's time goes as much to autograd's bookkeeping and to
``torch.optim.Adam.step``'s Python as to the matrix products. :class:`LeanStep` computes
the same gradients by hand (the chain rule through each layer) and, for a fused Adam, calls
the fused kernel that ``Adam.step`` would call, on that optimizer's own state, so that a
checkpoint, a resumed fit or a later ``step()`` sees what they would have seen.

Two products are written in the layout that is fast for narrow layers: ``G^T X`` as
``(X^T G)^T`` when ``X`` is narrower than ``G``, and ``G W`` as ``(W^T G^T)^T``. On one
core at batch 64, a 766 x 2 output layer's weight gradient took 68 us as autograd writes it
(``G^T X``) and 14 us the other way round (docs/DESIGN.md section 7).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.optim import optimizer as torch_optimizer

from sparkae.nn.dense import AutoencoderNet
from sparkae.train.config import TrainConfig


def _tanh(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return g.mul_(1 - h * h)


def _relu(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return g.mul_(h > 0)


def _elu(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:   # alpha 1: exp(x) = h + 1
    return g.mul_(torch.where(h > 0, torch.ones_like(h), h + 1))


def _identity(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return g


#: Each hidden activation the step knows: (forward in place on the pre-activation,
#: gradient through it from the activation's output, in place on the incoming gradient).
_ACTIVATIONS: Dict[type, Tuple[Callable[[torch.Tensor], torch.Tensor],
                               Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    nn.Tanh: (torch.tanh_, _tanh),
    nn.ReLU: (torch.relu_, _relu),
    nn.ELU: (nn.functional.elu_, _elu),
    nn.Identity: (lambda x: x, _identity),
}


def lean_eligible(net: nn.Module, cfg: TrainConfig, model: nn.Module, distributed: bool,
                  has_terms: bool) -> Optional[str]:
    """None when a fit can train with :class:`LeanStep`, else why it cannot."""
    if type(net) is not AutoencoderNet or model is not net:
        return "not a plain dense network"
    if distributed:
        return "several ranks"
    if net.output_act is not None or any(not isinstance(d, nn.Identity) for d in net.dropouts):
        return "an output activation or dropout"
    for act in net.acts:
        if type(act) not in _ACTIVATIONS or (isinstance(act, nn.ELU) and act.alpha != 1.0):
            return f"activation {type(act).__name__}"
    if (has_terms or cfg.noise != "none" or cfg.input_dropout_ratio > 0 or cfg.l1 or cfg.l2
            or cfg.sparsity_beta or cfg.max_w2 < float("inf") or cfg.reconstruction_sampling):
        return "a loss term or constraint beyond the reconstruction MSE"
    if not all(p.requires_grad for p in net.parameters()):
        return "frozen parameters"
    return None


def _weight_grad(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``g^T x`` (out x in), contiguous, in the faster layout for narrow ``x``."""
    if x.shape[1] < g.shape[1]:
        return x.t().mm(g).t().contiguous()
    return g.t().mm(x)


class LeanStep:
    """Forward pass and hand-written backward pass of one plain dense step (the update
    is the caller's: :func:`fused_update`, else ``opt.step()``).

    Parameters
    ----------
    net : AutoencoderNet
        A network :func:`lean_eligible` accepts.
    """

    def __init__(self, net: AutoencoderNet) -> None:
        self.layers = list(net.layers) + [net.output]
        self.forward_fns = [_ACTIVATIONS[type(a)][0] for a in net.acts]
        self.backward_fns = [_ACTIVATIONS[type(a)][1] for a in net.acts]

    def gradients(self, z: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Set every parameter's ``grad`` to the gradient of the MSE between the
        reconstruction of scaled batch ``z`` and ``z`` (``mse_loss``'s mean over rows and
        features); return ``(mse, hidden activations)`` as the network's forward gives
        them."""
        with torch.no_grad():
            inputs = [z]
            for layer, fn in zip(self.layers[:-1], self.forward_fns):
                inputs.append(fn(torch.addmm(layer.bias, inputs[-1], layer.weight.t())))
            out = self.layers[-1]
            g = torch.addmm(out.bias, inputs[-1], out.weight.t()).sub_(z)
            mse = g.square().mean()
            g.mul_(2.0 / g.numel())
            for i in range(len(self.layers) - 1, -1, -1):
                layer = self.layers[i]
                layer.weight.grad = _weight_grad(g, inputs[i])
                layer.bias.grad = g.sum(dim=0)
                if i > 0:
                    g = self.backward_fns[i - 1](layer.weight.t().mm(g.t()).t(), inputs[i])
        return mse, inputs[1:]


def _step_hooks(opt: Any) -> bool:
    """Whether a hook runs around ``opt.step()``: its own, or a global one (the ranks'
    gradient averaging, :mod:`sparkae.train.gradsync`, is a global pre-hook)."""
    return bool(getattr(opt, "_optimizer_step_pre_hooks", None)
                or getattr(opt, "_optimizer_step_post_hooks", None)
                or getattr(torch_optimizer, "_global_optimizer_pre_hooks", None)
                or getattr(torch_optimizer, "_global_optimizer_post_hooks", None))


def fused_update(opt: Any) -> bool:
    """Apply ``opt`` (a ``torch.optim.Adam(fused=True)``) to the parameters' ``grad`` with
    one call of the fused kernel its ``step`` calls, without the rest of ``step``; False
    (nothing done) when ``opt`` is another optimizer or setting, a hook runs around its
    ``step`` (the ranks' gradient averaging is one), or its state is not made yet (its
    first step), for the caller to call ``opt.step()``."""
    if not isinstance(opt, torch.optim.Adam) or len(opt.param_groups) != 1 or _step_hooks(opt):
        return False
    group = opt.param_groups[0]
    if (not group.get("fused") or group["amsgrad"] or group["maximize"]
            or group.get("capturable") or group.get("differentiable")
            or group.get("decoupled_weight_decay") or isinstance(group["lr"], torch.Tensor)
            or not hasattr(torch, "_fused_adam_")):
        return False
    params = group["params"]
    states = [opt.state.get(p) for p in params]
    if any(not s or "step" not in s for s in states) or any(p.grad is None for p in params):
        return False
    steps = [s["step"] for s in states]
    beta1, beta2 = group["betas"]
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                       [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False,
                       lr=group["lr"], beta1=beta1, beta2=beta2,
                       weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                       grad_scale=None, found_inf=None)
    return True
