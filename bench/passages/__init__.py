"""README passages whose figures come from stored results: written, never typed by hand.

A passage is prose with figures in it (why a target is missed, how a default was chosen),
generated from ``bench/results`` by a function of :class:`Records` and written between
``<!-- passage:NAME:start ... -->`` and ``<!-- passage:NAME:end -->`` in README.md by
``python -m bench report`` (:func:`write_passages`), like the benchmark summary
(:mod:`bench.readme_blocks`). A passage may draw on several runs (a range over the runs
on the current code, an earlier run named by its file) as well as the newest one of an
entry; each names the files its figures come from. When a record a passage needs is not
stored, the block says so instead of keeping figures nobody can trace.

A test (``tests/test_bench_passages.py``) checks that README's blocks are what the stored
results give, so a new result without ``python -m bench report`` fails CI.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from bench.readme_blocks import replace_block

log = logging.getLogger("bench")

#: name -> function of the stored records returning the passage's Markdown
PASSAGES: Dict[str, Callable[["Records"], str]] = {}


def passage(name: str) -> Callable:
    """Register a passage function under ``name`` (its README markers' name)."""
    def deco(fn: Callable[["Records"], str]) -> Callable[["Records"], str]:
        PASSAGES[name] = fn
        return fn
    return deco


class MissingResult(LookupError):
    """A passage needs a stored result that is not there."""


class Records:
    """The stored results of ``results_dir`` (its ``*.json`` and the research records in
    its ``anomaly_research/`` folder), read once."""

    def __init__(self, results_dir: Path) -> None:
        from bench.report import load_records

        self.dir = Path(results_dir)
        self._recs = [dict(rec, _file=Path(rec["_path"]).name)
                      for rec in load_records(self.dir)]

    def runs(self, entry: str, since: str = "", until: str = "~",
             where: Optional[Callable[[Dict[str, Any]], bool]] = None) -> List[Dict[str, Any]]:
        """Full, finished runs of ``entry`` started in ``[since, until)`` (ISO strings,
        compared as text), oldest first, that ``where`` accepts."""
        out = [r for r in self._recs if r.get("entry") == entry and r.get("status") == "ok"
               and not r.get("quick") and since <= (r.get("started") or "") < until
               and (where is None or where(r))]
        return sorted(out, key=lambda r: r.get("started") or "")

    def need(self, entry: str, since: str = "") -> List[Dict[str, Any]]:
        """:meth:`runs` of ``entry`` since ``since``; :class:`MissingResult` when none is
        stored."""
        runs = self.runs(entry, since=since)
        if not runs:
            raise MissingResult(f"no full run of `{entry}`" + (f" since {since}" if since
                                                              else "") + " is stored")
        return runs

    def latest(self, entry: str) -> Dict[str, Any]:
        """The newest full run of ``entry`` (what BENCHMARKS.md shows)."""
        runs = self.runs(entry)
        if not runs:
            raise MissingResult(f"no full run of `{entry}` is stored")
        return runs[-1]

    def named(self, file: str) -> Dict[str, Any]:
        """The stored result ``file`` (a name in the results folder or below it)."""
        for rec in self._recs:
            if rec["_file"] == file:
                return rec
        path = self.dir / file
        if not path.is_file():
            raise MissingResult(f"`{file}` is not stored")
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict):
            raise MissingResult(f"`{file}` is not a result record")
        return dict(rec, _file=file)


def target(rec: Dict[str, Any], name: str) -> Dict[str, Any]:
    """The target called ``name`` of the run ``rec``."""
    for t in (rec.get("result") or {}).get("targets") or []:
        if t.get("name") == name:
            return t
    raise MissingResult(f"`{rec.get('_file')}` has no target {name!r}")


def table(rec: Dict[str, Any], title_start: str) -> Dict[str, Any]:
    """The table of run ``rec`` whose title starts with ``title_start``."""
    for tab in (rec.get("result") or {}).get("tables") or []:
        if str(tab.get("title") or "").startswith(title_start):
            return tab
    raise MissingResult(f"`{rec.get('_file')}` has no table {title_start!r}")


def column(tab: Dict[str, Any], name: str) -> List[Any]:
    """The values of column ``name`` of a result table."""
    i = tab["columns"].index(name)
    return [row[i] for row in tab["rows"]]


def span(values: Iterable[float], fmt: str = "{:.2f}", unit: str = "") -> str:
    """``"a-b"`` (smallest to largest, each as ``fmt``), or one value when they agree."""
    vals = sorted(float(v) for v in values)
    if not vals:
        raise MissingResult("no values for a range")
    lo, hi = fmt.format(vals[0]), fmt.format(vals[-1])
    return (lo if lo == hi else f"{lo}-{hi}") + unit


def times(v: float, digits: int = 2) -> str:
    """A ratio as the prose quotes it: ``1.23x``."""
    return f"{v:.{digits}f}x"


def files(recs: Sequence[Dict[str, Any]]) -> str:
    """The runs' files, as the README cites them: the first whole, then ``-HHMMSS`` for
    later ones of the same entry and day."""
    names = [r["_file"] for r in recs]
    if not names:
        return ""
    out = [f"`{names[0]}`"]
    stem = names[0].rsplit("-", 1)[0]
    for n in names[1:]:
        out.append(f"`-{n.rsplit('-', 1)[1][:-5]}`" if n.rsplit("-", 1)[0] == stem
                   else f"`{n}`")
    return ", ".join(out[:-1]) + (" and " if len(out) > 1 else "") + out[-1]


def day(rec: Dict[str, Any]) -> str:
    """The date a run started (YYYY-MM-DD)."""
    return (rec.get("started") or "?")[:10]


def start_marker(name: str) -> str:
    return f"<!-- passage:{name}:start (generated by python -m bench report) -->"


def end_marker(name: str) -> str:
    return f"<!-- passage:{name}:end -->"


def render(name: str, records: Records) -> str:
    """The Markdown of passage ``name`` from ``records``; a note naming what is missing when
    a result it needs is not stored."""
    _load_all()
    try:
        return PASSAGES[name](records).strip()
    except MissingResult as exc:
        log.warning("passage %s: %s", name, exc)
        return f"_Figures not available: {exc} (`python -m bench report` writes them)._"


def names_in(text: str) -> List[str]:
    """The passages whose markers ``text`` holds, in order."""
    return re.findall(r"<!-- passage:([\w-]+):start ", text)


def write_passages(readme: Path, results_dir: Path) -> List[str]:
    """Rewrite every passage block of ``readme`` from ``results_dir``; the names written."""
    _load_all()
    records = Records(results_dir)
    written = []
    for name in names_in(Path(readme).read_text()):
        if name not in PASSAGES:
            log.warning("%s: no passage called %s; its block is left as it is", readme, name)
            continue
        if replace_block(Path(readme), start_marker(name), end_marker(name),
                         render(name, records)):
            written.append(name)
    return written


def _load_all() -> None:
    """Import the modules that register passages."""
    from bench.passages import anomaly, facts, gpu, missed  # noqa: F401
