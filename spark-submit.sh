#!/usr/bin/env bash
# spark-submit with the project's settings.
#   ./spark-submit.sh [spark-submit options] jobs/train.py [job options]
# On first use it creates .venv with the project's dependencies (scripts/bootstrap.sh).
# Without --master it runs on local[2]. Local runs keep every service on 127.0.0.1; for a
# cluster master the sparkae package is shipped to the executors with --py-files.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="${SPARKAE_VENV:-$ROOT/.venv}"
"$ROOT/scripts/bootstrap.sh" "${SPARKAE_EXTRAS:-dev,tune,connect,mlflow,fast}"

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
exec "$VENV/bin/spark-submit" "${opts[@]}" "$@"
