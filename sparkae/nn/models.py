"""Network builders (pure Torch, no Spark imports).

An :class:`AutoencoderNet` owns its input scaling (an :class:`InputScaler` whose buffers
hold the training statistics), so the same saved tensors scale, encode and decode
everywhere: in the training loop, in the scoring UDF and after a save/load round trip.
All reconstruction errors are computed in the scaled space, as H2O's Reconstruction.MSE.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import nn

_ACTIVATIONS = {"tanh": nn.Tanh, "rectifier": nn.ReLU}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for an H2O activation name."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation: got {name!r}, expected one of "
                         f"{', '.join(sorted(_ACTIVATIONS))}") from None


def coding_layer(hidden: List[int]) -> int:
    """The 1-based coding layer: the narrowest hidden layer (the middle of a symmetric stack)."""
    narrowest = min(hidden)
    middle = (len(hidden) - 1) / 2
    candidates = [i for i, h in enumerate(hidden) if h == narrowest]
    return 1 + min(candidates, key=lambda i: abs(i - middle))


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

    def set_statistics(self, keep, shift, scale, fill) -> None:
        """Load scaling statistics (array-likes) into the buffers."""
        self.keep.copy_(torch.as_tensor(keep, dtype=torch.long))
        self.shift.copy_(torch.as_tensor(shift, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.fill.copy_(torch.as_tensor(fill, dtype=torch.float32))

    @property
    def all_kept(self) -> bool:
        return self.keep.numel() == self.input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.all_kept:
            x = x.index_select(1, self.keep)
        return (x - self.shift) * self.scale

    def unscale(self, y: torch.Tensor) -> torch.Tensor:
        """Map network outputs (scaled, kept features) back to the full input width and units."""
        y = y / self.scale + self.shift
        if self.all_kept:
            return y
        out = self.fill.expand(y.shape[0], -1).clone()
        out[:, self.keep] = y
        return out


class AutoencoderNet(nn.Module):
    """A dense autoencoder: one Linear layer per entry of ``hidden``, then a Linear output.

    Parameters
    ----------
    input_size : int
        Width of the rows the network receives (before feature selection).
    kept : int
        Number of input features the network models (after ``ignore_const_cols``).
    hidden : list of int
        Every hidden layer, encoder and decoder.
    activation : str
        Hidden activation name.
    output_activation : str
        ``"linear"`` or ``"same"`` (the hidden activation).
    """

    def __init__(self, input_size: int, kept: int, hidden: List[int], activation: str,
                 output_activation: str = "linear") -> None:
        super().__init__()
        self.scaler = InputScaler(input_size, kept)
        sizes = [kept] + list(hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.acts = nn.ModuleList(make_activation(activation) for _ in hidden)
        self.output = nn.Linear(sizes[-1], kept)
        self.output_act: Optional[nn.Module] = (
            make_activation(activation) if output_activation == "same" else None)
        for layer in list(self.layers) + [self.output]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def hidden_activations(self, z: torch.Tensor, upto: Optional[int] = None) -> List[torch.Tensor]:
        """Activations of hidden layers 1..upto (all by default) for scaled inputs ``z``."""
        outs = []
        for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
            if upto is not None and i >= upto:
                break
            z = act(layer(z))
            outs.append(z)
        return outs

    def decode_from_last(self, h: torch.Tensor) -> torch.Tensor:
        y = self.output(h)
        return self.output_act(y) if self.output_act is not None else y

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruct scaled inputs ``z`` (the output of :attr:`scaler`)."""
        return self.decode_from_last(self.hidden_activations(z)[-1])

    def weight_matrices(self) -> List[torch.Tensor]:
        """The weight matrices (no biases), for L1/L2 penalties."""
        return [m.weight for m in list(self.layers) + [self.output]]


def build_network(spec: Dict[str, Any]) -> AutoencoderNet:
    """Build an untrained network from a JSON-able architecture ``spec``."""
    return AutoencoderNet(spec["input_size"], spec["kept"], spec["hidden"], spec["activation"],
                          spec.get("output_activation", "linear"))
