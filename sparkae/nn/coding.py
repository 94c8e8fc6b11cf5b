"""The dense encoder/decoder pair shared by the variational and adversarial families
(pure Torch): a dense encoder to a linear coding layer and a dense decoder back."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from sparkae.nn.activations import activation_pieces, make_activation, make_output_activation
from sparkae.nn.input_scaler import InputScaler
from sparkae.nn.layout import coding_layer


def linear_stack(sizes: Sequence[int], activation: str) -> Tuple[nn.ModuleList, nn.ModuleList]:
    """Linear layers ``sizes[0] -> sizes[1] -> ...`` with ``activation`` after each (maxout
    layers get ``pieces`` outputs per unit)."""
    pieces = activation_pieces(activation)
    layers = nn.ModuleList(nn.Linear(a, b * pieces) for a, b in zip(sizes[:-1], sizes[1:]))
    acts = nn.ModuleList(make_activation(activation) for _ in sizes[1:])
    for layer in layers:
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layers, acts


def xavier_linear(a: int, b: int) -> nn.Linear:
    """A ``Linear(a, b)`` with Xavier-uniform weights and zero biases."""
    layer = nn.Linear(a, b)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class CodingNet(nn.Module):
    """Dense encoder to a linear coding layer ``hidden[c]`` and a dense decoder back.

    ``hidden`` lists every hidden layer as for the dense net; the coding layer (the
    narrowest, or ``coding``) is linear; the others use ``activation``.
    """

    supports_csr_scoring = False
    dense_input = True

    def __init__(self, input_size: int, kept: int, hidden: List[int], activation: str,
                 output_activation: str = "linear", coding: Optional[int] = None) -> None:
        super().__init__()
        self.scaler = InputScaler(input_size, kept)
        self.hidden = list(hidden)
        self.coding = int(coding or coding_layer(self.hidden))
        c = self.coding - 1
        self.latent = self.hidden[c]
        self.enc_layers, self.enc_acts = linear_stack([kept] + self.hidden[:c], activation)
        enc_out = ([kept] + self.hidden[:c])[-1]
        self.code = xavier_linear(enc_out, self.latent)
        self.dec_layers, self.dec_acts = linear_stack([self.latent] + self.hidden[c + 1:],
                                                      activation)
        self.output = xavier_linear(([self.latent] + self.hidden[c + 1:])[-1], kept)
        self.output_act = make_output_activation(activation, output_activation)

    def _encoder_hidden(self, z: torch.Tensor) -> List[torch.Tensor]:
        outs = []
        for layer, act in zip(self.enc_layers, self.enc_acts):
            z = act(layer(z))
            outs.append(z)
        return outs

    def _decoder_hidden(self, code: torch.Tensor, upto: Optional[int] = None) -> List[torch.Tensor]:
        outs, h = [], code
        for i, (layer, act) in enumerate(zip(self.dec_layers, self.dec_acts)):
            if upto is not None and self.coding + i >= upto:
                break
            h = act(layer(h))
            outs.append(h)
        return outs

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """The (deterministic) codings of scaled rows ``z``."""
        enc = self._encoder_hidden(z)
        return self.code(enc[-1] if enc else z)

    def hidden_activations(self, z: torch.Tensor, upto: Optional[int] = None) -> List[torch.Tensor]:
        """Hidden activations 1..upto (all by default) of scaled rows ``z``."""
        enc = self._encoder_hidden(z)
        if upto is not None and upto <= len(enc):
            return enc[:upto]
        code = self._code(enc[-1] if enc else z)
        return enc + [code] + self._decoder_hidden(code, upto)

    def _code(self, h: torch.Tensor) -> torch.Tensor:
        return self.code(h)

    def decode_from_last(self, h: torch.Tensor) -> torch.Tensor:
        """The reconstruction (rows x kept) from the last hidden layer's activations."""
        y = self.output(h)
        return self.output_act(y) if self.output_act is not None else y

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Scaled reconstructions (rows x kept) of codings ``code``."""
        dec = self._decoder_hidden(code)
        return self.decode_from_last(dec[-1] if dec else code)

    def _reconstruct(self, z: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        acts = self.hidden_activations(z)
        return self.decode_from_last(acts[-1]), acts

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Reconstruct scaled inputs ``z``; return ``(reconstruction, hidden activations)``."""
        return self._reconstruct(z)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction of scaled inputs ``z``."""
        return self._reconstruct(z)[0]

    def weight_matrices(self) -> List[torch.Tensor]:
        """The weight matrices (no biases), for L1/L2 penalties and ``max_w2``."""
        return [m.weight for m in list(self.enc_layers) + [self.code] + list(self.dec_layers)
                + [self.output]]
