# Sourced by scripts/bootstrap.sh and scripts/bootstrap_legacy.sh:
#   use_installer VENV   sets PIP to the command that installs into VENV's Python.
# uv (pip-installed into VENV first) downloads and unpacks in parallel and resolves to the
# same versions as pip here: measured on this project's 2-core machine, the main
# environment took 73 s from an empty uv cache against 228 s with pip from a warm pip
# cache. SPARKAE_INSTALLER=pip installs with pip alone; where uv cannot be installed, pip
# is used. uv does not read pip's settings: PIP_FIND_LINKS is passed on.
use_installer() {
  local venv="$1"
  PIP=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  if [ "${SPARKAE_INSTALLER:-uv}" = "uv" ] && { [ -x "$venv/bin/uv" ] || "${PIP[@]}" uv; }; then
    PIP=("$venv/bin/uv" pip install --quiet --python "$venv/bin/python")
    if [ -n "${PIP_FIND_LINKS:-}" ]; then PIP+=(--find-links "$PIP_FIND_LINKS"); fi
  fi
}
