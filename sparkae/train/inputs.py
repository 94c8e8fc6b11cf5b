"""What a raw batch becomes before the network sees it (pure Torch): a tensor, rows with
missing values dropped on request, the network's scaling (or none, for a batch scaled
already: :class:`ScaledBatch`), and the seeded generators of each rank and epoch's random
draws (input noise, reconstruction sampling)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import torch

from sparkae.nn import sparse


def as_tensor(batch: Any) -> torch.Tensor:
    """A batch as a tensor (NumPy arrays without a copy)."""
    return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))


def drop_missing(x: torch.Tensor) -> torch.Tensor:
    """The rows of a dense batch without a missing (NaN) value; sparse batches unchanged."""
    return x[~torch.isnan(x).any(dim=1)] if not x.is_sparse and x.layout == torch.strided else x


def scaled_batch(net: torch.nn.Module, x: torch.Tensor, skip_missing: bool) -> torch.Tensor:
    """Scale a raw batch for ``net``; CSR batches stay sparse unless the network needs
    dense rows (``dense_input``: the convolutional, variational and adversarial families,
    which densify each batch)."""
    z = net.scaler(drop_missing(x) if skip_missing else x)
    if getattr(net, "dense_input", False) and sparse.is_sparse(z):
        z = sparse.densify(z, sparse.offset(net.scaler))
    return z


class ScaledBatch:
    """A batch already through the network's scaler, its rows with missing values already
    dropped (rows a rank keeps in memory, scaled once when they were loaded:
    :mod:`sparkae.data.memory`); :func:`prepare` passes it on as it is."""

    __slots__ = ("z",)

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z


def prepare(net: torch.nn.Module, batch: Any, skip_missing: bool) -> torch.Tensor:
    """The scaled batch the network trains on, from a raw batch (NumPy, dense or CSR
    tensor: :func:`scaled_batch`) or a :class:`ScaledBatch`."""
    if isinstance(batch, ScaledBatch):
        return batch.z
    return scaled_batch(net, as_tensor(batch), skip_missing)


def noise_generator(seed: int, rank: int, epoch: int, device: torch.device,
                    stream: int = 0) -> torch.Generator:
    """The input-noise generator of one rank and epoch, on the batches' device.

    Seeded from ``(seed, rank, epoch)``: every rank corrupts its rows differently, and a
    fit resumed at any epoch draws exactly the noise an uninterrupted fit would have.
    ``stream`` > 0 gives other independent draws (1: reconstruction sampling)."""
    gen = torch.Generator(device=device)
    entropy = [seed, rank, epoch] + ([stream] if stream else [])
    gen.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return gen


class EpochGenerators:
    """One rank's :func:`noise_generator` per stream, made on the first draw of each epoch
    (on that batch's device) and kept for the rest of the epoch."""

    #: Stream of the reconstruction sampling's draws (0 is the input noise's).
    SAMPLING = 1

    def __init__(self, seed: int, rank: int) -> None:
        self.seed, self.rank = seed, rank
        self._made: Dict[int, Tuple[int, torch.Generator]] = {}

    def get(self, epoch: int, device: torch.device, stream: int = 0) -> torch.Generator:
        """The generator of ``stream`` for ``epoch``."""
        made = self._made.get(stream)
        if made is None or made[0] != epoch:
            made = (epoch, noise_generator(self.seed, self.rank, epoch, device, stream))
            self._made[stream] = made
        return made[1]
