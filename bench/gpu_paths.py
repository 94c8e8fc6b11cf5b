"""sparkae's wide-sparse paths run on a device and checked against the CPU (part of
``python -m bench gpu``, which records what this returns).

The GPU entry's figures come from MNIST rows, dense enough that every batch is densified.
Wide sparse rows take other code: CSR training batches (the scaler and the first layer on a
``torch.sparse_csr`` tensor, the exact loss over every feature or
``reconstruction_sampling``'s sampled loss with its lazy Adam step, validation on CSR
batches) and, in scoring, the CSR first layer, the error without a full-width output
(:mod:`sparkae.scoring.sparse_mse`), clipping and the selection of modelled features. Each
check runs that code on ``device`` and on the CPU from the same data and compares:

- training (one rank, ``launch(TrainJob(sparse=True, use_gpu=...))``, 2 epochs, with a
  validation table): the epochs' training and validation MSE, which the device's own
  arithmetic (and, with sampling, its own random draws) lets differ a little;
- scoring (:class:`sparkae.scoring.forward.Scorer`, one seeded untrained network rebuilt
  on each device): every output, with and without ``clip``, which must agree to float32
  rounding.

A check that raises is recorded with its error instead of stopping the entry.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import replace
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from bench import scoring_compare, torch_baselines

log = logging.getLogger("bench")
#: (rows, width, stored entries per row) full and quick: density 0.2%, under the CSR
#: paths' threshold (sparkae.scoring.forward.SPARSE_DENSITY).
SIZES = {False: (4_000, 10_000, 20), True: (400, 2_000, 4)}
HIDDEN = [64]
#: Largest relative difference of a training MSE from the CPU's (float32 sums in another
#: order; with sampling, other draws of the sampled zero columns).
TRAIN_TOLERANCE = {None: 0.02, 64: 0.10}
#: Largest difference of a scoring output from the CPU's, relative to its largest value.
SCORE_TOLERANCE = 1e-4
SCORE_OUTPUTS = (["deep_features", "reconstruction_mse"],
                 ["deep_features", "reconstruction_mse", "feature_errors", "reconstruction",
                  "is_anomaly"])


def sparse_digits(n: int, width: int, per_row: int, seed: int) -> np.ndarray:
    """``n`` rows (uint8) of ``width`` columns with about ``per_row`` stored values each,
    drawn from 20 column groups (so that a network has structure to learn); some columns
    are never set (their features are left out of the model)."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 20, n)
    x = np.zeros((n, width), dtype=np.uint8)
    span = max(per_row * 4, width // 25)
    for i in range(n):
        start = groups[i] * (width // 20)
        cols = start + rng.choice(span, per_row, replace=False)
        x[i, np.minimum(cols, width - 1)] = rng.integers(1, 256, per_row)
    return x


def check(device: str, quick: bool = False) -> List[Dict[str, Any]]:
    """Every check on ``device`` against the CPU; one dict per check: ``name``, ``ok``,
    ``value`` (the largest difference found), ``tolerance``, and ``error`` when it raised."""
    n, width, per_row = SIZES[bool(quick)]
    work = tempfile.mkdtemp(prefix="sparkae-bench-gpu-paths-")
    try:
        x = sparse_digits(n, width, per_row, seed=4)
        path = os.path.join(work, "train")
        scoring_compare.write_rows(path, x, 0, 0, "sparse")
        spec, scaling = torch_baselines.network_spec(x, HIDDEN)
        out = [_run(f"sparse training, {label}", lambda k=k: _train(path, spec, scaling, k,
                                                                     device))
               for k, label in ((None, "exact loss"),
                                (64, "reconstruction_sampling=64 (lazy Adam)"))]
        out += _scoring_checks(path, spec, scaling, device)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(name: str, fn: Callable[[], Tuple[float, float]]) -> Dict[str, Any]:
    try:
        value, tolerance = fn()
        return {"name": name, "ok": bool(value <= tolerance), "value": value,
                "tolerance": tolerance}
    except Exception as e:  # noqa: BLE001 - recorded: the run goes on to the other checks
        log.exception("gpu path check %r failed", name)
        return {"name": name, "ok": False, "value": None, "tolerance": None,
                "error": f"{type(e).__name__}: {e}"}


def _train(path: str, spec, scaling, sampling, device: str) -> Tuple[float, float]:
    from sparkae.train.distributed import TrainJob, launch
    from sparkae.train.loop import TrainConfig

    job = TrainJob(train_path=path, valid_path=path, spec=spec, scaling=scaling,
                   config=TrainConfig(epochs=2, seed=1, stopping_rounds=0,
                                      reconstruction_sampling=sampling),
                   batch_size=64, seed=1, sparse=True, progress="none")
    _, want = launch(job)
    _, got = launch(replace(job, use_gpu=device == "cuda"))
    worst = 0.0
    for a, b in zip(got, want):
        for key in ("train_mse", "validation_mse"):
            worst = max(worst, abs(a[key] - b[key]) / max(abs(b[key]), 1e-12))
    if len(got) != len(want) or not all(np.isfinite(h["train_mse"]) for h in got):
        raise AssertionError(f"histories differ: {got} against {want}")
    return worst, TRAIN_TOLERANCE[sampling]


def _scoring_checks(path: str, spec, scaling, device: str) -> List[Dict[str, Any]]:
    import pyarrow.parquet as pq
    import torch

    from sparkae.data.arrow_rows import decode_rows
    from sparkae.nn.models import build_network
    from sparkae.scoring.forward import Scorer

    torch.manual_seed(2)
    net = build_network(spec)
    net.scaler.set_statistics(**scaling)
    net.eval()
    col = pq.read_table(path, columns=["features"]).column("features").combine_chunks()
    block = decode_rows(col, spec["input_size"])
    threshold = 0.5
    cpu = Scorer(net, torch.device("cpu"))
    out = []
    for outputs in SCORE_OUTPUTS:
        for clip in (False, True):
            def compare(outputs=outputs, clip=clip) -> Tuple[float, float]:
                # (the Scorer moves the network: rebuilt per device from one state)
                there = Scorer(_copy(net, spec, scaling), torch.device(device))
                got = there.score(block, outputs, 1, threshold, 512, clip)
                want = cpu.score(block, outputs, 1, threshold, 512, clip)
                return max(_difference(got[o], want[o]) for o in outputs), SCORE_TOLERANCE
            name = f"sparse scoring, {' + '.join(outputs)}{', clip' if clip else ''}"
            out.append(_run(name, compare))
    return out


def _copy(net, spec, scaling):
    from sparkae.nn.models import build_network

    other = build_network(spec)
    other.scaler.set_statistics(**scaling)
    other.load_state_dict(net.state_dict())
    return other.eval()


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shapes {a.shape} and {b.shape}")
    if a.dtype == bool:
        return float(np.mean(a != b))     # a row exactly at the threshold may flip
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)) if a.size else 0.0
