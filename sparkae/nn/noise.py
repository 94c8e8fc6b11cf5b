"""Corruption of scaled input batches for denoising autoencoders (pure Torch).

The target stays the clean batch: only the network's input is corrupted.
"""

from __future__ import annotations

from typing import Optional

import torch

NOISE_KINDS = ("none", "gaussian", "masking", "salt_pepper")


def corrupt_batch(z: torch.Tensor, kind: str, level: float, input_dropout_ratio: float = 0.0,
                  lo: Optional[torch.Tensor] = None, hi: Optional[torch.Tensor] = None,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Return a corrupted copy of the scaled batch ``z``.

    Parameters
    ----------
    z : Tensor
        Scaled inputs (rows x kept features).
    kind : {"none", "gaussian", "masking", "salt_pepper"}
        ``gaussian`` adds N(0, level^2) noise (scaled units); ``masking`` sets each entry
        to 0 with probability ``level``; ``salt_pepper`` sets each entry, with
        probability ``level``, to its feature's training minimum or maximum (``lo``/``hi``).
    level : float
        Noise level, as above.
    input_dropout_ratio : float
        H2O's input dropout: each input is set to 0 with this probability (applied after
        ``kind``).
    """
    out = z
    draw = dict(generator=generator, device=z.device)
    if kind == "gaussian" and level > 0:
        out = out + level * torch.randn(z.shape, dtype=z.dtype, **draw)
    elif kind == "masking" and level > 0:
        out = out * (torch.rand(z.shape, **draw) >= level)
    elif kind == "salt_pepper" and level > 0:
        hit = torch.rand(z.shape, **draw) < level
        salt = torch.rand(z.shape, **draw) < 0.5
        low = lo if lo is not None else out.min(dim=0).values
        high = hi if hi is not None else out.max(dim=0).values
        out = torch.where(hit, torch.where(salt, high.expand_as(z), low.expand_as(z)), out)
    elif kind not in NOISE_KINDS:
        raise ValueError(f"noise: got {kind!r}, expected one of {', '.join(NOISE_KINDS)}")
    if input_dropout_ratio > 0:
        out = out * (torch.rand(z.shape, **draw) >= input_dropout_ratio)
    return out
