#!/usr/bin/env bash
# Copy pyspark's and py4j's Python files (no jars, tests or examples) from the project's
# environment into .gpu/site, for a GPU machine that has Torch but no Spark:
# bench/gpu_check.sh puts it on PYTHONPATH there (the GPU entry starts no JVM).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SITE=$("${SPARKAE_VENV:-$ROOT/.venv}/bin/python" -c "import pyspark, os; print(os.path.dirname(os.path.dirname(pyspark.__file__)))")
rm -rf "$ROOT/.gpu/site"
mkdir -p "$ROOT/.gpu/site"
cp -r "$SITE/pyspark" "$SITE/py4j" "$ROOT/.gpu/site/"
rm -rf "$ROOT/.gpu/site/pyspark/"{jars,examples,bin,sbin,licenses,data}
find "$ROOT/.gpu/site" \( -name __pycache__ -o -name tests \) -type d -prune -exec rm -rf {} +
du -sh "$ROOT/.gpu/site"
