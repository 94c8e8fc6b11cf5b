"""The benchmark harness keeps working: ``python -m bench smoke`` (the quick subset, meant
to finish in under 2 minutes) runs every smoke entry, writes one JSON result per entry and
a BENCHMARKS.md with its charts. Runs in a subprocess (its own Spark session) and writes
into a temporary directory, never into bench/results or the checked-in BENCHMARKS.md.
Deselect with ``-m 'not bench'``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.bench
def test_bench_smoke_runs_and_writes_report(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.harness import smoke_members

    members = smoke_members()
    assert {"torch", "pca", "scaling", "machine"} <= set(members), members
    results, report, charts = tmp_path / "results", tmp_path / "BENCHMARKS.md", tmp_path / "charts"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYARROW_IGNORE_TIMEZONE="1",
               DO_NOT_TRACK="1", PYSPARK_PYTHON=sys.executable)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "smoke", "--results-dir", str(results),
                           "--report", str(report), "--charts-dir", str(charts)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    elapsed = time.perf_counter() - t0
    print(f"python -m bench smoke: {elapsed:.0f} s\n{proc.stdout}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    records = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert sorted(r["entry"] for r in records) == sorted(members)
    for rec in records:
        assert rec["quick"] is True
        assert rec["status"] in ("ok", "skipped"), (rec["entry"], rec.get("error"))
        assert rec["machine"]["logical_cores"] >= 1 and rec["machine"]["cpu_model"]
        assert rec["versions"]["torch"] and rec["versions"]["pyspark"]
        assert rec["load_avg_start"] is not None
    ok = [r for r in records if r["status"] == "ok"]
    assert {r["entry"] for r in ok} >= {"torch", "pca", "scaling", "machine"}

    text = report.read_text()
    assert "## Overview" in text
    for rec in ok:
        assert f"`bench/bench_{rec['entry']}.py`" in text
        for spec in rec["result"].get("charts", []):
            png = charts / f"{rec['entry']}-{spec['name']}.png"
            assert png.exists() and png.stat().st_size > 1000, png
            assert f"charts/{png.name}" in text
    torch_rec = next(r for r in ok if r["entry"] == "torch")
    assert torch_rec["result"]["training"]["torch_rows_per_s"] > 0
    assert torch_rec["result"]["scoring"]["ratio"] > 0
