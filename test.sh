#!/usr/bin/env bash
# Run the test suite: ./test.sh [pytest arguments]
# Creates .venv on first use (scripts/bootstrap.sh) and fails when no test ran.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="${SPARKAE_VENV:-$ROOT/.venv}"
"$ROOT/scripts/bootstrap.sh" dev,tune,connect,mlflow,fast
export SPARK_LOCAL_IP=127.0.0.1 GLOO_SOCKET_IFNAME=lo PYARROW_IGNORE_TIMEZONE=1
cd "$ROOT"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$rc"
