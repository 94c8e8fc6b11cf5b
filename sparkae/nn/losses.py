"""Loss terms (pure Torch): reconstruction, weight penalties, KL sparsity, the VAE KL and
the contractive penalty."""

from __future__ import annotations

from typing import Callable, Iterable, List, Tuple, Union

import torch

from sparkae.nn import sparse
from sparkae.nn.activations import ACTIVATIONS, base_activation

_EPS = 1e-6


def reconstruction_mse(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean squared error over rows and features (H2O's Reconstruction.MSE, batch mean)."""
    if sparse.is_sparse(z):
        return sparse.reconstruction_mse(y, z)
    return torch.nn.functional.mse_loss(y, z)


def weight_penalty(weights: Iterable[torch.Tensor], l1: float, l2: float) -> torch.Tensor:
    """``l1 * sum|W| + l2 / 2 * sum W^2`` over weight matrices (no biases)."""
    total = torch.zeros(())
    for w in weights:
        if l1:
            total = total + l1 * w.abs().sum()
        if l2:
            total = total + 0.5 * l2 * (w * w).sum()
    return total


def activation_unit_range(activation: str) -> Tuple[float, float]:
    """The open interval a target ``average_activation`` must lie in for ``activation``."""
    base = base_activation(activation)
    low = ACTIVATIONS[base][2][0]
    return (-1.0, 1.0) if low == -1.0 else (0.0, 1.0)


def to_unit(a: Union[torch.Tensor, float], activation: str) -> Union[torch.Tensor, float]:
    """Map an activation (or target) on the activation's scale to (0, 1) for the KL:
    (a + 1) / 2 for tanh-like activations ranging over (-1, ...), a itself otherwise."""
    low, _ = activation_unit_range(activation)
    return (a + 1.0) / 2.0 if low == -1.0 else a


def kl_sparsity(codings: torch.Tensor, rho: float, activation: str) -> torch.Tensor:
    """``sum_j KL(rho || rho_hat_j)`` over the coding units, rho_hat_j the batch mean activation.

    Both ``rho`` and the activations are on the activation's own scale (tanh: (-1, 1)) and
    are mapped to (0, 1) first (:func:`to_unit`).
    """
    rho_hat = to_unit(codings.mean(dim=0), activation).clamp(_EPS, 1 - _EPS)
    r = min(max(float(to_unit(rho, activation)), _EPS), 1 - _EPS)
    return (r * torch.log(r / rho_hat) + (1 - r) * torch.log((1 - r) / (1 - rho_hat))).sum()


# -- variational and contractive terms ------------------------------------------------------

def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``KL(N(mu, exp(logvar)) || N(0, I))`` summed over coding units (nats
    per row), the variational autoencoder's regularizer (Doersch 2016, eq. 7)."""
    return 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(dim=1).mean()


#: Activations whose layer Jacobian has a closed form, with the derivative from the output.
_CLOSED_FORM = {"tanh": lambda h: 1.0 - h * h, "sigmoid": lambda h: h * (1.0 - h)}
#: Coding layers wider than this use random projections instead of one pass per unit.
EXACT_JACOBIAN_UNITS = 16


def contractive_closed_form(h: torch.Tensor, weight: torch.Tensor, activation: str) -> torch.Tensor:
    """Batch mean of ``||J||_F^2`` for one layer ``h = f(W z + b)`` with f tanh or sigmoid:
    ``sum_j f'(a_j)^2 * sum_i W_ji^2`` (Rifai et al. 2011, eq. 4), from the outputs ``h``."""
    d = _CLOSED_FORM[base_activation(activation)](h)
    return ((d * d) @ (weight * weight).sum(dim=1)).mean()


def jacobian_frobenius(encode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor,
                       create_graph: bool = False, probes: int = 0) -> torch.Tensor:
    """Batch mean of ``||d encode(z) / dz||_F^2`` by autograd (any encoder whose rows are
    independent). ``probes=0``: exact, one backward pass per coding unit; ``probes=p``: the
    unbiased estimate ``E_v ||v^T J||^2`` over ``p`` Gaussian vectors ``v`` per row."""
    x = z.detach().requires_grad_(True)
    h = encode(x)
    total = torch.zeros((), dtype=h.dtype, device=h.device)
    vectors = ([torch.randn_like(h) for _ in range(probes)] if probes else
               [torch.zeros_like(h).index_fill_(1, torch.tensor([j], device=h.device), 1.0)
                for j in range(h.shape[1])])
    for v in vectors:
        (g,) = torch.autograd.grad(h, x, grad_outputs=v, create_graph=create_graph,
                                   retain_graph=True)
        total = total + (g * g).sum()
    return total / (max(probes, 1) if probes else 1) / z.shape[0]


def contractive_penalty(net: torch.nn.Module, inp: torch.Tensor, acts: List[torch.Tensor],
                        coding: int, activation: str) -> torch.Tensor:
    """The contractive penalty's ``||J||_F^2`` (batch mean) of the encoder up to hidden
    layer ``coding`` (1-based) at the network input ``inp``.

    Closed form when the encoder is one dense tanh (or sigmoid) layer without
    winner-take-all; autograd otherwise (exact up to :data:`EXACT_JACOBIAN_UNITS` coding
    units, four random projections per row beyond).
    """
    dense_one_layer = (coding == 1 and hasattr(net, "layers") and
                       not getattr(net, "wta_sparsity", None) and
                       base_activation(activation) in _CLOSED_FORM)
    if dense_one_layer:
        return contractive_closed_form(acts[0], net.layers[0].weight, activation)
    if sparse.is_sparse(inp):
        inp = sparse.densify(inp, sparse.offset(net.scaler))
    units = acts[coding - 1].shape[1]
    probes = 0 if units <= EXACT_JACOBIAN_UNITS else 4
    return jacobian_frobenius(lambda x: net.hidden_activations(x, upto=coding)[-1], inp,
                              create_graph=True, probes=probes)
