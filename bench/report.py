"""Render ``BENCHMARKS.md`` and its PNG charts from the result records on disk.

For each entry the report shows one record: the newest full run that finished, else the
newest quick run that finished, else the newest attempt (with its error). Charts are
drawn from the specs in the record (matplotlib, Agg backend), so the report can always
be regenerated from ``bench/results`` alone.

Chart specs (``result["charts"]``, each with ``name`` and ``title``):

- ``{"kind": "bar", "categories": [...], "series": {label: [values]}, "ylabel", "log"}``:
  grouped bars;
- ``{"kind": "line", "x": [...], "series": {label: [values]}, "xlabel", "ylabel", "logx",
  "logy"}``;
- ``{"kind": "scatter", "panels": [{"title", "x", "y", "c"}], "clabel"}``: side-by-side
  scatter plots coloured by an integer label.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from bench.chart import draw_chart

log = logging.getLogger("bench")

HEADER = """# Benchmarks

sparkae measured against what users would pick instead (H2O-3, Spark MLlib PCA, PyOD,
a plain PyTorch loop), against the machine's own matrix-multiply rate, and across data
sizes. Every number below comes from `python -m bench` on the machine described in each
section; systems compared in one table were measured in the same run, so read the
ratios first: absolute times move with the machine and its load (the load average
before and after each run is given).

Rerun: `pip install -e '.[bench]'`, then `python -m bench all` (every entry except the
`load` soak test; target: under 30 minutes on 2 quiet cores, its total is recorded in
`bench/results/runs/`) or `python -m bench NAME` for one entry (`python -m bench load` runs
the 10M-row soak test, about 5 minutes); `python -m bench smoke` is the quick subset CI
runs (under 2 minutes); `python -m bench report` regenerates this file from
`bench/results/`. H2O trains every model to the end (about 11 of `all`'s minutes); setting
`$SPARKAE_BENCH_H2O_BUDGET_S` caps its training at that many seconds. The official MNIST
test set is read from `--mnist DIR` (default `$SPARKAE_MNIST_DIR`, else
`../shared/data/mnist`).

_This file is generated; edit `bench/report.py` or the entries instead._
"""


# -- records -------------------------------------------------------------------------------

def load_records(results_dir: Path) -> List[Dict[str, Any]]:
    out = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
            rec["_path"] = str(path)
            out.append(rec)
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable result %s: %s", path, exc)
    return out


def latest_all_run(results_dir: Path) -> Optional[Dict[str, Any]]:
    """The newest record of a full ``python -m bench all`` (``<results>/runs/all-*.json``,
    quick runs left out), or None."""
    runs = []
    for path in sorted((Path(results_dir) / "runs").glob("all-*.json")):
        try:
            run = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable run record %s: %s", path, exc)
            continue
        if not run.get("quick"):
            run["_path"] = str(path)
            runs.append(run)
    return max(runs, key=lambda r: r.get("finished") or "") if runs else None


def _key(rec: Dict[str, Any]) -> str:
    return rec.get("finished") or rec.get("started") or ""


def select(records: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per entry: newest ok full run, else newest ok quick run, else newest attempt."""
    by_entry: Dict[str, List[Dict[str, Any]]] = {}
    for rec in records:
        by_entry.setdefault(rec.get("entry", "?"), []).append(rec)
    chosen = {}
    for name, recs in by_entry.items():
        recs = sorted(recs, key=_key)
        full_ok = [r for r in recs if r.get("status") == "ok" and not r.get("quick")]
        quick_ok = [r for r in recs if r.get("status") == "ok" and r.get("quick")]
        pick = (full_ok or quick_ok or recs)[-1]
        pick = dict(pick)
        pick["_newer_failure"] = next((r for r in reversed(recs) if _key(r) > _key(pick)
                                       and r.get("status") == "error"
                                       and bool(r.get("quick")) == bool(pick.get("quick"))),
                                      None)
        chosen[name] = pick
    return chosen


# -- formatting ----------------------------------------------------------------------------

def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "—"
        a = abs(v)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.3g}" if a < 10 else f"{v:.1f}"
        return f"{v:.3g}" if a >= 0.001 else f"{v:.2e}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v).replace("|", "\\|").replace("\n", " ")


def table(columns: List[str], rows: List[List[Any]]) -> str:
    lines = ["| " + " | ".join(fmt(c) for c in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _flatten(obj: Any, prefix: str = "", out: Optional[List[Tuple[str, Any]]] = None,
             depth: int = 0) -> List[Tuple[str, Any]]:
    out = [] if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("summary", "targets", "tables", "charts", "notes"):
                continue
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif isinstance(obj, list) and obj and all(not isinstance(x, (dict, list)) for x in obj):
        if len(obj) <= 12:
            out.append((prefix, obj))
        else:
            out.append((prefix, f"{len(obj)} values"))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:20]):
            _flatten(v, f"{prefix}[{i}]", out, depth + 1)
    else:
        out.append((prefix, obj))
    return out


# -- sections ------------------------------------------------------------------------------

def _versions_line(v: Dict[str, Any]) -> str:
    keys = ("python", "torch", "pyspark", "h2o", "pyod", "scikit-learn", "numpy", "pyarrow")
    parts = [f"{k} {v[k]}" for k in keys if v.get(k)]
    git = v.get("git") or {}
    if git.get("commit"):
        parts.append(f"commit {git['commit'][:10]}{' + local changes' if git.get('dirty') else ''}")
    if v.get("java"):
        parts.append(v["java"])
    return ", ".join(parts)


def _run_line(rec: Dict[str, Any]) -> str:
    m = rec.get("machine", {})
    la0, la1 = rec.get("load_avg_start"), rec.get("load_avg_end")
    load = (f"load average (1 min) {la0[0]} before, {la1[0]} after"
            if la0 and la1 else "load average unknown")
    touch = [rec.get(f"first_touch_s_per_gib_{k}") for k in ("start", "end")]
    if all(t is not None for t in touch):
        load += (f"; first touch of fresh memory {touch[0]:g} s/GiB before, {touch[1]:g} "
                 "after (`bench.harness.first_touch_s_per_gib`)")
    mode = "quick run" if rec.get("quick") else "full run"
    return (f"_{mode}, {rec.get('started', '?')}, {fmt(rec.get('duration_s'))} s; "
            f"{m.get('usable_cores', '?')} cores ({m.get('cpu_model', '?')}), "
            f"{m.get('memory_gib', '?')} GiB; {load}._")


def section(name: str, rec: Dict[str, Any], charts_dir: Path, report_path: Path) -> str:
    title = rec.get("title") or name
    out = [f"## {title}", "", f"Entry `bench/bench_{name}.py` (`python -m bench {name}`).", "",
           _run_line(rec), ""]
    status = rec.get("status")
    if status == "skipped":
        out += [f"**Not run: skipped** — {rec.get('reason', '')}", ""]
        return "\n".join(out)
    if status != "ok":
        out += [f"**Not run: the last attempt failed** — `{rec.get('error', '?')}`", ""]
        return "\n".join(out)
    newer = rec.get("_newer_failure")
    if newer:
        out += [f"_A newer attempt ({newer.get('started')}) failed: `{newer.get('error')}`; the "
                "numbers below are from the last run that finished._", ""]
    if rec.get("quick"):
        out += ["_Quick run only (reduced sizes): no full run of this entry has finished yet._",
                ""]
    res = rec.get("result", {})
    if res.get("summary"):
        out += [res["summary"], ""]
    targets = res.get("targets") or []
    if targets:
        judged = [t for t in targets if t.get("met") is not None]
        missed = [t for t in judged if not t.get("met")]
        open_ = len(targets) - len(judged)
        out.append(f"**Targets: {len(judged) - len(missed)} of {len(judged)} met"
                   + (f", {open_} not evaluated" if open_ else "") + ".**"
                   + (" Missed: " + "; ".join(str(t.get("name")) for t in missed) + "."
                      if missed else ""))
        out += ["", table(["target", "measured", "required", "met"],
                          [[t.get("name"), t.get("value"), t.get("target"),
                            "not evaluated" if t.get("met") is None else
                            "met" if t.get("met") else "**MISSED**"] for t in targets]), ""]
    for tab in res.get("tables") or []:
        if tab.get("title"):
            out += [f"**{tab['title']}**", ""]
        out += [table(tab["columns"], tab["rows"]), ""]
        if tab.get("caption"):
            out += [tab["caption"], ""]
    for spec in res.get("charts") or []:
        path = Path(charts_dir) / f"{name}-{spec.get('name', 'chart')}.png"
        try:
            draw_chart(spec, path)
            rel = os.path.relpath(path, Path(report_path).resolve().parent)
            out += [f"![{spec.get('title', '')}]({rel})", ""]
        except Exception as exc:  # noqa: BLE001 - a bad spec must not lose the report
            log.warning("chart %s of %s failed: %s", spec.get("name"), name, exc)
            out += [f"_(chart {spec.get('name')} could not be drawn: {exc})_", ""]
    if res.get("notes"):
        out += [res["notes"], ""]
    known = {"summary", "targets", "tables", "charts", "notes"}
    if not (res.keys() & known - {"notes"}) or res.get("show_values"):
        flat = [(k, v) for k, v in _flatten(res) if k != "show_values"]
        if flat:
            out += ["**Measured values**", "", table(["key", "value"], [list(x) for x in flat]),
                    ""]
    out += [f"<sub>Versions: {_versions_line(rec.get('versions', {}))}. "
            f"Result: `{os.path.relpath(rec['_path'], Path(report_path).resolve().parent)}`."
            "</sub>", ""]
    return "\n".join(out)


def shown_records(results_dir: Path, entries: Optional[List[str]] = None
          ) -> Tuple[Dict[str, Dict[str, Any]], List[str]]:
    """The records the report shows (:func:`select`) and the entry names it lists: every
    entry of ``entries`` (default: every discovered entry) and every entry with a record."""
    chosen = select(load_records(results_dir))
    if entries is None:
        from bench.harness import discover

        entries = discover()
    return chosen, sorted(set(entries) | set(chosen))


def render(results_dir: Path, report_path: Path, charts_dir: Path,
           entries: Optional[List[str]] = None,
           records: Optional[Tuple[Dict[str, Dict[str, Any]], List[str]]] = None) -> str:
    """The markdown of the report (charts are written as a side effect); ``records``, when
    given, is :func:`shown_records`'s answer, read once by the caller."""
    chosen, names = records or shown_records(results_dir, entries)
    out = [HEADER]
    rows = []
    for name in names:
        rec = chosen.get(name)
        if rec is None:
            rows.append([f"`{name}`", "—", "—", "not run yet", "—"])
            continue
        targets = [t for t in ((rec.get("result") or {}).get("targets") or [])
                   if t.get("met") is not None]
        met = sum(1 for t in targets if t.get("met"))
        status = {"ok": "ok", "skipped": "skipped", "error": "**failed**"}.get(
            rec.get("status"), rec.get("status"))
        rows.append([f"[`{name}`](#{_anchor(rec.get('title') or name)})",
                     (rec.get("started") or "")[:16].replace("T", " "),
                     "quick" if rec.get("quick") else "full", status,
                     f"{(rec.get('duration_s') or 0) / 60:.1f}",
                     (rec.get("load_avg_start") or ["—"])[0],
                     f"{met} of {len(targets)}" if targets else "—"])
    out += ["## Overview", "",
            table(["entry", "run", "mode", "status", "minutes", "load avg at start",
                   "targets met"], rows), ""]
    shown = [r for r in chosen.values() if r.get("status") == "ok"]
    if shown:
        total = sum(r.get("duration_s") or 0 for r in shown) / 60
        cores = {r.get("machine", {}).get("usable_cores") for r in shown}
        out += [f"The runs shown took {total:.0f} minutes in all on "
                f"{'/'.join(str(c) for c in sorted(c for c in cores if c))} cores"
                + ("; the 1-minute load average when each started is listed (the cores "
                   "were shared with other work when it exceeds the core count)." if any(
                       (r.get("load_avg_start") or [0])[0] > max(c or 1 for c in cores)
                       for r in shown) else "."), ""]
    out += [_all_time(chosen, names, results_dir), ""]
    missing = [n for n in names if n not in chosen or chosen[n].get("status") != "ok"]
    if missing:
        out += ["Not run (or failed) in the results on disk: "
                + ", ".join(f"`{n}`" for n in missing) + ".", ""]
    for name in names:
        if name in chosen:
            out.append(section(name, chosen[name], charts_dir, report_path))
    return "\n".join(out).rstrip() + "\n"


def _all_time(chosen: Dict[str, Dict[str, Any]], names: List[str],
              results_dir: Path) -> str:
    """The overview's paragraph on how long ``python -m bench all`` takes vs its target."""
    from bench.harness import ALL_TARGET_MIN, all_members

    members = [n for n in all_members() if n in names]
    left_out = [n for n in names if n not in members]
    full = {n: chosen[n] for n in members if n in chosen and chosen[n].get("status") == "ok"
            and not chosen[n].get("quick")}
    text = [f"**Time of `python -m bench all`** ({len(members)} entries"
            + (f"; {', '.join(f'`{n}`' for n in left_out)} run only by name" if left_out
               else "") + f"), target under {ALL_TARGET_MIN:g} minutes on 2 cores: "]
    run = latest_all_run(results_dir)
    if run is not None:
        mins = (run.get("total_s") or 0) / 60
        failed = [e["entry"] for e in run.get("entries", []) if e.get("status") != "ok"]
        la = (run.get("load_avg_start") or ["?"])[0]
        text.append(f"the last full run ({(run.get('started') or '?')[:16].replace('T', ' ')}, "
                    f"load average {la} at its start) took **{mins:.1f} minutes**, "
                    + ("within the target" if mins <= ALL_TARGET_MIN else
                       "**over the target**")
                    + (f" (not ok: {', '.join(failed)})" if failed else "") + ". ")
    else:
        text.append("no full `python -m bench all` is recorded yet (`bench/results/runs/`). ")
    if full:
        mins = sum(r.get("duration_s") or 0 for r in full.values()) / 60
        missing = [n for n in members if n not in full]
        busy = [n for n, r in full.items() if (r.get("load_avg_start") or [0])[0] > 2]
        text.append(f"The full runs shown of its entries add up to {mins:.1f} minutes ("
                    + ("within" if mins <= ALL_TARGET_MIN else "over") + " the target"
                    + (f"; {', '.join(missing)} without a full run" if missing else "") + ")"
                    + (", measured in separate sessions"
                       + (f", {len(busy)} of them on cores shared with other work (load "
                          "average above 2 at the start)" if busy else "") if run is None
                       or any(r.get("_path", "").rsplit("/", 1)[-1] not in
                              {e.get("result") for e in run.get("entries", [])}
                              for r in full.values()) else "")
                    + ".")
    return "".join(text)


def _anchor(title: str) -> str:
    import re

    a = title.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def write_report(results_dir: Path, report_path: Path, charts_dir: Path,
                 readme: Optional[Path] = None) -> Path:
    """Write the report; with ``readme``, also its generated blocks (the benchmark summary
    and the anomaly table, :mod:`bench.readme_blocks`; the passages, :mod:`bench.passages`)
    from the stored records."""
    records = shown_records(Path(results_dir))
    text = render(Path(results_dir), Path(report_path), Path(charts_dir), records=records)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(report_path) + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, report_path)
    log.info("wrote %s", report_path)
    if readme is not None:
        from bench import bench_anomaly, readme_blocks

        chosen, names = records
        rel = os.path.relpath(Path(report_path).resolve(), Path(readme).resolve().parent)
        if readme_blocks.write_summary(Path(readme), chosen, names, rel, fmt, _anchor,
                                       _all_time(chosen, names, Path(results_dir))):
            log.info("wrote the benchmark summary in %s", readme)
        bench_anomaly.write_readme(str(readme), str(results_dir))
        from bench.passages import write_passages

        written = write_passages(Path(readme), Path(results_dir))
        if written:
            log.info("wrote the passages %s in %s", ", ".join(written), readme)
    return Path(report_path)
