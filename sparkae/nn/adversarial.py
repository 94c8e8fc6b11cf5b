"""The adversarial autoencoder (pure Torch, no Spark imports): a deterministic encoder
and decoder plus a discriminator on the codings against a prior (Makhzani et al. 2015);
``forward(z, phase=...)`` serves the three alternating phases, each one forward of the
network. Also the phases' losses and the MMD check of the
codings against the prior."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from sparkae.nn.coding import CodingNet, xavier_linear

PRIORS = ("gaussian", "uniform")
#: Hidden widths of the adversarial discriminator.
DISCRIMINATOR_HIDDEN = (64, 64)


class AdversarialNet(CodingNet):
    """Adversarial autoencoder: a deterministic encoder and decoder, and a discriminator
    that tells codings from draws of ``prior`` (``gaussian`` N(0, I) or ``uniform`` on
    [-1, 1]^k).

    ``forward(z, phase)`` runs one of the alternating phases: ``"reconstruct"`` returns
    ``(reconstruction, hidden activations)``; ``"discriminator"`` returns the
    discriminator's logits on prior draws and on (detached) codings; ``"generator"``
    returns its logits on the codings (the encoder learns to make them look like draws).
    """

    def __init__(self, *args: Any, prior: str = "gaussian", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if prior not in PRIORS:
            raise ValueError(f"prior: got {prior!r}, expected one of {', '.join(PRIORS)}")
        self.prior = prior
        sizes = [self.latent] + list(DISCRIMINATOR_HIDDEN)
        layers: List[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [xavier_linear(a, b), nn.LeakyReLU(0.2)]
        self.discriminator = nn.Sequential(*layers, xavier_linear(sizes[-1], 1))

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

    def forward(self, z: torch.Tensor, phase: str = "reconstruct"
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, Any]]:
        """Run one phase on scaled rows ``z`` (see the class docstring)."""
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
