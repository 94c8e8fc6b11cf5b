"""The input scaling a network owns (pure Torch): feature selection, the training
statistics' shift and scale, and missing-value imputation, held as buffers so that they
travel with the network's saved tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparkae.nn import sparse


class InputScaler(nn.Module):
    """Select the kept input features and scale them: ``(x[:, keep] - shift) * scale``.

    ``fill`` holds, for every input feature, the value that :meth:`unscale` reports for a
    feature left out of the network (its constant training value).
    """

    def __init__(self, input_size: int, kept: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.register_buffer("keep", torch.arange(kept, dtype=torch.long))
        self.register_buffer("shift", torch.zeros(kept))
        self.register_buffer("scale", torch.ones(kept))
        self.register_buffer("fill", torch.zeros(input_size))
        # scaled value that replaces a missing (NaN) input: the training mean
        self.register_buffer("impute", torch.zeros(kept))
        # scaled training minimum and maximum of each kept feature (salt-and-pepper noise,
        # and the range that scoring with clip_to_training_range clamps inputs into)
        self.register_buffer("lo", torch.zeros(kept))
        self.register_buffer("hi", torch.ones(kept))

    def set_statistics(self, keep: Any, shift: Any, scale: Any, fill: Any, impute: Any = None,
                       lo: Any = None, hi: Any = None) -> None:
        """Load scaling statistics (array-likes) into the buffers."""
        for name, value in (("keep", keep), ("shift", shift), ("scale", scale), ("fill", fill),
                            ("impute", impute), ("lo", lo), ("hi", hi)):
            if value is not None:
                buf = getattr(self, name)
                buf.copy_(torch.as_tensor(value, dtype=buf.dtype))

    @property
    def all_kept(self) -> bool:
        """Whether the network models every input feature (no selection needed)."""
        return self.keep.numel() == self.input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled kept features of raw rows ``x``, missing values imputed (a CSR batch
        stays sparse)."""
        if sparse.is_sparse(x):  # stays sparse: S = x * scale, see sparkae.nn.sparse
            return sparse.scale(self, x)
        # one new tensor, scaled in place; the NaN mask only when a NaN is there (a sum is
        # NaN exactly when some value is NaN, or +inf meets -inf: then the mask finds none)
        z = x.index_select(1, self.keep).sub_(self.shift) if not self.all_kept \
            else x - self.shift
        z.mul_(self.scale)
        if torch.isnan(z.sum()):
            z = torch.where(torch.isnan(z), self.impute, z)
        return z

    def clip(self, z: torch.Tensor) -> torch.Tensor:
        """Clamp dense scaled inputs ``z`` (rows x kept, the output of :meth:`forward`) into
        the scaled training range ``[lo, hi]`` of each feature (``clip_to_training_range``).

        ``lo`` and ``hi`` are the training minimum and maximum scaled like the inputs, for
        every ``standardize`` mode; a CSR batch is clipped without densifying it by
        :func:`sparkae.nn.sparse.clipped_zero` and :func:`sparkae.nn.sparse.clip_stored`.

        Raises
        ------
        ValueError
            ``z`` is a sparse CSR batch.
        """
        if sparse.is_sparse(z):
            raise ValueError("InputScaler.clip: a CSR batch is clipped with "
                             "sparkae.nn.sparse.clipped_zero and clip_stored (it stays sparse)")
        return torch.clamp(z, self.lo, self.hi)

    def unscale(self, y: torch.Tensor) -> torch.Tensor:
        """Map network outputs (scaled, kept features) back to the full input width and units."""
        y = y / self.scale + self.shift
        if self.all_kept:
            return y
        out = self.fill.expand(y.shape[0], -1).clone()
        out[:, self.keep] = y
        return out
