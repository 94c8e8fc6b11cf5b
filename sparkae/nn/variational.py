"""The variational autoencoder (pure Torch, no Spark imports): encoder to a mean and a
log-variance, reparameterized sample, decoder (Kingma and Welling 2014; Doersch 2016)."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch

from sparkae.nn.coding import CodingNet, xavier_linear
from sparkae.nn.losses import kl_standard_normal


class VariationalNet(CodingNet):
    """Variational autoencoder: the coding layer is a Gaussian's mean, a parallel linear
    layer its log-variance; training decodes ``mu + exp(logvar / 2) * eps``, evaluation
    decodes ``mu`` (so ``deep_features`` are the means). After each training forward,
    ``last_kl`` holds the batch mean of ``KL(N(mu, sigma^2) || N(0, I))`` (nats per row)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        enc_out = self.code.in_features
        self.logvar = xavier_linear(enc_out, self.latent)
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
