"""Loaders: sparkae's own Arrow/Parquet reader against Petastorm, on the same fit.

Petastorm only imports on PySpark 3.5-era stacks (numpy < 2, pyarrow < 15; see the README),
so the fits run in the legacy environment (``scripts/bootstrap_legacy.sh`` builds
``.venv-legacy``, or ``SPARKAE_LEGACY_VENV``), in a child process that imports this
checkout: N shifted bundled digits (784 columns), hidden [100] tanh, Adam, batch 64, one
rank with 2 Torch threads, Spark ``local[2]``; ``data_loader="arrow"`` and
``data_loader="petastorm"`` take turns, twice each, and the faster fit of each counts.
The entry is skipped when the legacy environment is missing and cannot be built; it is
not part of ``python -m bench all``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from typing import Any, Dict

from bench import common

TITLE = "Loaders: arrow vs petastorm (PySpark 3.5 legacy environment)"
SMOKE = False
#: Run by name only (``python -m bench loaders``): it builds and uses a second environment.
IN_ALL = False
log = logging.getLogger("bench")

_CHILD = r"""
import json, os, shutil, sys, tempfile
rows, epochs = int(sys.argv[1]), int(sys.argv[2])
from bench import common
common.set_torch_threads()
spark = common.spark()
work = tempfile.mkdtemp(prefix="sparkae-bench-loaders-")
out = {"fits": {}}
try:
    out["warm_up_s"] = common.warm_up()
    path = common.shifted_parquet(os.path.join(work, "digits"), rows, seed=3)
    df = spark.read.parquet(path).cache()
    df.count()
    for loader in ("arrow", "petastorm") * 2:
        model, secs = common.fit_sparkae(df, [100], epochs=epochs, mini_batch_size=64,
                                         num_workers=1, cache_dir=os.path.join(work, "cache"),
                                         data_loader=loader, stopping_rounds=0)
        out["fits"].setdefault(loader, []).append(
            {"fit_s": secs, "loop_s": sum(h["seconds"] for h in model.summary.history),
             "loop_rows_per_s": model.summary.rows_per_s,
             "train_mse": model.summary.train_mse})
finally:
    shutil.rmtree(work, ignore_errors=True)
import numpy, pandas, petastorm, pyarrow, pyspark
out["versions"] = {"pyspark": pyspark.__version__, "numpy": numpy.__version__,
                   "pyarrow": pyarrow.__version__, "pandas": pandas.__version__,
                   "petastorm": petastorm.__version__}
print(json.dumps(out))
"""


def _legacy_python() -> str:
    venv = os.environ.get("SPARKAE_LEGACY_VENV", str(common.ROOT / ".venv-legacy"))
    script = common.ROOT / "scripts" / "bootstrap_legacy.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
    python = os.path.join(venv, "bin", "python")
    if done.returncode != 0 or not os.path.exists(python):
        raise common.Skip("the legacy environment (PySpark 3.5 + Petastorm) could not be built: "
                          + (done.stderr.strip().splitlines() or ["no output"])[-1])
    return python


def run(quick: bool = False) -> Dict[str, Any]:
    rows = 12_000 if quick else 60_000
    epochs = 1 if quick else 3
    python = _legacy_python()
    env = {**os.environ, "PYTHONPATH": str(common.ROOT), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYARROW_IGNORE_TIMEZONE": "1"}
    env.pop("SPARK_HOME", None)      # the child's own pyspark 3.5, not the main one's
    done = subprocess.run([python, "-c", _CHILD, str(rows), str(epochs)], capture_output=True,
                          text=True, timeout=3600, cwd=str(common.ROOT), env=env)
    if done.returncode != 0:
        raise RuntimeError(f"legacy loader fits failed: {done.stderr[-3000:]}")
    res = json.loads(done.stdout.strip().splitlines()[-1])
    r = common.fmt
    best = {k: min(v, key=lambda f: f["loop_s"]) for k, v in res["fits"].items()}
    a, p = best["arrow"], best["petastorm"]
    ratio = p["loop_rows_per_s"] / a["loop_rows_per_s"]
    whole = a["fit_s"] / p["fit_s"]
    rows_out = [[k, r(f["fit_s"]), r(f["loop_s"]), r(f["loop_rows_per_s"]),
                 r(f["loop_rows_per_s"] / a["loop_rows_per_s"]), r(f["train_mse"])]
                for k, f in best.items()]
    v = res["versions"]
    return {
        "summary": (f"in the legacy environment (PySpark {v['pyspark']}, Petastorm "
                    f"{v['petastorm']}), the Petastorm loader trains at **{ratio:.2f}x** the "
                    f"Arrow loader's rows/s (whole fit {whole:.2f}x: Arrow's fit time over "
                    f"Petastorm's), same model, {rows:,} rows, {epochs} epoch(s)."),
        "config": {"rows": rows, "epochs": epochs, "hidden": [100], "batch_size": 64,
                   "spark_master": "local[2]", "torch_threads": common.CORES,
                   "warm_up_s": r(res["warm_up_s"]), "legacy_versions": v,
                   "load_average": common.load_average()},
        "fits": res["fits"],
        "tables": [{"title": f"Arrow vs Petastorm loader: [100] tanh, batch 64, {epochs} "
                             f"epoch(s), {rows:,} shifted digits, 1 rank (faster of 2 fits each)",
                    "columns": ["data_loader", "fit seconds", "training loop seconds",
                                "loop rows/s", "vs arrow", "train MSE"],
                    "rows": rows_out}],
        "notes": ("Both loaders stream the same prepared rows: sparkae's reader from the "
                  "Parquet it materializes once per fit, Petastorm through "
                  "make_spark_converter (its own Parquet cache) and make_torch_dataloader "
                  "with cur_shard/shard_count. The fit time includes the statistics pass "
                  "and that materialization. The legacy environment's versions: "
                  + ", ".join(f"{k} {val}" for k, val in v.items()) + "."),
    }
