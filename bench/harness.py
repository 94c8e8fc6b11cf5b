"""Discover benchmark entries, run them, record their results, regenerate the report.

An entry is a module ``bench/bench_<name>.py`` exposing ``def run(quick: bool = False) ->
dict``. Optional module attributes: ``TITLE`` (section title in BENCHMARKS.md) and
``SMOKE = True`` (part of ``python -m bench smoke``, which runs its members with
``quick=True`` and must finish in under 2 minutes) and ``IN_ALL = False`` (left out of
``python -m bench all``, run only by name: the load soak test, the loaders comparison,
which needs the legacy environment, the long comparisons at scale, ``anomaly_scale``
and ``h2o_large``, the ODDS sets of ``anomaly_odds`` (not shipped) and ``gpu`` (a GPU
machine)). ``all`` must finish in
:data:`ALL_TARGET_MIN` minutes on the 2-core benchmark machine; it runs its members in name
order except :data:`RUN_LAST`, and writes a record of the whole run (each entry's status
and seconds, the total) to ``<results>/runs/all-<YYYYmmdd-HHMMSS>[-quick].json``, which the
report's overview compares with the target. Keys of the returned dict that the report
understands (all optional; anything else is listed as measured values):

- ``summary``: one or two sentences (markdown) shown first;
- ``targets``: ``[{name, value, target, met}]``; a missed target is called out;
- ``tables``: ``[{title, columns, rows}]``;
- ``charts``: chart specs drawn by :mod:`bench.report` (``kind`` bar, line or scatter);
- ``notes``: markdown text, e.g. a profile of where the time goes.

An entry that cannot run here raises :class:`bench.common.Skip` (recorded as skipped).
Each run is written to ``<results>/<name>-<YYYYmmdd-HHMMSS>[-quick].json`` with the
machine (cores, memory, CPU model), versions, date, load average before and after, wall
time and status; then the report is regenerated from every result on disk.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench import common

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CHARTS_DIR = BENCH_DIR / "charts"
REPORT = common.ROOT / "BENCHMARKS.md"
PREFIX = "bench_"
#: Minutes ``python -m bench all`` may take on the 2-core benchmark machine.
ALL_TARGET_MIN = 30.0
#: Entries ``all`` runs after the others: bench_scoring stops the shared Spark session (it
#: needs its own), so the others run before it in one session with one warm-up.
RUN_LAST = ("scoring",)


def discover() -> List[str]:
    """Names of the entries present (``bench/bench_<name>.py``), sorted."""
    return sorted(p.stem[len(PREFIX):] for p in BENCH_DIR.glob(f"{PREFIX}*.py"))


def load(name: str):
    """Import the entry module ``bench.bench_<name>``."""
    return importlib.import_module(f"bench.{PREFIX}{name}")


def smoke_members() -> List[str]:
    """Entries that declare ``SMOKE = True`` (an entry that fails to import is left out and
    logged)."""
    out = []
    for name in discover():
        try:
            if getattr(load(name), "SMOKE", False):
                out.append(name)
        except Exception as exc:  # noqa: BLE001 - report and go on
            log.error("bench_%s does not import: %s", name, exc)
    return out


def all_members() -> List[str]:
    """Entries ``python -m bench all`` runs, in its order: every entry except those that
    declare ``IN_ALL = False``, by name, :data:`RUN_LAST` last (an entry that fails to
    import stays in, so that its failure is recorded)."""
    out = []
    for name in discover():
        try:
            if not getattr(load(name), "IN_ALL", True):
                continue
        except Exception as exc:  # noqa: BLE001 - run it anyway: the run records the error
            log.error("bench_%s does not import: %s", name, exc)
        out.append(name)
    return sorted(out, key=lambda n: (n in RUN_LAST, RUN_LAST.index(n) if n in RUN_LAST
                                      else 0, n))


def write_run_record(records: List[Dict[str, Any]], total_s: float, quick: bool,
                     started: str, load_start: Optional[List[float]],
                     results_dir: Path = RESULTS_DIR) -> Path:
    """Record one ``python -m bench all``: entries, statuses, seconds and the total."""
    run = {"run": "all", "quick": bool(quick), "started": started,
           "finished": common.now_iso(), "total_s": round(total_s, 1),
           "target_min": ALL_TARGET_MIN, "machine": _MACHINE,
           "load_avg_start": load_start, "load_avg_end": common.load_average(),
           "entries": [{"entry": r["entry"], "status": r["status"],
                        "duration_s": r["duration_s"],
                        "result": os.path.basename(r.get("_path", ""))} for r in records]}
    out = Path(results_dir) / "runs"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"all-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(run, indent=1, default=str) + "\n")
    return path


_MACHINE: Optional[Dict[str, Any]] = None
_VERSIONS: Optional[Dict[str, Any]] = None


_TOUCH_CHILD = (
    "import time, numpy as np\n"
    "t = time.perf_counter(); a = np.ones({n}, dtype=np.uint8)\n"
    "print(time.perf_counter() - t)\n")


def first_touch_s_per_gib(mib: int = 256) -> Optional[float]:
    """Seconds per GiB that a fresh process takes to write ``mib`` MiB of memory it has just
    allocated (None when the probe fails). On a virtual machine whose memory is backed
    lazily, and handed back when idle, this moves by two orders of magnitude over a day
    (0.1 to 8 s per GiB measured here) and with it every step that fills fresh memory:
    reading a table, scaling it, a fit's preparation. Recorded beside the load average."""
    try:
        out = subprocess.run([sys.executable, "-c", _TOUCH_CHILD.format(n=mib << 20)],
                             capture_output=True, text=True, timeout=120)
        return round(float(out.stdout.strip()) * 1024 / mib, 3)
    except Exception:  # noqa: BLE001 - a probe only
        return None


def run_entry(name: str, quick: bool, results_dir: Path = RESULTS_DIR) -> Dict[str, Any]:
    """Run one entry; write and return its record (status ``ok``, ``skipped`` or
    ``error``)."""
    global _MACHINE, _VERSIONS
    if _MACHINE is None:
        _MACHINE, _VERSIONS = common.machine(), common.versions()
    record: Dict[str, Any] = {
        "entry": name, "quick": bool(quick), "started": common.now_iso(),
        "machine": _MACHINE, "versions": _VERSIONS, "load_avg_start": common.load_average(),
        "first_touch_s_per_gib_start": first_touch_s_per_gib(),
        "mnist_dir": str(common.mnist_dir()),
        "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                               "MKL_NUM_THREADS", "JAVA_TOOL_OPTIONS")},
    }
    log.info("=== bench %s%s ===", name, " (quick)" if quick else "")
    t0 = time.perf_counter()
    try:
        module = load(name)
        record["title"] = getattr(module, "TITLE", name)
        result = module.run(quick=quick)
        if not isinstance(result, dict):
            raise TypeError(f"bench_{name}.run returned {type(result).__name__}, not a dict")
        record["status"], record["result"] = "ok", result
    except common.Skip as exc:
        record["status"], record["reason"] = "skipped", str(exc)
        log.warning("bench %s skipped: %s", name, exc)
    except Exception as exc:  # noqa: BLE001 - record the failure, go on with the others
        record["status"], record["error"] = "error", f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-6000:]
        log.error("bench %s failed: %s", name, record["traceback"])
    record["duration_s"] = round(time.perf_counter() - t0, 1)
    record["finished"] = common.now_iso()
    record["load_avg_end"] = common.load_average()
    record["first_touch_s_per_gib_end"] = first_touch_s_per_gib()
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = results_dir / f"{name}-{stamp}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    record["_path"] = str(path)
    log.info("bench %s: %s in %.1f s -> %s", name, record["status"], record["duration_s"], path)
    return record


def _stop_spark() -> None:
    try:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
    except Exception:  # noqa: BLE001 - nothing to stop
        pass


#: JVM options of the test suite (scripts/test_jvm.sh): C1 only and the serial GC suit its
#: short JVMs but slow a long Spark job, its JVM-bound baselines most.
_TEST_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def _drop_test_jvm_options() -> None:
    """Remove the test suite's JVM options from ``JAVA_TOOL_OPTIONS`` (a shell that sourced
    scripts/test_jvm.sh): every JVM of a benchmark runs with its defaults."""
    opts = os.environ.get("JAVA_TOOL_OPTIONS")
    if not opts:
        return
    kept = [o for o in opts.split() if o not in _TEST_JVM_OPTIONS]
    if len(kept) != len(opts.split()):
        log.warning("JAVA_TOOL_OPTIONS: dropping the test suite's %s for the benchmarks",
                    " ".join(_TEST_JVM_OPTIONS))
        if kept:
            os.environ["JAVA_TOOL_OPTIONS"] = " ".join(kept)
        else:
            del os.environ["JAVA_TOOL_OPTIONS"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run sparkae benchmarks, record results, regenerate BENCHMARKS.md.")
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="an entry (bench/bench_NAME.py), 'all' (every entry except "
                             "those marked IN_ALL = False: the 'load' soak test, the "
                             "'loaders' comparison (legacy environment), the long "
                             "'anomaly_scale' and 'h2o_large', 'anomaly_odds' (ODDS "
                             "files) and 'gpu' (a GPU machine), which run only by "
                             f"name; target: {ALL_TARGET_MIN:g} minutes on 2 "
                             "cores), 'smoke' (the quick CI subset), 'list', or 'report' "
                             "(regenerate BENCHMARKS.md and README's generated blocks only)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke implies it)")
    parser.add_argument("--mnist", metavar="DIR", help="directory of the official MNIST test "
                        f"set (default ${common.MNIST_ENV} or {common.DEFAULT_MNIST_DIR})")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--report", type=Path, default=REPORT, help="the markdown to write (README.md's "
                        "generated blocks are rewritten only with the default)")
    parser.add_argument("--charts-dir", type=Path, default=CHARTS_DIR)
    parser.add_argument("--no-report", action="store_true", help="do not regenerate the report")
    parser.add_argument("--omp-wait-policy", choices=["passive", "active", "default"],
                        default="passive",
                        help="OMP_WAIT_POLICY for Torch's OpenMP threads here and in Spark's "
                             "Python workers (default passive: on cores shared with other "
                             "processes, spinning threads slow 2-thread Torch down 10x or more; "
                             "bench_machine measures it); an OMP_WAIT_POLICY already set wins. "
                             "It applies to sparkae; plain-Torch scoring baselines run in "
                             "fresh processes under each policy and the best one counts")
    args = parser.parse_args(argv)
    if args.omp_wait_policy != "default":
        # before Torch (and its OpenMP runtime) is imported; Spark's workers inherit it
        os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy.upper())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("bench", "sparkae"):
        logging.getLogger(name).setLevel(logging.INFO)
    if args.mnist:
        os.environ[common.MNIST_ENV] = args.mnist
    _drop_test_jvm_options()
    os.environ.setdefault("DO_NOT_TRACK", "1")          # h2o-py: no usage telemetry
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")

    from bench import report

    # README's generated blocks follow the checked-in report only, not one written elsewhere
    readme = common.ROOT / "README.md" if args.report.resolve() == REPORT.resolve() else None
    names, quick = list(args.names), args.quick
    if names == ["list"]:
        smoke, in_all = set(smoke_members()), set(all_members())
        for name in discover():
            tags = [t for t, on in (("smoke", name in smoke), ("not in all", name not in in_all))
                    if on]
            print(name + (f"  ({', '.join(tags)})" if tags else ""))
        return 0
    if names == ["report"]:
        print(report.write_report(args.results_dir, args.report, args.charts_dir, readme))
        return 0
    if names == ["smoke"]:
        names, quick = smoke_members(), True
    run_all = names == ["all"]
    if run_all:
        names = all_members()
    unknown = [n for n in names if n not in discover()]
    if unknown:
        parser.error(f"unknown entry {', '.join(unknown)}; entries: {', '.join(discover())}, "
                     "or all, smoke, list, report")

    t0, started, load_start = time.perf_counter(), common.now_iso(), common.load_average()
    records = []
    try:
        for name in names:
            records.append(run_entry(name, quick, args.results_dir))
            if not args.no_report:
                report.write_report(args.results_dir, args.report, args.charts_dir, readme)
    finally:
        _stop_spark()
    total = time.perf_counter() - t0
    if run_all:
        run_path = write_run_record(records, total, quick, started, load_start,
                                    args.results_dir)
        log.info("bench all: %.1f min (target %g min) -> %s", total / 60, ALL_TARGET_MIN,
                 run_path)
        if not args.no_report:          # the overview states this run's total
            report.write_report(args.results_dir, args.report, args.charts_dir, readme)
    width = max(len(r["entry"]) for r in records) if records else 0
    for r in records:
        extra = r.get("error") or r.get("reason") or ""
        print(f"{r['entry']:<{width}}  {r['status']:<7}  {r['duration_s']:>7.1f} s  {extra}")
    print(f"total {total:.1f} s ({total / 60:.1f} min"
          + (f"; target for all: {ALL_TARGET_MIN:g} min, "
             f"{'met' if total <= 60 * ALL_TARGET_MIN else 'MISSED'}" if run_all and not quick
             else "")
          + f"); results in {args.results_dir}"
          + ("" if args.no_report else f"; report {args.report}"))
    return 1 if any(r["status"] == "error" for r in records) else 0
