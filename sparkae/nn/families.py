"""Autoencoder families beyond H2O's dense network (pure Torch, no Spark imports).

Every network here has the interface the training loop and the scorer use on
:class:`~sparkae.nn.models.AutoencoderNet`: ``scaler`` (an :class:`InputScaler`),
``hidden`` (the width of every hidden layer), ``forward(z) -> (reconstruction, hidden
activations)``, ``hidden_activations(z, upto)``, ``decode_from_last(h)``, ``reconstruct``
and ``weight_matrices()``. Inputs ``z`` are scaled, dense rows of the kept features.

- :class:`WTADenseNet`: a dense network whose coding layer has lifetime winner-take-all
  sparsity in training (Makhzani and Frey 2015).
- :class:`ConvAutoencoderNet`: stride-2 convolutions down, transposed convolutions up
  (Masci et al. 2011); optional spatial + lifetime WTA on the last encoder layer.
- :class:`VariationalNet`: encoder to a mean and a log-variance, reparameterized sample,
  decoder (Kingma and Welling 2014; Doersch 2016). ``last_kl`` holds the batch's KL term.
- :class:`AdversarialNet`: a deterministic encoder and decoder plus a discriminator on the
  codings against a prior (Makhzani et al. 2015); ``forward(z, phase=...)`` serves the
  three alternating phases so that each runs as one DistributedDataParallel forward.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from sparkae.nn import wta
from sparkae.nn.losses import kl_standard_normal
from sparkae.nn.models import (ACTIVATIONS, AutoencoderNet, InputScaler, base_activation,
                               make_activation)

ARCHITECTURES = ("dense", "convolutional", "variational", "adversarial")
PRIORS = ("gaussian", "uniform")
#: Hidden widths of the adversarial discriminator.
DISCRIMINATOR_HIDDEN = (64, 64)


def _linear_stack(sizes: Sequence[int], activation: str) -> Tuple[nn.ModuleList, nn.ModuleList]:
    """Linear layers ``sizes[0] -> sizes[1] -> ...`` with ``activation`` after each (maxout
    layers get ``pieces`` outputs per unit)."""
    pieces = ACTIVATIONS[base_activation(activation)][1]
    layers = nn.ModuleList(nn.Linear(a, b * pieces) for a, b in zip(sizes[:-1], sizes[1:]))
    acts = nn.ModuleList(make_activation(activation) for _ in sizes[1:])
    for layer in layers:
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layers, acts


def _linear(a: int, b: int) -> nn.Linear:
    layer = nn.Linear(a, b)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _output_activation(activation: str, output_activation: str) -> Optional[nn.Module]:
    if output_activation != "same":
        return None
    return make_activation(activation)


def spec_coding_layer(spec: Dict[str, Any]) -> int:
    """The 1-based coding layer of a network spec (stored, else the narrowest layer)."""
    from sparkae.nn.models import coding_layer

    return int(spec.get("coding_layer") or coding_layer(spec["hidden"]))


# -- dense with winner-take-all ------------------------------------------------------------

class WTADenseNet(AutoencoderNet):
    """:class:`AutoencoderNet` with lifetime WTA on coding layer ``coding`` (1-based) while
    training: each coding unit keeps its top ``wta_sparsity`` share of the batch."""

    def __init__(self, *args: Any, wta_sparsity: float, coding: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wta_sparsity, self.coding = float(wta_sparsity), int(coding)

    def after_activation(self, index: int, h: torch.Tensor) -> torch.Tensor:
        if self.training and index == self.coding - 1:
            return wta.lifetime(h, self.wta_sparsity)
        return h


# -- convolutional -------------------------------------------------------------------------

def conv_shapes(image_shape: Sequence[int], filters: Sequence[int],
                kernel_size: int) -> List[Tuple[int, int, int]]:
    """``(channels, height, width)`` after each stride-2 encoder convolution."""
    _, h, w = _chw(image_shape)
    pad = kernel_size // 2
    shapes = []
    for f in filters:
        h = (h + 2 * pad - kernel_size) // 2 + 1
        w = (w + 2 * pad - kernel_size) // 2 + 1
        if h < 1 or w < 1:
            raise ValueError(f"conv_filters: {list(filters)} halves the image {list(image_shape)} "
                             "below one pixel; use fewer layers")
        shapes.append((int(f), h, w))
    return shapes


def _chw(image_shape: Sequence[int]) -> Tuple[int, int, int]:
    shape = [int(v) for v in image_shape]
    return (1, shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[1], shape[2])


def conv_hidden(image_shape: Sequence[int], filters: Sequence[int],
                kernel_size: int) -> List[int]:
    """Flattened widths of every hidden layer: the encoder maps, then the decoder's
    intermediate maps (mirror images of the encoder's, the image itself excluded)."""
    enc = [c * h * w for c, h, w in conv_shapes(image_shape, filters, kernel_size)]
    return enc + enc[-2::-1]


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
        c, h, w = _chw(image_shape)
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
        self.output_act = _output_activation(activation, output_activation)
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
        maps = self._maps(z)
        return self._decode_maps(maps[-1]), [m.flatten(1) for m in maps]

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward(z)[0]

    def weight_matrices(self) -> List[torch.Tensor]:
        return [m.weight for m in list(self.encoder) + list(self.decoder)]


# -- encoder/decoder MLPs shared by the variational and adversarial nets -------------------

class _CodingNet(nn.Module):
    """Dense encoder to a linear coding layer ``hidden[c]`` and a dense decoder back.

    ``hidden`` lists every hidden layer as for the dense net; the coding layer (the
    narrowest, or ``coding``) is linear; the others use ``activation``.
    """

    supports_csr_scoring = False
    dense_input = True

    def __init__(self, input_size: int, kept: int, hidden: List[int], activation: str,
                 output_activation: str = "linear", coding: Optional[int] = None) -> None:
        super().__init__()
        from sparkae.nn.models import coding_layer

        self.scaler = InputScaler(input_size, kept)
        self.hidden = list(hidden)
        self.coding = int(coding or coding_layer(self.hidden))
        c = self.coding - 1
        self.latent = self.hidden[c]
        self.enc_layers, self.enc_acts = _linear_stack([kept] + self.hidden[:c], activation)
        enc_out = ([kept] + self.hidden[:c])[-1]
        self.code = _linear(enc_out, self.latent)
        self.dec_layers, self.dec_acts = _linear_stack([self.latent] + self.hidden[c + 1:],
                                                       activation)
        self.output = _linear(([self.latent] + self.hidden[c + 1:])[-1], kept)
        self.output_act = _output_activation(activation, output_activation)

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
        enc = self._encoder_hidden(z)
        if upto is not None and upto <= len(enc):
            return enc[:upto]
        code = self._code(enc[-1] if enc else z)
        return enc + [code] + self._decoder_hidden(code, upto)

    def _code(self, h: torch.Tensor) -> torch.Tensor:
        return self.code(h)

    def decode_from_last(self, h: torch.Tensor) -> torch.Tensor:
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
        return self._reconstruct(z)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        return self._reconstruct(z)[0]

    def weight_matrices(self) -> List[torch.Tensor]:
        return [m.weight for m in list(self.enc_layers) + [self.code] + list(self.dec_layers)
                + [self.output]]


class VariationalNet(_CodingNet):
    """Variational autoencoder: the coding layer is a Gaussian's mean, a parallel linear
    layer its log-variance; training decodes ``mu + exp(logvar / 2) * eps``, evaluation
    decodes ``mu`` (so ``deep_features`` are the means). After each training forward,
    ``last_kl`` holds the batch mean of ``KL(N(mu, sigma^2) || N(0, I))`` (nats per row)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        enc_out = self.code.in_features
        self.logvar = _linear(enc_out, self.latent)
        self.last_kl: Optional[torch.Tensor] = None

    def posterior(self, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of the codings of scaled rows ``z``."""
        enc = self._encoder_hidden(z)
        h = enc[-1] if enc else z
        return self.code(h), self.logvar(h)

    def _code(self, h: torch.Tensor) -> torch.Tensor:
        mu = self.code(h)
        if not self.training:
            return mu
        logvar = self.logvar(h).clamp(-30.0, 20.0)
        self.last_kl = kl_standard_normal(mu, logvar)
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` draws from N(0, I) in the coding space."""
        return torch.randn(n, self.latent, generator=generator)


class AdversarialNet(_CodingNet):
    """Adversarial autoencoder: a deterministic encoder and decoder, and a discriminator
    that tells codings from draws of ``prior`` (``gaussian`` N(0, I) or ``uniform`` on
    [-1, 1]^k).

    ``forward(z, phase)`` runs one of the alternating phases: ``"reconstruct"`` returns
    ``(reconstruction, hidden activations)``; ``"discriminator"`` returns the
    discriminator's logits on prior draws and on (detached) codings; ``"generator"``
    returns its logits on the codings (the encoder learns to make them look like draws).
    """

    ddp_find_unused_parameters = True

    def __init__(self, *args: Any, prior: str = "gaussian", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if prior not in PRIORS:
            raise ValueError(f"prior: got {prior!r}, expected one of {', '.join(PRIORS)}")
        self.prior = prior
        sizes = [self.latent] + list(DISCRIMINATOR_HIDDEN)
        layers: List[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [_linear(a, b), nn.LeakyReLU(0.2)]
        self.discriminator = nn.Sequential(*layers, _linear(sizes[-1], 1))

    def sample_prior(self, n: int, generator: Optional[torch.Generator] = None,
                     device: Optional[torch.device] = None) -> torch.Tensor:
        """``n`` draws from the prior in the coding space."""
        device = device or self.code.weight.device
        if self.prior == "uniform":
            u = torch.rand(n, self.latent, generator=generator)
            return (2.0 * u - 1.0).to(device)
        return torch.randn(n, self.latent, generator=generator).to(device)

    def autoencoder_parameters(self) -> List[nn.Parameter]:
        """Encoder and decoder parameters (the reconstruction phase's)."""
        skip = {id(p) for p in self.discriminator.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def encoder_parameters(self) -> List[nn.Parameter]:
        """Encoder parameters (the generator phase's)."""
        return list(self.enc_layers.parameters()) + list(self.code.parameters())

    def forward(self, z: torch.Tensor, phase: str = "reconstruct"):
        if phase == "reconstruct":
            return self._reconstruct(z)
        if phase == "discriminator":
            with torch.no_grad():
                codes = self.encode(z)
            prior = self.sample_prior(z.shape[0], device=codes.device)
            return self.discriminator(prior), self.discriminator(codes)
        if phase == "generator":
            return self.discriminator(self.encode(z))
        raise ValueError(f"phase: got {phase!r}, expected reconstruct, discriminator or "
                         "generator")


def adversarial_losses(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss: prior draws labelled 1, codings 0 (logits in)."""
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) +
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """The encoder's adversarial loss: its codings labelled 1 (non-saturating form)."""
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Squared maximum mean discrepancy between samples ``x`` and ``y`` (rows x dims), with
    a sum of Gaussian kernels of bandwidths 0.5, 1, 2 and 4 times sqrt(dims): 0 when the
    two samples come from one distribution (up to sampling noise)."""
    xy = torch.cat([x, y]).double()
    d2 = torch.cdist(xy, xy).pow(2)
    scale = x.shape[1]
    k = sum(torch.exp(-d2 / (2.0 * (b * b) * scale)) for b in (0.5, 1.0, 2.0, 4.0))
    n = x.shape[0]
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean())


def build_family(spec: Dict[str, Any]) -> nn.Module:
    """The network of a non-dense ``spec`` (or a dense one with ``wta_sparsity``)."""
    arch = spec.get("architecture", "dense")
    common = (spec["input_size"], spec["kept"])
    out_act = spec.get("output_activation", "linear")
    if arch == "dense":
        return WTADenseNet(*common, spec["hidden"], spec["activation"], out_act,
                           spec.get("hidden_dropout_ratios"), wta_sparsity=spec["wta_sparsity"],
                           coding=spec_coding_layer(spec))
    if arch == "convolutional":
        return ConvAutoencoderNet(*common, spec["image_shape"], spec["conv_filters"],
                                  spec["kernel_size"], spec["activation"], out_act,
                                  spec.get("wta_sparsity"))
    if arch == "variational":
        return VariationalNet(*common, spec["hidden"], spec["activation"], out_act,
                              spec.get("coding_layer"))
    if arch == "adversarial":
        return AdversarialNet(*common, spec["hidden"], spec["activation"], out_act,
                              spec.get("coding_layer"), prior=spec.get("prior", "gaussian"))
    raise ValueError(f"architecture: got {arch!r}, expected one of {', '.join(ARCHITECTURES)}")


def parameter_count(net: nn.Module) -> int:
    """Trainable parameters of ``net`` (the discriminator included)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
