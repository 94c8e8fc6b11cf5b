#!/usr/bin/env bash
# Run the test suite: ./test.sh [pytest arguments]
# Creates .venv on first use (scripts/bootstrap.sh) and fails when no test ran.
# Two pytest runs, so that only the second one's SparkSession carries S3A and Delta Lake
# (Ivy resolves them at its start; the AWS SDK bundle on the Python path slowed fits and
# scoring until sparkae.io.pyfiles took it off, see prune_jar_paths): the
# tests marked neither s3 nor delta, then those marked s3 or delta, and the multi-host
# tests (they put the S3A jars that the second run's session resolves on their hosts' class
# path). Tests marked petastorm need Petastorm's stack: scripts/test_legacy.sh runs them.
# With your own -m, one run. Both runs spread their test modules over
# SPARKAE_TEST_WORKERS pytest-xdist workers (default 2; 0 runs in one process): a module
# stays on one worker (its fixtures are built once, and the multi-host tests, which build
# on each other in order, keep their order), and the modules that start Ray share one
# (tests/conftest.py). The second run's tests wait on JVM starts, clusters and subprocess
# jobs more than they compute: on 2 workers it took 8 min 48 s against 12 min 6 s in one
# process (31 tests, back to back on the 2-core CI machine). A run with your own -m uses
# one process.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="${SPARKAE_VENV:-$ROOT/.venv}"
"$ROOT/scripts/bootstrap.sh" dev,tune,connect,mlflow,fast,delta
export SPARK_LOCAL_IP=127.0.0.1 GLOO_SOCKET_IFNAME=lo PYARROW_IGNORE_TIMEZONE=1
source "$ROOT/scripts/test_jvm.sh"     # C1 only, serial GC: see that file
cd "$ROOT"
own_marker=0
for arg in "$@"; do
  case "$arg" in -m|-m*) own_marker=1 ;; esac
done
workers="${SPARKAE_TEST_WORKERS:-2}"
xdist=()
[ "$workers" -gt 0 ] && xdist=(-n "$workers" --dist loadgroup)
set +e
if [ "$own_marker" = 1 ]; then
  "$VENV/bin/python" -m pytest "$@"
  rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; failing" >&2
    exit 1
  fi
  exit "$rc"
fi
# On 2 workers, a fit in each trains on one Torch thread (sparkae's driver_threads keeps to
# OMP_NUM_THREADS): two workers' Torch thread teams on the same cores stall at every OpenMP
# barrier. Ranks, Spark tasks and Ray trials still use both cores.
omp=()
[ "$workers" -gt 1 ] && omp=(env "OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}")
"${omp[@]}" "$VENV/bin/python" -m pytest "${xdist[@]}" \
  -m "not s3 and not delta and not multihost and not petastorm" "$@"
rc1=$?
# Ivy resolves the second run's packages (S3A, Delta Lake) into its cache once, here: two
# workers' sessions resolving into an empty cache at the same time would race.
if [ "$workers" -gt 1 ] && [ "${SPARKAE_NO_PACKAGES:-0}" != 1 ]; then
  "$VENV/bin/python" - >/dev/null 2>&1 <<'PY' || echo "test.sh: resolving the packages first failed" >&2
from pyspark.sql import SparkSession
from sparkae.io.jars import PACKAGES_KEY, with_packages
packages = with_packages({}).get(PACKAGES_KEY)
if packages:
    SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false") \
        .config(PACKAGES_KEY, packages).getOrCreate().stop()
PY
fi
"$VENV/bin/python" -m pytest "${xdist[@]}" -m "s3 or delta or multihost" "$@"
rc2=$?
set -e
if [ "$rc1" -eq 5 ] && [ "$rc2" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; failing" >&2
  exit 1
fi
[ "$rc1" -eq 5 ] && rc1=0
[ "$rc2" -eq 5 ] && rc2=0
[ "$rc1" -ne 0 ] && exit "$rc1"
exit "$rc2"
