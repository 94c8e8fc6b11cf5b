"""H2O's hidden activations by name (pure Torch): the modules, their pieces per unit and
their output ranges."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class Maxout(nn.Module):
    """H2O's maxout: the max over ``channels`` linear pieces per unit."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The max of each unit's pieces (rows x units * channels -> rows x units)."""
        return x.view(x.shape[0], -1, self.channels).amax(dim=2)


#: H2O activation name -> (module factory, pieces per unit, output range (low, high)).
ACTIVATIONS = {
    "tanh": (nn.Tanh, 1, (-1.0, 1.0)),
    "rectifier": (nn.ReLU, 1, (0.0, float("inf"))),
    "maxout": (Maxout, 2, (float("-inf"), float("inf"))),
    "exp_rectifier": (nn.ELU, 1, (-1.0, float("inf"))),
    "linear": (nn.Identity, 1, (float("-inf"), float("inf"))),  # not H2O's: PCA-equivalent
}


def base_activation(name: str) -> str:
    """``tanh_with_dropout`` -> ``tanh``: the activation without its dropout suffix."""
    return name[: -len("_with_dropout")] if name.endswith("_with_dropout") else name


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for an H2O activation name (dropout forms too)."""
    try:
        return ACTIVATIONS[base_activation(name)][0]()
    except KeyError:
        raise ValueError(f"activation: got {name!r}, expected one of "
                         f"{', '.join(sorted(ACTIVATIONS))} (or a *_with_dropout form)") from None


def activation_pieces(name: str) -> int:
    """Linear pieces per unit of activation ``name`` (2 for maxout, else 1)."""
    return ACTIVATIONS[base_activation(name)][1]


def make_output_activation(activation: str, output_activation: str) -> Optional[nn.Module]:
    """The output layer's activation module: the hidden ``activation`` for
    ``output_activation="same"``, None (linear output) otherwise."""
    if output_activation != "same":
        return None
    return make_activation(activation)
