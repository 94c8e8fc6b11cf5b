"""What one training rank runs, in whatever process it lives in.

:class:`TrainJob` holds everything a rank needs as plain picklable values;
:func:`run_rank` builds the network, reads the rank's shard of the materialized Parquet,
trains it (resuming from a checkpoint when asked) and returns the weights and the history.
The driver calls it directly for ``num_workers=1``; :func:`sparkae.train.worker.rank_main`
calls it inside a process group for ``num_workers > 1``. This module starts no process and
knows nothing of Spark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch

from sparkae.data.batches import to_device
from sparkae.data.converter import ParquetBatches, read_threads, read_unit_arrow
from sparkae.data.memory import MemoryEpochs, budget_bytes, table_bytes
from sparkae.io import fs
from sparkae.nn.models import build_network
from sparkae.progress import EpochProgress
from sparkae.train import checkpoint as ckpt
from sparkae.train.inputs import ScaledBatch
from sparkae.train.loop import TrainConfig, train

log = logging.getLogger("sparkae")

#: Most output values (rows x modelled features) in one validation batch.
VALID_BATCH_VALUES = 16_000_000


@dataclass
class TrainJob:
    """Everything a rank needs, as plain picklable values."""

    train_path: Union[str, List[str]]              # materialized directory or its files
    valid_path: Optional[Union[str, List[str]]]
    spec: Dict[str, Any]
    scaling: Dict[str, Any]          # keep, shift, scale, fill (lists or arrays)
    config: TrainConfig
    batch_size: int
    seed: int
    num_threads: Optional[int] = None
    num_workers: int = 1
    use_gpu: bool = False
    loader: str = "arrow"            # resolved loader: "arrow" or "petastorm"
    sparse: bool = False             # CSR batches into the first layer
    checkpoint_dir: Optional[str] = None
    checkpoint_interval: int = 1
    resume_from: Optional[str] = None   # a checkpoint directory
    meta: Dict[str, Any] = field(default_factory=dict)   # stored with every checkpoint
    threads_per_rank: int = 1
    timeout_s: int = 1800            # collective timeout of the process group
    run_dir: Optional[str] = None    # local mode: where failing ranks leave their error
    extra: Dict[str, Any] = field(default_factory=dict)
    progress: str = "auto"           # the progress Param (sparkae.progress)
    storage: Optional[Dict[str, str]] = None   # sparkae.io settings from the driver's Spark
    # bytes of scaled training rows a rank may keep in memory between epochs (None: the
    # default of sparkae.data.memory.budget_bytes; 0: stream every epoch from the files)
    epoch_memory: Optional[int] = None


def _unit_reader(loader: str) -> Callable:
    if loader == "petastorm":
        from sparkae.data.petastorm import read_unit

        return read_unit
    return read_unit_arrow


def _to_device(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    return to_device(batch, device)


def _in_memory(job: TrainJob, reader: ParquetBatches, net: torch.nn.Module,
               device: torch.device) -> Optional[MemoryEpochs]:
    """The rank's rows kept in memory, scaled once (:mod:`sparkae.data.memory`), when the
    batches are dense and the table fits the memory budget; else None (each epoch streams
    from the files)."""
    if job.sparse:
        return None
    budget = budget_bytes(job.epoch_memory)
    need = table_bytes(reader, int(job.spec["kept"]))
    if need > budget:
        log.info("training data: %.0f MiB as scaled rows, over the memory budget of %.0f MiB: "
                 "every epoch is read from the materialized files", need / 2**20,
                 budget / 2**20)
        return None
    log.info("training data: kept in memory after its first read (%.0f MiB of scaled rows, "
             "budget %.0f MiB)", need / 2**20, budget / 2**20)
    return MemoryEpochs(reader, net.scaler, device, job.config.skip_missing)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 9_176 + rank * 7_919) % (2**63 - 1)


def run_rank(job: TrainJob, rank: int = 0, world_size: int = 1,
             wrap: Optional[Callable[[torch.nn.Module], torch.nn.Module]] = None,
             reduce: Optional[Callable[[List[float]], List[float]]] = None,
             device: Optional[torch.device] = None) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    """Train one rank; return ``(state_dict, history)``.

    Parameters
    ----------
    job : TrainJob
        What to train and how.
    rank, world_size : int
        This rank's shard of the training data.
    wrap : callable, optional
        Prepares the network for several ranks (rank 0's weights on every rank) and
        returns the module for the forward pass.
    reduce : callable, optional
        Sums floats across ranks (see :func:`sparkae.train.loop.train`).
    device : torch.device, optional
        Default CPU.

    Returns
    -------
    tuple
        The trained weights (on the CPU) and the per-epoch history.
    """
    with fs.using(job.storage):   # reach the cache and checkpoints as the driver does
        return _run_rank(job, rank, world_size, wrap, reduce, device)


def _run_rank(job: TrainJob, rank: int, world_size: int, wrap: Optional[Callable],
              reduce: Optional[Callable], device: Optional[torch.device]
              ) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    device = device or torch.device("cpu")
    size = job.spec["input_size"]
    torch.manual_seed(job.seed)
    net = build_network(job.spec)
    net.scaler.set_statistics(**job.scaling)
    resume_state = None
    if job.resume_from:
        epoch, resume_state, _ = ckpt.load(job.resume_from)
        net.load_state_dict(resume_state["model"])
        log.info("resuming after epoch %d from %s", epoch, job.resume_from)
    net.to(device)
    # mini_batch_size is the global batch: the ranks split it, so a step sees the same
    # number of rows (and the model the same dynamics) whatever num_workers is.
    rank_batch = -(-job.batch_size // world_size)
    reader = ParquetBatches(job.train_path, size, rank_batch, shuffle=True, seed=job.seed,
                            rank=rank, world_size=world_size, role="training data",
                            sparse=job.sparse, reader=_unit_reader(job.loader),
                            skip_missing=job.config.skip_missing,
                            read_threads=read_threads(device.type))
    memory = _in_memory(job, reader, net, device)
    valid = None
    if job.valid_path:
        rows = max(1, min(4096, VALID_BATCH_VALUES // max(1, job.spec["kept"])))
        vreader = ParquetBatches(job.valid_path, size, rows, shuffle=False, role="validation_df",
                                 sparse=job.sparse, reader=_unit_reader(job.loader),
                                 skip_missing=job.config.skip_missing)
        valid = lambda: (_to_device(b, device) for b in vreader.epoch(0))  # noqa: E731

    def batches(epoch: int) -> Iterator[Any]:
        # Dropout and noise draws depend on (seed, epoch, rank) only: a resumed fit repeats
        # the uninterrupted one exactly.
        torch.manual_seed(_epoch_seed(job.seed, epoch, rank))
        if memory is not None:
            for z in memory.epoch(epoch):
                yield ScaledBatch(z)
            return
        for b in reader.epoch(epoch):
            yield _to_device(b, device)

    epochs = job.config.epochs
    # Ranks of a distributed run write to a pipe the driver reads: log lines, not a bar.
    mode = "log" if world_size > 1 and job.progress == "bar" else job.progress
    progress = EpochProgress(mode, epochs, rank=rank,
                             start_epoch=len(resume_state["history"]) if resume_state else 0)

    def save(epoch: int, state: Dict[str, Any]) -> None:
        if epoch % job.checkpoint_interval == 0 or epoch == epochs:
            ckpt.save(job.checkpoint_dir, epoch, state, job.meta)

    model = wrap(net) if wrap is not None else net
    try:
        history = train(net, batches, job.config, valid, on_epoch=progress, model=model,
                        reduce=reduce, resume_state=resume_state,
                        checkpoint=save if job.checkpoint_dir and rank == 0 else None,
                        rank=rank)
    finally:
        progress.close()
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}, history
