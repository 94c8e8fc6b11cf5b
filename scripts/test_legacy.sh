#!/usr/bin/env bash
# The legacy environment's checks: PySpark 3.5, numpy < 2, pyarrow < 15, Petastorm 0.12.1.
#   scripts/test_legacy.sh [pytest arguments]
# Builds .venv-legacy on first use (scripts/bootstrap_legacy.sh), imports every sparkae
# module there, then runs the data-path and training tests with data_loader=petastorm
# (2-rank fits included) and the Delta Lake tests on delta-spark 3.x, in one pytest run
# (one SparkSession, with Delta's jar: no S3 test is in the run, so no hadoop-aws).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${SPARKAE_LEGACY_VENV:-$ROOT/.venv-legacy}"
"$ROOT/scripts/bootstrap_legacy.sh"
export SPARK_LOCAL_IP=127.0.0.1 GLOO_SOCKET_IFNAME=lo PYARROW_IGNORE_TIMEZONE=1
export SPARKAE_TEST_DATA_LOADER=petastorm
source "$ROOT/scripts/test_jvm.sh"
cd "$ROOT"
SPARKAE_NO_PACKAGES=1 "$VENV/bin/python" - <<'PY'
import importlib, pkgutil, sparkae
names = [m.name for m in pkgutil.walk_packages(sparkae.__path__, "sparkae.")]
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:   # optional extras (ray, mlflow) may be absent here
        if not any(extra in str(exc) for extra in ("ray", "mlflow")):
            raise
print(f"legacy: {len(names)} sparkae modules import on this stack")
PY
# The slow cases (2 ranks vs 1 on the sample, the killed-and-resumed fit) ran in the main
# suite already and do not depend on the loader; the rest trains through Petastorm here.
# Delta Lake 3.x on Spark 3.5 (io.delta:delta-spark_2.12, resolved by Ivy; the run's session
# loads it because tests marked delta are in the run): the in-process tests; the ones that
# start ./spark-submit.sh (the main environment), a cluster or S3 ran in the main suite.
unset SPARKAE_NO_PACKAGES
set +e
"$VENV/bin/python" -m pytest tests/test_distributed.py tests/test_converter.py \
  tests/test_spark_private.py tests/test_delta.py -m "not slow and not s3 and not cluster" \
  -k "not killed" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test_legacy.sh: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$rc"
