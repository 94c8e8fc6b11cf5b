"""Winner-take-all masks (Makhzani and Frey 2015), pure Torch.

- *Lifetime* sparsity: each unit keeps its ``k = round(fraction * batch)`` largest
  activations across the batch (at least one) and the rest are set to zero.
- *Spatial* sparsity (convolutional layers): each feature map keeps only its largest
  activation per row; lifetime sparsity then applies to those winners across the batch.

Lifetime masks depend on the batch and are applied in training only; spatial masks are
per row and the convolutional network keeps them when scoring.
"""

from __future__ import annotations

import torch


def winners(batch: int, fraction: float) -> int:
    """How many of ``batch`` activations a unit keeps: ``round(fraction * batch)``, at least 1."""
    return max(1, min(batch, int(round(fraction * batch))))


def lifetime(h: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep each column's (unit's) top ``fraction`` of activations across the rows of ``h``.

    Parameters
    ----------
    h : Tensor
        Activations, rows x units.
    fraction : float
        In (0, 1]; 1 keeps everything.

    Returns
    -------
    Tensor
        ``h`` with every activation outside its unit's top ``k`` set to zero.
    """
    if fraction >= 1.0 or h.shape[0] == 0:
        return h
    k = winners(h.shape[0], fraction)
    idx = h.topk(k, dim=0).indices                         # (k, units)
    mask = torch.zeros_like(h).scatter_(0, idx, 1.0)
    return h * mask


def spatial(h: torch.Tensor) -> torch.Tensor:
    """Keep only the largest activation of each feature map (rows x channels x H x W)."""
    n, c = h.shape[:2]
    flat = h.reshape(n, c, -1)
    idx = flat.argmax(dim=2, keepdim=True)
    mask = torch.zeros_like(flat).scatter_(2, idx, 1.0)
    return (flat * mask).reshape(h.shape)


def spatial_lifetime(h: torch.Tensor, fraction: float) -> torch.Tensor:
    """Spatial WTA, then lifetime WTA over each channel's per-row winner across the batch."""
    s = spatial(h)
    n, c = s.shape[:2]
    peak = s.reshape(n, c, -1).amax(dim=2)                 # each map's winner, rows x channels
    if fraction >= 1.0:
        return s
    idx = peak.topk(winners(n, fraction), dim=0).indices
    keep = torch.zeros_like(peak).scatter_(0, idx, 1.0)
    return s * keep.reshape(n, c, *([1] * (s.dim() - 2)))
