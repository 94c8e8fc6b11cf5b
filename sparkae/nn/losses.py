"""Loss terms (pure Torch): reconstruction, weight penalties, KL sparsity."""

from __future__ import annotations

from typing import Iterable, Tuple

import torch

from sparkae.nn import sparse
from sparkae.nn.models import ACTIVATIONS, base_activation

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


def to_unit(a: torch.Tensor | float, activation: str):
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
