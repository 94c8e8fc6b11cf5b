"""The training loop's settings (a subset of the Autoencoder Params)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class TrainConfig:
    """Settings of the loop (a subset of the Autoencoder Params)."""

    epochs: int = 10
    optimizer: str = "adam"
    rate: float = 0.001
    rho: float = 0.99
    epsilon: float = 1e-8
    l1: float = 0.0
    l2: float = 0.0
    # sgd
    rate_annealing: float = 0.0
    momentum_start: float = 0.0
    momentum_ramp: float = 1e6
    momentum_stable: float = 0.0
    nesterov: bool = True
    max_w2: float = float("inf")
    # sparse autoencoder (on the coding layer, 1-based)
    sparsity_beta: float = 0.0
    average_activation: float = 0.0
    sparsity_method: str = "kl"
    activation: str = "tanh"
    coding_layer: int = 1
    # denoising
    input_dropout_ratio: float = 0.0
    noise: str = "none"
    noise_level: float = 0.0
    # early stopping
    stopping_rounds: int = 0
    stopping_tolerance: float = 0.0
    score_interval: int = 1
    overwrite_with_best_model: bool = True
    skip_missing: bool = False
    seed: int = 0
    # families beyond H2O (sparkae.nn.families)
    architecture: str = "dense"
    kl_beta: float = 1.0
    contractive_lambda: float = 0.0
    # sparse batches: stored columns plus this many sampled zero columns per row in the
    # training loss (None = the exact loss); see sparkae.nn.sampling
    reconstruction_sampling: Optional[int] = None
