"""Scoring benchmark: Spark throughput vs a plain Torch forward, cost per output, memory.

Data: ``N`` MNIST-like rows of 784 pixels (about 80% zeros) drawn with
:func:`sparkae.datasets.shifted_digits` from the bundled sample, written once as Parquet
(Spark's vector layout, sparse, written straight from NumPy through Arrow; Spark reads the
column back as a vector). Model: a [100] tanh autoencoder with the data's H2O scaling and
seeded random weights (throughput does not depend on the weights), built with
``AutoencoderModel._create``.

Measured:

- ``compare`` (:mod:`bench.scoring_compare`, ``min(N, 200,000)`` rows): sparkae's
  transform against Spark's ``predict_batch_udf`` (same network and outputs) on
  ``array<float>``, dense-vector and sparse-vector Parquet and a cached DataFrame; the
  nightly job against ``predict_batch_udf`` writing the same Parquet; and the time split
  of the Spark path (Parquet read, JVM -> Arrow, Arrow -> JVM).
- ``torch``: the plain in-memory Torch forward over the same rows (uint8 -> float32
  included) in fresh processes, for 1 and 2 threads, OpenMP wait policy default and
  PASSIVE, batches of 256, 1,024 and 4,096; the best configuration counts and is named.
- ``spark``: the nightly job's reader (:func:`sparkae.scoring.score_parquet`, the Python
  workers reading the row groups with pyarrow) on the N-row sparse-vector table, into the
  ``noop`` sink after a warm-up; ``spark_reader``: the same with Spark reading the table
  (``mapInArrow`` forced).
- ``outputs``: rows/s with deep_features only, reconstruction_mse only, and all five.
- ``memory`` (full run only): peak RSS of the driver JVM and of the Python workers while
  scoring N and 4N rows, each in a fresh Spark process (4N = the N files linked 4 times).
- ``load_avg``: the load average at the start, after the Torch baselines, after the
  comparison and at the end (the machine may be shared: ratios measured in the same run
  are what count).

Usage: ``python bench/bench_scoring.py [--quick] [--rows N] [--no-memory]``; :func:`run` returns the
same dict.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

TITLE = "Scoring: Spark vs a plain Torch forward, cost per output, memory"
WIDTH, HIDDEN, BATCH = 784, [100], 1024
CHUNK = 100_000


def make_data(directory: str, n: int, seed: int = 0, chunk: int = CHUNK) -> Dict[str, np.ndarray]:
    """Write ``n`` shifted digits as Parquet files of sparse Spark vectors; return H2O
    scaling statistics of the data (mean, min, max)."""
    from bench.scoring_compare import digits, write_rows

    total = np.zeros(WIDTH)
    lo_v, hi_v = np.full(WIDTH, np.inf), np.full(WIDTH, -np.inf)
    for part, start in enumerate(range(0, n, chunk)):
        x = digits(min(chunk, n - start), seed + part)
        total += x.sum(axis=0)
        lo_v, hi_v = np.minimum(lo_v, x.min(axis=0)), np.maximum(hi_v, x.max(axis=0))
        write_rows(directory, x, start, part, "sparse")
    return {"mean": total / n, "min": lo_v, "max": hi_v}


def make_model(stats: Dict[str, np.ndarray], seed: int = 0):
    """A [100] tanh model with the data's H2O scaling and seeded random weights."""
    import torch

    from sparkae.data.prepare import InputInfo
    from sparkae.estimator import AutoencoderModel
    from sparkae.nn.models import build_network
    from sparkae.nn.scaling import FeatureStats, compute_scaling
    from sparkae.train.summary import TrainingSummary

    fs = FeatureStats(count=1, mean=stats["mean"], std=np.ones(WIDTH), min=stats["min"],
                      max=stats["max"])
    scaling = compute_scaling(fs, "h2o", True)
    spec = {"input_size": WIDTH, "kept": int(len(scaling.keep)), "hidden": HIDDEN,
            "activation": "tanh", "output_activation": "linear"}
    torch.manual_seed(seed)
    net = build_network(spec)
    net.scaler.set_statistics(**scaling.tensors())
    model = AutoencoderModel._create(spec, net.state_dict(),
                                     InputInfo("vector", "features", [], WIDTH),
                                     TrainingSummary(), threshold=0.05)
    return model


def _session():
    from sparkae.session import get_session

    return get_session("local[2]", "sparkae-bench-scoring",
                       {"spark.sql.shuffle.partitions": 2, "spark.driver.memory": "2g"})


def spark_rate(spark, model, path: str, outputs: List[str], direct: bool = True,
               limit: Optional[int] = None) -> Dict[str, Any]:
    """Score the Parquet table into the noop sink; rows/s and seconds. ``direct``: the
    Python workers read the row groups with pyarrow (the nightly job's reader for plain
    Parquet tables); else Spark reads the table and hands Arrow batches to the workers."""
    df = spark.read.parquet(path)
    n = df.count()
    if limit is not None and limit < n:         # the first files (row groups of 25,000)
        files = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))
        src, path = path, path.rstrip("/") + "-first"
        os.makedirs(path, exist_ok=True)
        for f in files[:max(1, limit // CHUNK)]:
            if not os.path.exists(os.path.join(path, f)):
                os.link(os.path.join(src, f), os.path.join(path, f))
        df = spark.read.parquet(path)
        n = df.count()
    t0 = time.perf_counter()
    # Spark's reader: a forced transport (the one chosen for a vector table) keeps
    # transform from handing a plain Parquet scan to the workers' own reader
    scored = (model.score_parquet(spark, path, df.schema, outputs) if direct
              else model.score(df, outputs, engine="map_in_arrow"))
    scored.write.format("noop").mode("overwrite").save()
    secs = time.perf_counter() - t0
    return {"rows": n, "seconds": round(secs, 3), "rows_per_s": round(n / secs)}


class _PeakRSS:
    """Poll the RSS of a process and of its descendants (the Python workers)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.jvm, self.workers, self._stop = pid, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def _children(self) -> List[int]:
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            kids = []
            try:
                tasks = os.listdir(f"/proc/{p}/task")  # any thread may have forked a child
            except OSError:
                tasks = []
            for t in tasks:
                try:
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        kids += [int(k) for k in f.read().split()]
                except OSError:
                    pass
            out += kids
            todo += kids
        return out

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.jvm = max(self.jvm, self._rss(self.pid))
            self.workers = max(self.workers, sum(self._rss(c) for c in self._children()))
            time.sleep(0.1)

    def __enter__(self) -> "_PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _memory_child(path: str, stats_file: str) -> Dict[str, Any]:
    """In a fresh process: score ``path`` and report peak RSS (MiB) and rows/s."""
    stats = {k: np.asarray(v) for k, v in json.load(open(stats_file)).items()}
    model = make_model(stats)
    spark = _session()
    try:
        jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        with _PeakRSS(jvm_pid) as peak:
            rate = spark_rate(spark, model, path, ["deep_features", "reconstruction_mse"])
        rate.update(peak_jvm_rss_mib=round(peak.jvm / 2**20),
                    peak_python_workers_rss_mib=round(peak.workers / 2**20))
        return rate
    finally:
        spark.stop()


def _memory_run(path: str, stats_file: str) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--memory-child", path, stats_file],
                          capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, PYSPARK_PYTHON=sys.executable))
    if proc.returncode != 0:
        raise RuntimeError(f"memory run failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, rows: Optional[int] = None,
        memory: Optional[bool] = None) -> Dict[str, Any]:
    """Run the benchmark and return its results (JSON-able).

    Parameters
    ----------
    quick : bool
        20,000 rows and no memory runs; else ``rows``.
    rows : int, optional
        N for the full run (default ``$SPARKAE_BENCH_SCORING_ROWS`` or 1,000,000); the
        comparison with ``predict_batch_udf`` scores ``min(N, 200,000)`` rows.
    memory : bool, optional
        Run the memory runs (default: in full runs, unless
        ``$SPARKAE_BENCH_SCORING_MEMORY`` is ``0``).
    """
    from bench import scoring_compare
    from bench.common import load_average
    from sparkae.scoring import pack

    n = 20_000 if quick else int(rows or os.environ.get("SPARKAE_BENCH_SCORING_ROWS")
                                 or 1_000_000)
    if memory is None:
        memory = not quick and os.environ.get("SPARKAE_BENCH_SCORING_MEMORY", "1") != "0"
    n_cmp = min(n, 200_000)
    work = tempfile.mkdtemp(prefix="sparkae-bench-scoring-")
    result: Dict[str, Any] = {"rows": n, "width": WIDTH, "hidden": HIDDEN, "quick": quick,
                              "scoring_batch_size": BATCH, "load_avg": [load_average()]}
    try:
        t0 = time.perf_counter()
        stats = make_data(os.path.join(work, "n"), n)
        result["data_seconds"] = round(time.perf_counter() - t0, 1)
        model = make_model(stats)
        default = ["deep_features", "reconstruction_mse"]
        # every configuration of the plain forward in fresh processes; the best one counts
        result["torch_rows_per_s"], result["torch_configs"] = scoring_compare.torch_best(
            pack(model._spec, model._state), n_cmp)
        result["load_avg"].append(load_average())
        spark = _session()
        try:
            path = os.path.join(work, "n")
            result["compare"] = scoring_compare.compare(spark, model, work, n_cmp)
            result["load_avg"].append(load_average())
            warm = os.path.join(work, "warm")
            make_data(warm, 4_000, seed=99, chunk=1_000)          # 4 files: both workers
            spark_rate(spark, model, warm, default)               # start and warm up
            spark_rate(spark, model, warm, default, direct=False)
            result["spark"] = spark_rate(spark, model, path, default)
            result["spark_reader"] = spark_rate(spark, model, path, default, direct=False)
            from pyspark.sql import functions as F

            from sparkae import scoring
            udt = scoring.has_udt(spark.read.parquet(path).schema)
            result["engine"] = ("arrow_udf" if hasattr(F, "arrow_udf") and not udt
                                else "map_in_arrow")
            result["outputs"] = {
                "rows": n_cmp,
                "deep_features": spark_rate(spark, model, path, ["deep_features"], limit=n_cmp),
                "reconstruction_mse": spark_rate(spark, model, path, ["reconstruction_mse"],
                                                 limit=n_cmp),
                "all": spark_rate(spark, model, path,
                                  ["deep_features", "reconstruction_mse", "feature_errors",
                                   "reconstruction", "is_anomaly"], limit=n_cmp),
            }
        finally:
            spark.stop()
        result["load_avg"].append(load_average())
        result["spark_vs_torch"] = round(result["spark"]["rows_per_s"] /
                                         result["torch_rows_per_s"], 3)
        result["spark_reader_vs_torch"] = round(result["spark_reader"]["rows_per_s"] /
                                                result["torch_rows_per_s"], 3)
        result["memory"] = _memory(work, path, stats) if memory else None
        _report_keys(result)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _memory(work: str, path: str, stats: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Peak RSS scoring N and 4N rows (the N files linked 4 times), fresh processes."""
    stats_file = os.path.join(work, "stats.json")
    json.dump({k: v.tolist() for k, v in stats.items()}, open(stats_file, "w"))
    four = os.path.join(work, "4n")
    os.makedirs(four)
    for copy in range(4):
        for f in sorted(os.listdir(path)):
            if f.endswith(".parquet"):
                os.link(os.path.join(path, f), os.path.join(four, f"c{copy}-{f}"))
    m1, m4 = _memory_run(path, stats_file), _memory_run(four, stats_file)
    return {"n": m1, "4n": m4,
            "python_workers_ratio": round(m4["peak_python_workers_rss_mib"] /
                                          max(1, m1["peak_python_workers_rss_mib"]), 3),
            "jvm_ratio": round(m4["peak_jvm_rss_mib"] / max(1, m1["peak_jvm_rss_mib"]), 3)}


def _ratio(a: Dict[str, Any], b: Any) -> float:
    return round(a["rows_per_s"] / (b["rows_per_s"] if isinstance(b, dict) else b), 3)


def _report_keys(r: Dict[str, Any]) -> None:
    """Add the harness's ``summary``, ``targets`` and ``tables`` keys."""
    c, torch_rate = r["compare"], r["torch_rows_per_s"]
    best = r["torch_configs"]["best"]
    ids = c.get("ids_only") or {"sparkae": {}, "predict_batch_udf": {}}
    r["summary"] = (f"Scoring {c['rows']:,} MNIST-like rows (784 columns, ~80% zeros; "
                    f"deep_features + reconstruction_mse) on local[2], load average "
                    f"{r['load_avg'][0][0]:.1f} at the start: sparkae's transform runs at "
                    + ", ".join(f"{_ratio(c['sparkae'][k], c['predict_batch_udf'][k]):.2f}x"
                                for k in c["sparkae"])
                    + f" Spark's predict_batch_udf ({', '.join(c['sparkae'])}) and at "
                    + ", ".join(f"{_ratio(c['sparkae'][k], torch_rate):.2f}x"
                                for k in c["sparkae"])
                    + f" the plain in-memory Torch forward in its best configuration "
                    f"({torch_rate:,} rows/s, {best}).")
    if ids["sparkae"]:
        ours, theirs = ids["sparkae"], ids["predict_batch_udf"]
        r["summary"] += (" With only id kept beside the scores: "
                         + ", ".join(f"{_ratio(ours[k], theirs[k]):.2f}x" for k in ours)
                         + " predict_batch_udf and "
                         + ", ".join(f"{_ratio(ours[k], torch_rate):.2f}x" for k in ours)
                         + " the plain forward.")
    r["targets"] = []
    pairs = [("transform", c["sparkae"], "predict_batch_udf", c["predict_batch_udf"]),
             ("score job", c["job"], "predict_batch_udf to Parquet",
              c["predict_batch_udf_to_parquet"])]
    for name, ours, other, theirs in pairs:
        for k in ours:
            for vs, b, goal in ((other, theirs[k], 3.0), ("plain Torch forward", torch_rate,
                                                          0.3)):
                v = _ratio(ours[k], b)
                r["targets"].append({"name": f"{name} / {vs}, {k}", "value": v,
                                     "target": f">= {goal}", "met": v >= goal})
    if r.get("memory"):
        ratio = r["memory"]["python_workers_ratio"]
        r["targets"].append({"name": "peak Python worker RSS, 4N / N", "value": ratio,
                             "target": "<= 1.10", "met": ratio <= 1.10})
    outs = r["outputs"]
    r["tables"] = [
        {"title": f"Scoring {c['rows']:,} rows into the noop sink: sparkae vs "
                  f"predict_batch_udf vs plain Torch ({torch_rate:,} rows/s, {best})",
         "columns": ["input", "sparkae rows/s", "predict_batch_udf rows/s",
                     "sparkae / predict_batch_udf", "sparkae / plain Torch"],
         "rows": [[k, c["sparkae"][k]["rows_per_s"], c["predict_batch_udf"][k]["rows_per_s"],
                   _ratio(c["sparkae"][k], c["predict_batch_udf"][k]),
                   _ratio(c["sparkae"][k], torch_rate)] for k in c["sparkae"]]},
        {"title": f"Score job (id + outputs to Parquet, {c['rows']:,} rows) vs "
                  "predict_batch_udf writing the same Parquet",
         "columns": ["input", "job rows/s", "reader", "writer", "predict_batch_udf rows/s",
                     "job / predict_batch_udf", "job / plain Torch"],
         "rows": [[k, c["job"][k]["rows_per_s"], c["job"][k]["reader"],
                   c["job"][k].get("writer", "spark"),
                   c["predict_batch_udf_to_parquet"][k]["rows_per_s"],
                   _ratio(c["job"][k], c["predict_batch_udf_to_parquet"][k]),
                   _ratio(c["job"][k], torch_rate)] for k in c["job"]]},
        {"title": "Where the Spark path's time goes (rows/s of each part alone)",
         "columns": ["input", "Parquet read", "input to Python (JVM -> Arrow)",
                     "outputs back (Arrow -> JVM)", "plain Torch forward"],
         "rows": [[k, v["parquet_read"]["rows_per_s"], v["jvm_to_python"]["rows_per_s"],
                   v["python_to_jvm"]["rows_per_s"], torch_rate]
                  for k, v in c["split"].items()]},
        {"title": f"Cost per output ({outs['rows']:,} rows, workers reading row groups)",
         "columns": ["outputs", "rows/s", "seconds"],
         "rows": [[k, outs[k]["rows_per_s"], outs[k]["seconds"]]
                  for k in ("deep_features", "reconstruction_mse", "all")]}]
    if ids["sparkae"]:   # results from before 2026-12-02 lack it
        r["tables"].insert(1, {
            "title": f"The same with only id kept beside the scores ({c['rows']:,} rows, "
                     "noop sink): the input column does not cross back to the JVM",
            "columns": ["input", "sparkae rows/s", "predict_batch_udf rows/s",
                        "sparkae / predict_batch_udf", "sparkae / plain Torch"],
            "rows": [[k, ids["sparkae"][k]["rows_per_s"],
                      ids["predict_batch_udf"][k]["rows_per_s"],
                      _ratio(ids["sparkae"][k], ids["predict_batch_udf"][k]),
                      _ratio(ids["sparkae"][k], torch_rate)] for k in ids["sparkae"]]})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows, no memory runs")
    parser.add_argument("--rows", type=int, default=None, help="N (default 1,000,000)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(_memory_child(*args.memory_child)))
        return 0
    print(json.dumps(run(quick=args.quick, rows=args.rows,
                         memory=False if args.no_memory else None), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
