"""The harness's bookkeeping for ``python -m bench all``, without running any entry: which
entries it runs and in what order, the record of a whole run, and the report's statement of
its total against the 30-minute target."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness, report  # noqa: E402


def test_all_leaves_out_the_long_and_legacy_entries_and_runs_scoring_last():
    members = harness.all_members()
    # the soak test; the legacy-environment comparison; the half-hour scale comparison;
    # H2O at 60,000 rows (a quarter of an hour per epoch)
    by_name = {"load", "loaders", "anomaly_scale", "h2o_large"}
    assert by_name <= set(harness.discover()) and not by_name & set(members)
    assert members[-1] == "scoring"
    assert set(members) == set(harness.discover()) - by_name


def _record(results: Path, name: str, minutes: float) -> Path:
    path = results / f"{name}-20260101-000000.json"
    path.write_text(json.dumps({"entry": name, "quick": False, "status": "ok",
                                "started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:10",
                                "duration_s": 60 * minutes, "load_avg_start": [0.2],
                                "machine": {"usable_cores": 2}, "result": {}}))
    return path


def test_run_record_and_overview_against_target(tmp_path):
    members = harness.all_members()
    records = [dict(json.loads(_record(tmp_path, n, 2.0).read_text()),
                    _path=str(tmp_path / f"{n}-20260101-000000.json")) for n in members]
    path = harness.write_run_record(records, 60 * 2.0 * len(members) + 30, False,
                                    "2026-01-01T00:00:00", [0.2, 0.1, 0.1], tmp_path)
    assert path.parent.name == "runs" and path.name.startswith("all-")
    run = json.loads(path.read_text())
    assert run["target_min"] == harness.ALL_TARGET_MIN
    assert [e["entry"] for e in run["entries"]] == members
    assert report.latest_all_run(tmp_path)["total_s"] == run["total_s"]
    text = report.render(tmp_path, tmp_path / "BENCHMARKS.md", tmp_path / "charts")
    line = next(l for l in text.splitlines() if l.startswith("**Time of `python -m bench all`"))
    total = run["total_s"] / 60
    assert f"took **{total:.1f} minutes**" in line
    assert ("within the target" if total <= harness.ALL_TARGET_MIN else "over the target") in line
    assert "`load`, `loaders` run only by name" in line
    # the run record is not mistaken for an entry's result
    assert "all" not in report.select(report.load_records(tmp_path))
