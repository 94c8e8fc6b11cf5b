#!/usr/bin/env bash
# spark-submit with the project's settings.
#   ./spark-submit.sh [spark-submit options] jobs/train.py [job options]
# On first use it creates .venv with the project's dependencies (scripts/bootstrap.sh).
# Without --master it runs on local[2]. Local runs keep every service on 127.0.0.1; for a
# cluster master the sparkae package is shipped to the executors with --py-files.
# S3A comes as --packages org.apache.hadoop:hadoop-aws:<pyspark's Hadoop> and Delta Lake as
# the io.delta jar built for pyspark's Spark with Delta's two session settings (merged into
# the user's --packages; resolved from Maven Central on first use; a --conf of the user's
# for the same setting wins); SPARKAE_NO_PACKAGES=1 skips both.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="${SPARKAE_VENV:-$ROOT/.venv}"
"$ROOT/scripts/bootstrap.sh" "${SPARKAE_EXTRAS:-dev,tune,connect,mlflow,fast,delta}"

export PYSPARK_PYTHON="$VENV/bin/python"
export PYSPARK_DRIVER_PYTHON="$VENV/bin/python"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-lo}"
export PYARROW_IGNORE_TIMEZONE=1
export SPARK_HOME="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"

master=""
prev=""
for arg in "$@"; do
  case "$arg" in *.py) break ;; esac
  [ "$prev" = "--master" ] && master="$arg"
  case "$arg" in --master=*) master="${arg#--master=}" ;; esac
  prev="$arg"
done

opts=(--conf "spark.pyspark.python=$VENV/bin/python" --conf spark.ui.showConsoleProgress=false
      --driver-java-options "-Dlog4j2.configurationFile=file:$ROOT/conf/log4j2.properties")
if [ -z "$master" ]; then
  opts+=(--master "local[2]")
  master="local[2]"
fi
if [ "${SPARKAE_LOOPBACK:-1}" = "1" ]; then
  opts+=(--conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1)
fi
case "$master" in
  local*) opts+=(--conf spark.ui.enabled=false) ;;
  *)
    mkdir -p "$ROOT/build"
    zip_path="$ROOT/build/sparkae.zip"
    rm -f "$zip_path"
    (cd "$ROOT" && "$VENV/bin/python" -c "import shutil; shutil.make_archive('build/sparkae', 'zip', '.', 'sparkae')")
    opts+=(--py-files "$zip_path")
    ;;
esac

# S3A: hadoop-aws matching pyspark's Hadoop (Ivy adds the AWS SDK bundle), and Delta's jar,
# merged into a --packages (or --conf spark.jars.packages=) the user gave; none with
# SPARKAE_NO_PACKAGES=1. jars.py runs as a plain script: it needs only the standard library
# and pyspark's folder. With Delta, its settings; on a local master also
# spark.databricks.delta.snapshotPartitions = the master's cores (Delta's default, 50 tasks
# per rebuild of a table's snapshot, makes every read of a small table slow on a few cores).
# These --conf come before the user's arguments, so a --conf of the user's wins.
packages() { "$VENV/bin/python" "$ROOT/sparkae/io/jars.py" packages "$@"; }
while IFS= read -r setting; do
  [ -z "$setting" ] || opts+=(--conf "$setting")
done < <("$VENV/bin/python" "$ROOT/sparkae/io/jars.py" conf "$master")
args=("$@")
pkg_at=-1
pkg_prefix=""
i=0
while [ "$i" -lt "${#args[@]}" ]; do
  arg="${args[$i]}"
  case "$arg" in
    *.py) break ;;
    --packages) pkg_at=$((i + 1)); pkg_prefix=""; i=$((i + 1)) ;;
    --packages=*) pkg_at=$i; pkg_prefix="--packages=" ;;
    --conf)
      # --packages wins over --conf spark.jars.packages in spark-submit; merge into that
      if [ "$pkg_at" -lt 0 ]; then
        case "${args[$((i + 1))]:-}" in
          spark.jars.packages=*) pkg_at=$((i + 1)); pkg_prefix="spark.jars.packages=" ;;
        esac
      fi
      i=$((i + 1)) ;;
  esac
  i=$((i + 1))
done
if [ "$pkg_at" -ge 0 ] && [ "$pkg_at" -lt "${#args[@]}" ]; then
  given="${args[$pkg_at]#"$pkg_prefix"}"
  args[$pkg_at]="$pkg_prefix$(packages "$given")"
elif [ "$pkg_at" -lt 0 ]; then
  coords="$(packages)"
  [ -z "$coords" ] || opts+=(--packages "$coords")
fi
exec "$VENV/bin/spark-submit" "${opts[@]}" "${args[@]}"
