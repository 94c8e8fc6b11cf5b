#!/usr/bin/env bash
# Create (or refresh) the legacy environment: PySpark 3.5, numpy < 2, pyarrow < 15,
# pandas < 2.3 and Petastorm 0.12.1, the stack Petastorm still works on.
#   scripts/bootstrap_legacy.sh            -> .venv-legacy (or SPARKAE_LEGACY_VENV)
# Torch: the pinned build (SPARKAE_TORCH_SPEC, default torch==2.13.0; from PyPI on Linux the
# CUDA one) goes in first, so nothing later pulls another build. SPARKAE_TORCH_INDEX names a
# CPU wheel index.
# Installer: uv where it can be installed, else pip (scripts/installer.sh).
# When the main environment (SPARKAE_VENV, default .venv) already holds a torch that meets
# SPARKAE_TORCH_SPEC on the same Python, that torch and the distributions it depends on are
# hard-linked from there (copied across file systems) instead of installed again: the same
# files, each with its .dist-info, so pip sees them installed (measured on 2 busy cores:
# ~5 s where pip installing the ~4.5 GB CUDA build took 97 s; the whole bootstrap 207 s ->
# 142 s). SPARKAE_LEGACY_REUSE_TORCH=0 installs anew.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${SPARKAE_LEGACY_VENV:-$ROOT/.venv-legacy}"
PY="${PYTHON:-python3}"
PINS=("pyspark>=3.5,<3.6" "numpy<2" "pyarrow>=11,<15" "pandas>=1.5,<2.3" "petastorm==0.12.1"
      "delta-spark>=3.2,<3.4")
want="$(sha256sum "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16) legacy"
stamp="$VENV/.sparkae-stamp"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then
  exit 0
fi
command -v java >/dev/null 2>&1 || { echo "sparkae: Java 17+ is required by Spark; install a JDK first" >&2; exit 1; }
echo "sparkae: setting up the legacy environment $VENV (first run only; a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
. "$ROOT/scripts/installer.sh"
use_installer "$VENV"
MAIN="${SPARKAE_VENV:-$ROOT/.venv}"
if [ "${SPARKAE_LEGACY_REUSE_TORCH:-1}" = "1" ] && [ -x "$MAIN/bin/python" ] \
    && ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  # Hard links are safe here: pip and Python never write into an installed file (pip
  # unlinks before it writes, Python renames its .pyc into place), so neither environment
  # changes the other's files. Nothing is linked unless every piece checks out; on any
  # failure what was linked is removed and torch is installed below as usual.
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$MAIN/bin/python" "$ROOT/scripts/reuse_torch.py" "$site" \
      "${SPARKAE_TORCH_SPEC:-torch==2.13.0}" "$VENV/bin/python" || true
fi
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${SPARKAE_TORCH_INDEX:-}" ]; then
    "${PIP[@]}" --index-url "$SPARKAE_TORCH_INDEX" "${SPARKAE_TORCH_SPEC:-torch==2.13.0}"
  else
    "${PIP[@]}" "${SPARKAE_TORCH_SPEC:-torch==2.13.0}"
  fi
fi
# The pins and the project in one resolve, so no later step upgrades past them.
"${PIP[@]}" "${PINS[@]}" -e "$ROOT[dev]" 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/python" - <<'EOF'
import numpy, pyarrow, pandas, pyspark, petastorm, torch, delta
assert pyspark.__version__.startswith("3.5."), pyspark.__version__
assert int(numpy.__version__.split(".")[0]) < 2 and int(pyarrow.__version__.split(".")[0]) < 15
print(f"sparkae legacy: pyspark {pyspark.__version__}, numpy {numpy.__version__}, pyarrow "
      f"{pyarrow.__version__}, pandas {pandas.__version__}, petastorm {petastorm.__version__}, "
      f"torch {torch.__version__}")
EOF
echo "$want" >> "$stamp"
echo "sparkae: legacy environment ready at $VENV" >&2
