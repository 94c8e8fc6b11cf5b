"""Scoring a fit as it runs (pure Torch): the reconstruction MSE of a set of batches,
early stopping on it, and the best weights seen."""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, Optional

import torch

from sparkae.nn import sparse
from sparkae.train.config import TrainConfig
from sparkae.train.inputs import as_tensor, scaled_batch


@torch.no_grad()
def evaluate(net: torch.nn.Module, batches: Iterable, skip_missing: bool = False) -> float:
    """Mean over rows of the per-row reconstruction MSE in the scaled space."""
    net.eval()
    total, rows = 0.0, 0
    for batch in batches:
        z = scaled_batch(net, as_tensor(batch), skip_missing)
        y = net.reconstruct(z)
        total += float(sparse.row_mse(y, z).sum() if sparse.is_sparse(z)
                       else ((y - z) ** 2).mean(dim=1).sum())
        rows += z.shape[0]
    return total / rows if rows else float("nan")


def copy_state(net: torch.nn.Module) -> Dict[str, Any]:
    """A copy of ``net``'s state dict, each tensor contiguous and its own (a parameter that
    is a view of a larger buffer, as in :mod:`sparkae.train.lazy`, copies its elements
    only)."""
    return {k: v.detach().clone(memory_format=torch.contiguous_format)
            if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in net.state_dict().items()}


class Stopper:
    """Early stopping on the scored metric, and the best weights seen."""

    def __init__(self, cfg: TrainConfig, state: Optional[Dict] = None) -> None:
        self.cfg = cfg
        state = state or {}
        self.best = state.get("best_metric", float("inf"))
        self.best_epoch = state.get("best_epoch", 0)
        self.since = state.get("since", 0)
        self.weights: Optional[Dict[str, torch.Tensor]] = None

    @classmethod
    def resumed(cls, cfg: TrainConfig, resume_state: Dict[str, Any], net: torch.nn.Module,
                epochs_done: int) -> "Stopper":
        """The stopper of a checkpoint (``resume_state``) taken after ``epochs_done``
        epochs, with the best weights it kept."""
        stopper = cls(cfg, resume_state.get("stopper"))
        stopper.weights = resume_state.get("best_model")
        if (stopper.weights is None and cfg.overwrite_with_best_model
                and 0 < stopper.best_epoch == epochs_done):
            # the checkpoint's own model was the best (saved on what was the last epoch)
            stopper.weights = copy_state(net)
        return stopper

    def update(self, epoch: int, metric: float, net: torch.nn.Module, last: bool = False) -> bool:
        """Record a scoring event; return True when training should stop. On the ``last``
        epoch a best model is the network itself: no copy (``weights`` None)."""
        if metric < self.best * (1.0 - self.cfg.stopping_tolerance) or self.best_epoch == 0:
            self.best, self.best_epoch, self.since = metric, epoch, 0
            if self.cfg.overwrite_with_best_model:
                self.weights = None if last else copy_state(net)
        else:
            self.since += 1
        return self.cfg.stopping_rounds > 0 and self.since >= self.cfg.stopping_rounds

    def state(self) -> Dict[str, Any]:
        """What a checkpoint keeps to resume the early stopping."""
        return {"best_metric": self.best, "best_epoch": self.best_epoch, "since": self.since}
