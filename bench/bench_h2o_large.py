"""sparkae vs H2O-3 at 60,000 training rows: :mod:`bench.bench_h2o` on shifted digits.

The same comparison as ``python -m bench h2o`` (architectures, the chapter's grid, test
MSE on the official MNIST test set, H2O's server-side run time against sparkae's
``Autoencoder.fit`` wall time), with both systems trained on
``$SPARKAE_BENCH_H2O_ROWS`` (default 60,000) bundled digits shifted by up to 2 pixels
(:func:`bench.bench_h2o.shifted_training`, the training entry's rows) for
``$SPARKAE_BENCH_H2O_EPOCHS`` epochs (default 10).

H2O trains at 150-1,200 rows/s here (mini-batch 1; [300, 100, 300] the slowest), so every
epoch at 60,000 rows costs it about 15 minutes for all six architectures (measured:
``h2o_large-20261203-110803.json``): the default 10 epochs take about 2.4 hours,
``SPARKAE_BENCH_H2O_EPOCHS=1`` about 16 minutes. ``$SPARKAE_BENCH_H2O_BUDGET_S`` caps
H2O's training as in :mod:`bench.bench_h2o`. Not part of ``python -m bench all``. Quick mode: 2,000 shifted
digits, 1 epoch, the small architectures of :mod:`bench.bench_h2o`'s quick mode.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from bench import bench_h2o

TITLE = "vs H2O-3 at 60,000 rows: fit time and test reconstruction MSE"
IN_ALL = False
SMOKE = False
ROWS_ENV, EPOCHS_ENV = "SPARKAE_BENCH_H2O_ROWS", "SPARKAE_BENCH_H2O_EPOCHS"
ROWS, EPOCHS, QUICK_ROWS = 60_000, 10, 2_000


def _whole(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${name}: got {text!r}, expected a whole number >= 1")
    return value


def run(quick: bool = False) -> Dict[str, Any]:
    """The H2O comparison on shifted digits (see the module docstring)."""
    if quick:
        return bench_h2o.run(quick=True, shifted=QUICK_ROWS)
    rows, epochs = _whole(ROWS_ENV, ROWS), _whole(EPOCHS_ENV, EPOCHS)
    return bench_h2o.run(epochs=epochs, shifted=rows)
