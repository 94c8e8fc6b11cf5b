"""Launch training ranks. The only module meant to touch TorchDistributor.

For now every fit runs one rank in the driver process (:func:`launch`); the rank reads
the materialized Parquet batch by batch, so the driver never holds the table. A
distributed launcher replaces :func:`launch` and runs :func:`run_rank` in each rank.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from sparkae.data.converter import ParquetBatches
from sparkae.nn.models import build_network
from sparkae.train.loop import TrainConfig, train

log = logging.getLogger("sparkae")


@dataclass
class TrainJob:
    """Everything a rank needs, as plain picklable values."""

    train_path: str
    valid_path: Optional[str]
    spec: Dict[str, Any]
    scaling: Dict[str, Any]          # keep, shift, scale, fill (lists or arrays)
    config: TrainConfig
    batch_size: int
    seed: int
    num_threads: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def run_rank(job: TrainJob, rank: int = 0, world_size: int = 1) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    """Train one rank; return ``(state_dict, history)``."""
    size = job.spec["input_size"]
    torch.manual_seed(job.seed)
    net = build_network(job.spec)
    net.scaler.set_statistics(**job.scaling)
    reader = ParquetBatches(job.train_path, size, job.batch_size, shuffle=True, seed=job.seed,
                            rank=rank, world_size=world_size, role="training data")
    valid = None
    if job.valid_path:
        vreader = ParquetBatches(job.valid_path, size, 4096, shuffle=False,
                                 role="validation_df")
        valid = lambda: vreader.epoch(0)  # noqa: E731
    epochs = job.config.epochs

    def progress(entry: Dict) -> None:
        v = entry["validation_mse"]
        log.info("epoch %d/%d  train_mse=%.6f%s  %.0f rows/s", entry["epoch"], epochs,
                 entry["train_mse"], "" if v is None else f"  validation_mse={v:.6f}",
                 entry["rows_per_s"])

    history = train(net, reader.epoch, job.config, valid, on_epoch=progress)
    return net.state_dict(), history


def launch(job: TrainJob) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    """Run the training job in this process with ``num_threads`` Torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(job.num_threads or os.cpu_count() or 1)
    try:
        return run_rank(job)
    finally:
        torch.set_num_threads(previous)
