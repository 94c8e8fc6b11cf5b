#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment when it is missing or stale.
#   scripts/bootstrap.sh [EXTRAS]      e.g. scripts/bootstrap.sh dev
# Torch: the pinned build (SPARKAE_TORCH_SPEC, default torch==2.13.0) is installed first
# when no torch is present, so the torch>=2.2 requirement installs nothing more. From PyPI
# on Linux that is the CUDA build (torch + nvidia-* libraries, about 4.5 GB; it runs on
# CPUs too). Set SPARKAE_TORCH_INDEX to a CPU wheel index (e.g. the PyTorch CPU index)
# where one is reachable to install the CPU build instead.
# Installer: uv where it can be installed, else pip (scripts/installer.sh;
# SPARKAE_INSTALLER=pip for pip alone).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${SPARKAE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
EXTRAS="${1:-}"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16) extras=$EXTRAS"
stamp="$VENV/.sparkae-stamp"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && grep -qxF "$want" "$stamp"; then
  exit 0
fi
command -v java >/dev/null 2>&1 || { echo "sparkae: Java 17+ is required by Spark; install a JDK first" >&2; exit 1; }
echo "sparkae: setting up $VENV (first run only; this takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
. "$ROOT/scripts/installer.sh"
use_installer "$VENV"
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${SPARKAE_TORCH_INDEX:-}" ]; then
    "${PIP[@]}" --index-url "$SPARKAE_TORCH_INDEX" "${SPARKAE_TORCH_SPEC:-torch==2.13.0}"
  else
    "${PIP[@]}" "${SPARKAE_TORCH_SPEC:-torch==2.13.0}"
  fi
fi
# torch is complete from here on: scripts/bootstrap_legacy.sh may hard-link it (.ci/run
# starts that bootstrap on this mark, beside the rest of this one)
touch "$VENV/.sparkae-torch-ready"
target="$ROOT"
[ -n "$EXTRAS" ] && target="$ROOT[$EXTRAS]"
"${PIP[@]}" -e "$target" 2> >(grep -v "is ignored: it is neither" >&2)
# Where PYTHONDONTWRITEBYTECODE is set (this project's machines set it), Python never caches
# the bytecode it compiles, and uv (unlike pip) compiles none at install: every process
# compiled torch, pyspark and pandas from source again. Measured on 2 cores: import torch
# 5.0 s -> 2.4 s, a training rank's imports 4.2 s -> 2.4 s, for about a minute here once.
if [ -n "${PYTHONDONTWRITEBYTECODE:-}" ]; then
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "sparkae: compiling the environment's bytecode (PYTHONDONTWRITEBYTECODE is set)" >&2
  # some packages ship files for other Python versions that do not compile: not an error
  "$VENV/bin/python" -m compileall -q -j 0 "$site" "$ROOT/sparkae" >/dev/null 2>&1 || true
fi
echo "$want" >> "$stamp"
echo "sparkae: environment ready at $VENV" >&2
