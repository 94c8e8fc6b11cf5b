"""One rank's training loop (pure Torch; no Spark imports).

The loop takes callables that yield raw-feature batches (NumPy or Torch), so it runs the
same on the driver, inside a TorchDistributor rank, or in a unit test on in-memory data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np
import torch

from sparkae.nn.models import AutoencoderNet

log = logging.getLogger("sparkae")

Batches = Callable[[int], Iterable]  # epoch -> iterable of raw feature batches


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


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with ``rate``, or H2O's ADADELTA (``rho``, ``epsilon``, unit learning rate)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=cfg.rate)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(net.parameters(), lr=1.0, rho=cfg.rho, eps=cfg.epsilon)
    raise ValueError(f"optimizer: got {cfg.optimizer!r}, expected 'adam' or 'adadelta'")


def _tensor(batch) -> torch.Tensor:
    return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))


def penalty(net: AutoencoderNet, cfg: TrainConfig) -> torch.Tensor:
    """``l1 * sum|W| + l2 / 2 * sum W^2`` over weight matrices (H2O's decay, no biases)."""
    total = torch.zeros(())
    for w in net.weight_matrices():
        if cfg.l1:
            total = total + cfg.l1 * w.abs().sum()
        if cfg.l2:
            total = total + 0.5 * cfg.l2 * (w * w).sum()
    return total


@torch.no_grad()
def evaluate(net: AutoencoderNet, batches: Iterable) -> float:
    """Mean over rows of the per-row reconstruction MSE in the scaled space."""
    net.eval()
    total, rows = 0.0, 0
    for batch in batches:
        z = net.scaler(_tensor(batch))
        total += float(((net(z) - z) ** 2).mean(dim=1).sum())
        rows += z.shape[0]
    return total / rows if rows else float("nan")


def train(net: AutoencoderNet, train_batches: Batches, cfg: TrainConfig,
          valid_batches: Optional[Callable[[], Iterable]] = None,
          on_epoch: Optional[Callable[[Dict], None]] = None) -> List[Dict]:
    """Train ``net`` in place and return the per-epoch history.

    Parameters
    ----------
    net : AutoencoderNet
        Network whose scaler already holds the training statistics.
    train_batches : callable
        ``train_batches(epoch)`` yields the raw feature batches of that epoch.
    cfg : TrainConfig
        Optimizer and penalty settings.
    valid_batches : callable, optional
        ``valid_batches()`` yields validation batches; scored after every epoch.
    on_epoch : callable, optional
        Called with each epoch's history entry (for progress reporting).

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, ``train_mse`` (mean of the epoch's batch losses),
        ``validation_mse`` (or None), ``rows``, ``seconds``, ``rows_per_s``.

    Raises
    ------
    FloatingPointError
        When the loss becomes NaN or infinite.
    """
    opt = make_optimizer(net, cfg)
    history: List[Dict] = []
    for epoch in range(cfg.epochs):
        net.train()
        t0 = time.perf_counter()
        loss_sum, rows = 0.0, 0
        for batch in train_batches(epoch):
            z = net.scaler(_tensor(batch))
            mse = torch.nn.functional.mse_loss(net(z), z)
            loss = mse + penalty(net, cfg) if (cfg.l1 or cfg.l2) else mse
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(mse.detach()) * z.shape[0]
            rows += z.shape[0]
        if rows == 0:
            raise ValueError("the training data yielded no rows")
        train_mse = loss_sum / rows
        if not np.isfinite(train_mse):
            raise FloatingPointError(f"training diverged in epoch {epoch + 1}: the loss is "
                                     f"{train_mse}; lower 'rate' or check the input scaling")
        seconds = time.perf_counter() - t0
        entry = {"epoch": epoch + 1, "train_mse": train_mse,
                 "validation_mse": evaluate(net, valid_batches()) if valid_batches else None,
                 "rows": rows, "seconds": seconds, "rows_per_s": rows / max(seconds, 1e-9)}
        history.append(entry)
        if on_epoch:
            on_epoch(entry)
    net.eval()
    return history
