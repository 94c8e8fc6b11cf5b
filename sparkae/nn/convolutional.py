"""The convolutional autoencoder (pure Torch, no Spark imports): stride-2 convolutions
down, transposed convolutions up (Masci et al. 2011); optional spatial + lifetime
winner-take-all on the last encoder layer (Makhzani and Frey 2015)."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from sparkae.nn import wta
from sparkae.nn.activations import make_activation, make_output_activation
from sparkae.nn.input_scaler import InputScaler
from sparkae.nn.layout import conv_hidden, conv_shapes, image_chw


class ConvAutoencoderNet(nn.Module):
    """Stacked stride-2 convolutions, then transposed convolutions back to the image.

    Rows are flat vectors of ``prod(image_shape)`` values (the full input width); features
    left out by ``ignore_const_cols`` enter as 0 (their scaled training value) and the
    reconstruction is reported for the kept features only. The coding layer is the last
    encoder layer (its maps, flattened).

    Parameters
    ----------
    input_size, kept : int
        Input width (must equal ``prod(image_shape)``) and kept features.
    image_shape : list of int
        ``[channels, height, width]`` (or ``[height, width]``).
    conv_filters : list of int
        Channels of each encoder convolution.
    kernel_size : int
        Square kernel of every convolution (odd).
    activation, output_activation : str
        As for :class:`AutoencoderNet` (no maxout).
    wta_sparsity : float, optional
        Spatial + lifetime WTA on the coding maps while training; spatial WTA (one value
        per map and row) also when scoring.
    """

    supports_csr_scoring = False
    dense_input = True

    def __init__(self, input_size: int, kept: int, image_shape: Sequence[int],
                 conv_filters: Sequence[int], kernel_size: int = 3, activation: str = "rectifier",
                 output_activation: str = "linear", wta_sparsity: Optional[float] = None) -> None:
        super().__init__()
        c, h, w = image_chw(image_shape)
        if c * h * w != input_size:
            raise ValueError(f"image_shape: {list(image_shape)} holds {c * h * w} values; the "
                             f"rows have {input_size}")
        self.scaler = InputScaler(input_size, kept)
        self.image = (c, h, w)
        self.shapes = conv_shapes(image_shape, conv_filters, kernel_size)
        self.hidden = conv_hidden(image_shape, conv_filters, kernel_size)
        self.coding = len(conv_filters)
        self.wta_sparsity = None if wta_sparsity is None else float(wta_sparsity)
        pad = kernel_size // 2
        chans = [c] + [s[0] for s in self.shapes]
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, kernel_size, stride=2, padding=pad)
                                     for a, b in zip(chans[:-1], chans[1:]))
        sizes = [(c, h, w)] + self.shapes
        self.decoder = nn.ModuleList()
        for i in range(len(self.shapes), 0, -1):
            src, dst = sizes[i], sizes[i - 1]
            out_pad = tuple(d - ((s - 1) * 2 - 2 * pad + kernel_size)
                            for s, d in zip(src[1:], dst[1:]))
            self.decoder.append(nn.ConvTranspose2d(src[0], dst[0], kernel_size, stride=2,
                                                   padding=pad, output_padding=out_pad))
        n_acts = len(self.encoder) + len(self.decoder) - 1
        self.acts = nn.ModuleList(make_activation(activation) for _ in range(n_acts))
        self.output_act = make_output_activation(activation, output_activation)
        for m in list(self.encoder) + list(self.decoder):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def _image(self, z: torch.Tensor) -> torch.Tensor:
        if self.scaler.all_kept:
            full = z
        else:
            full = z.new_zeros(z.shape[0], self.scaler.input_size)
            full[:, self.scaler.keep] = z
        return full.reshape(z.shape[0], *self.image)

    def _maps(self, z: torch.Tensor, upto: Optional[int] = None) -> List[torch.Tensor]:
        layers = list(self.encoder) + list(self.decoder)[:-1]
        last = len(layers) if upto is None else upto
        x, maps = self._image(z), []
        for i in range(last):
            x = self.acts[i](layers[i](x))
            if i == self.coding - 1 and self.wta_sparsity is not None:
                # spatial WTA is per row: it stays on when scoring; lifetime WTA needs a
                # batch and is for training only
                x = (wta.spatial_lifetime(x, self.wta_sparsity) if self.training
                     else wta.spatial(x))
            maps.append(x)
        return maps

    def hidden_activations(self, z: torch.Tensor, upto: Optional[int] = None) -> List[torch.Tensor]:
        """Hidden maps 1..upto, each flattened to rows x (channels * height * width)."""
        return [m.flatten(1) for m in self._maps(z, upto)]

    def coding_maps(self, z: torch.Tensor) -> torch.Tensor:
        """The coding layer's maps (rows x channels x height x width)."""
        return self._maps(z, self.coding)[-1]

    def _decode_maps(self, m: torch.Tensor) -> torch.Tensor:
        y = self.decoder[-1](m).flatten(1)
        if self.output_act is not None:
            y = self.output_act(y)
        return y if self.scaler.all_kept else y.index_select(1, self.scaler.keep)

    def decode_from_last(self, h: torch.Tensor) -> torch.Tensor:
        """The reconstruction (rows x kept) from the last hidden layer, flat or as maps."""
        if h.dim() == 2:  # the last hidden maps mirror the first encoder layer's
            h = h.reshape(h.shape[0], *self.shapes[0])
        return self._decode_maps(h)

    def forward(self, z: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Reconstruct scaled inputs ``z``; return ``(reconstruction, hidden activations)``."""
        maps = self._maps(z)
        return self._decode_maps(maps[-1]), [m.flatten(1) for m in maps]

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction of scaled inputs ``z``."""
        return self.forward(z)[0]

    def weight_matrices(self) -> List[torch.Tensor]:
        """The convolution kernels (no biases), for L1/L2 penalties and ``max_w2``."""
        return [m.weight for m in list(self.encoder) + list(self.decoder)]
