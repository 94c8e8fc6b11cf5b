"""Load: scoring 10,000,000 rows on this machine with flat memory and no spill failures.

Data: 1,000,000 shifted digits (784 pixels, about 80% zeros) written once as Parquet by
:func:`bench.bench_scoring.make_data`, then linked 10 times into one directory: 10,000,000
rows that Spark reads as ten distinct files each. Model: bench_scoring's [100] tanh
autoencoder. The job: ``model.transform`` with reconstruction_mse and is_anomaly, written
as Parquet (a real sink, so the output path is exercised, not only the scoring), on
``local[2]`` with a 2 GiB driver, in a fresh process.

Measured: rows/s; the resident memory of the JVM and of the Python workers sampled every
0.5 s; the peak over the second tenth of the run (after warm-up) and over the last tenth (flat =
the last tenth's peak within 10% of the second tenth's); failed tasks from Spark's status tracker; the rows
written.

Usage: ``python -m bench load`` (``--quick``: 1,000,000 rows as 200,000 linked 5 times);
not part of ``python -m bench all`` (about 5 minutes; run it by name).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

TITLE = "Load: scoring 10,000,000 rows with flat memory"
#: A soak test of the README's guarantees at 10M rows, not a comparison: ``python -m bench load`` runs it; ``all`` does not.
IN_ALL = False


class _Sampler:
    """RSS (bytes) of a JVM and of its descendants, every 0.5 s, with timestamps."""

    def __init__(self, pid: int) -> None:
        from bench.bench_scoring import _PeakRSS

        self._peak = _PeakRSS(pid)
        self.samples: List[tuple] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            jvm = self._peak._rss(self._peak.pid)
            workers = sum(self._peak._rss(c) for c in self._peak._children())
            self.samples.append((time.perf_counter() - t0, jvm, workers))
            time.sleep(0.5)

    def __enter__(self) -> "_Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _child(path: str, stats_file: str, out: str) -> Dict[str, Any]:
    """In a fresh process: score ``path`` into Parquet at ``out``; memory over time."""
    from bench.bench_scoring import _session, make_model

    stats = {k: np.asarray(v) for k, v in json.load(open(stats_file)).items()}
    model = make_model(stats)
    spark = _session()
    try:
        sc = spark.sparkContext
        jvm_pid = int(sc._jvm.java.lang.ProcessHandle.current().pid())
        df = spark.read.parquet(path)
        t0 = time.perf_counter()
        with _Sampler(jvm_pid) as sampler:
            model.score(df, ["reconstruction_mse", "is_anomaly"]).write.mode("overwrite") \
                .parquet(out)
        secs = time.perf_counter() - t0
        written = spark.read.parquet(out).count()
        status = sc.statusTracker()
        failed = 0
        for job_id in status.getJobIdsForGroup(None) or []:
            info = status.getJobInfo(job_id)
            for sid in (info.stageIds if info else []):
                st = status.getStageInfo(sid)
                failed += st.numFailedTasks if st else 0
        return {"rows": written, "seconds": round(secs, 1), "rows_per_s": round(written / secs),
                "failed_tasks": failed, "samples": sampler.samples}
    finally:
        spark.stop()


def _tenths(samples: List[tuple]) -> Dict[str, Any]:
    n = len(samples)
    k = max(1, n // 10)
    first, last = samples[k:2 * k] or samples[:k], samples[-k:]   # after the warm-up tenth

    def peak(rows, i):
        return max(r[i] for r in rows) / 2**20

    out = {"samples": n,
           "jvm_second_tenth_mib": round(peak(first, 1)), "jvm_last_tenth_mib": round(peak(last, 1)),
           "workers_second_tenth_mib": round(peak(first, 2)),
           "workers_last_tenth_mib": round(peak(last, 2)),
           "jvm_peak_mib": round(max(r[1] for r in samples) / 2**20),
           "workers_peak_mib": round(max(r[2] for r in samples) / 2**20)}
    out["jvm_growth"] = round(out["jvm_last_tenth_mib"] / max(1, out["jvm_second_tenth_mib"]), 3)
    out["workers_growth"] = round(out["workers_last_tenth_mib"] /
                                  max(1, out["workers_second_tenth_mib"]), 3)
    return out


def run(quick: bool = False) -> Dict[str, Any]:
    from bench.bench_scoring import make_data

    base, copies = (200_000, 5) if quick else (1_000_000, 10)
    work = tempfile.mkdtemp(prefix="sparkae-bench-load-")
    try:
        src = os.path.join(work, "base")
        stats = make_data(src, base)
        table = os.path.join(work, "table")
        os.makedirs(table)
        for c in range(copies):
            for f in sorted(os.listdir(src)):
                if f.endswith(".parquet"):
                    os.link(os.path.join(src, f), os.path.join(table, f"c{c:02d}-{f}"))
        stats_file = os.path.join(work, "stats.json")
        json.dump({k: v.tolist() for k, v in stats.items()}, open(stats_file, "w"))
        proc = subprocess.run([sys.executable, __file__, "--child", table, stats_file,
                               os.path.join(work, "scores")], capture_output=True, text=True,
                              timeout=5400, env=dict(os.environ, PYSPARK_PYTHON=sys.executable))
        if proc.returncode != 0:
            raise RuntimeError(f"load run failed: {proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    samples = res.pop("samples")
    mem = _tenths(samples)
    rows = base * copies
    flat = max(mem["jvm_growth"], mem["workers_growth"])
    pts = samples[::max(1, len(samples) // 200)]
    result: Dict[str, Any] = {
        "summary": (f"{res['rows']:,} rows scored and written in {res['seconds']} s "
                    f"({res['rows_per_s']:,} rows/s) on local[2]; memory in the last tenth of "
                    f"the run vs the second: JVM x{mem['jvm_growth']}, Python workers "
                    f"x{mem['workers_growth']}; {res['failed_tasks']} failed tasks."),
        "rows": rows, **res, "memory": mem,
        "targets": [
            {"name": "all rows scored and written", "value": res["rows"], "target": rows,
             "met": res["rows"] == rows},
            {"name": "memory growth, last tenth / second tenth (max of JVM, workers)",
             "value": flat, "target": "<= 1.10", "met": flat <= 1.10},
            {"name": "failed tasks", "value": res["failed_tasks"], "target": 0,
             "met": res["failed_tasks"] == 0},
        ],
        "charts": [{"kind": "line", "title": "Resident memory while scoring (MiB)",
                    "xlabel": "seconds", "ylabel": "MiB", "x": [round(t[0], 1) for t in pts],
                    "series": {"driver JVM": [round(t[1] / 2**20) for t in pts],
                               "Python workers": [round(t[2] / 2**20) for t in pts]}}],
        "notes": ("Scoring is a map-only job (no shuffle), so there is nothing to spill; "
                  "failed tasks come from Spark's status tracker. Memory is the resident set "
                  "of the driver JVM (which runs the executor in local mode) and of its Python "
                  "worker processes, sampled every 0.5 s."),
    }
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        quick = "--quick" in sys.argv
        print(json.dumps(run(quick=quick), indent=2, default=str))
