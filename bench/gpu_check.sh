#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: `python -m bench gpu` (bench/bench_gpu.py), sparkae's
# training rank and scoring worker on the GPU against plain Torch on the same GPU; the
# record goes to RESULTS_DIR (default bench/results), and `python -m bench report`
# (where the project's environment is) puts it into BENCHMARKS.md. A few minutes.
#   bench/gpu_check.sh [RESULTS_DIR]
# A copy of the files without their own git history (a device machine's copy of the work
# tree carries stale git metadata) records the commit given as BENCH_GIT_COMMIT instead.
# Python: $SPARKAE_PYTHON, else the project's .venv, else python3 (a GPU machine's own
# Torch, NumPy and pyarrow). The entry needs no JVM; where pyspark is not installed, its
# Python files come from .gpu/site (scripts/gpu_site.sh makes it from the project's
# environment, without Spark's jars: about 15 MB to carry to such a machine).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="${SPARKAE_PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
if ! "$PY" -c "import pyspark" 2>/dev/null && [ -d "$ROOT/.gpu/site" ]; then
  export PYTHONPATH="$ROOT/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 PYARROW_IGNORE_TIMEZONE=1
cd "$ROOT"
"$PY" -c "import torch; print('gpu_check: torch', torch.__version__, 'CUDA', torch.version.cuda, 'devices', torch.cuda.device_count())"
exec timeout 900 "$PY" -m bench gpu --omp-wait-policy default --no-report \
  --results-dir "${1:-bench/results}"
