#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: a short fit with use_gpu=True (1 rank) against the same
# fit on the CPU, printing training rows/s of each. Takes a few minutes at most.
#   bench/gpu_check.sh [rows] [epochs]          (defaults 60000 rows, 3 epochs)
# The project's environment must hold a CUDA build of torch: create it with
#   SPARKAE_TORCH_SPEC='torch==2.13.0' SPARKAE_TORCH_INDEX=<a CUDA wheel index> scripts/bootstrap.sh dev
# or point SPARKAE_VENV at an environment that has one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${SPARKAE_VENV:-$ROOT/.venv}"
ROWS="${1:-60000}"
EPOCHS="${2:-3}"
"$ROOT/scripts/bootstrap.sh" dev
export SPARK_LOCAL_IP=127.0.0.1 PYARROW_IGNORE_TIMEZONE=1
cd "$ROOT"
exec timeout 290 "$VENV/bin/python" - "$ROWS" "$EPOCHS" <<'PY'
import logging
import os
import sys
import tempfile
import time

import torch

rows, epochs = int(sys.argv[1]), int(sys.argv[2])
if not torch.cuda.is_available():
    print(f"gpu_check: torch {torch.__version__} sees no CUDA device "
          f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); install a CUDA "
          "build of torch in the environment (see the header of this script)", file=sys.stderr)
    sys.exit(2)
logging.basicConfig(level=logging.WARNING)
from bench import common  # noqa: E402
from sparkae import Autoencoder  # noqa: E402

spark = common.spark()
work = tempfile.mkdtemp(prefix="sparkae-gpu-check-")
df = spark.read.parquet(common.shifted_parquet(os.path.join(work, "digits"), rows, seed=1)).cache()
df.count()
common.warm_up()
results = {}
for use_gpu in (False, True):
    t0 = time.perf_counter()
    model = Autoencoder(hidden=[100], activation="tanh", epochs=epochs, mini_batch_size=256,
                        seed=1, use_gpu=use_gpu, stopping_rounds=0,
                        cache_dir=os.path.join(work, "cache")).fit(df)
    results[use_gpu] = (model.summary.rows_per_s, time.perf_counter() - t0,
                        model.summary.train_mse)
cpu, gpu = results[False], results[True]
print(f"gpu_check: {torch.cuda.get_device_name(0)}, {rows:,} rows x 784, [100] tanh, "
      f"batch 256, {epochs} epochs, 1 rank")
print(f"  CPU ({torch.get_num_threads()} threads): {cpu[0]:,.0f} rows/s in the training loop, "
      f"fit {cpu[1]:.1f} s, train MSE {cpu[2]:.5f}")
print(f"  GPU (use_gpu=True):  {gpu[0]:,.0f} rows/s in the training loop, fit {gpu[1]:.1f} s, "
      f"train MSE {gpu[2]:.5f}")
print(f"  GPU / CPU: {gpu[0] / cpu[0]:.2f}x")
spark.stop()
PY
