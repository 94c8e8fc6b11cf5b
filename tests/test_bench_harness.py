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
    # H2O at 60,000 rows (a quarter of an hour per epoch); the ODDS sets (not shipped); the
    # GPU entry (a GPU machine)
    by_name = {"load", "loaders", "anomaly_scale", "h2o_large", "anomaly_odds", "gpu"}
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


def test_readme_summary_block_comes_from_the_records_and_lists_the_misses(tmp_path):
    from bench import readme_blocks

    results = tmp_path / "results"
    results.mkdir()
    rec = json.loads(_record(results, "torch", 1.5).read_text())
    rec["result"] = {"summary": "sparkae at **0.9x** plain Torch.",
                     "targets": [{"name": "loop vs plain", "value": 0.81, "target": ">= 0.9",
                                  "met": False},
                                 {"name": "fixed cost", "value": 0.26, "target": "<= 0.5",
                                  "met": True}]}
    (results / "torch-20260101-000000.json").write_text(json.dumps(rec))
    readme = tmp_path / "README.md"
    before = "# x\n\nhand-written\n\n"
    after = "\n\n## next\nmore\n"
    readme.write_text(before + readme_blocks.SUMMARY_START + "\nstale 1.23x\n"
                      + readme_blocks.SUMMARY_END + after)
    report.write_report(results, tmp_path / "BENCHMARKS.md", tmp_path / "charts", readme)
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(readme_blocks.SUMMARY_END + after)
    assert "stale 1.23x" not in text
    block = text[text.index(readme_blocks.SUMMARY_START):text.index(readme_blocks.SUMMARY_END)]
    assert "(BENCHMARKS.md#" in block and "`torch-20260101-000000.json`" in block
    assert "targets met: 1 of 2" in block and "sparkae at **0.9x** plain Torch." in block
    assert "  - missed: loop vs plain: measured 0.81, required >= 0.9" in block
    assert "fixed cost" not in block                    # met targets are not listed
    assert "**Time of `python -m bench all`**" in block

    # a README without the markers is left exactly as it was
    plain = tmp_path / "OTHER.md"
    plain.write_text("no markers\n")
    assert readme_blocks.replace_block(plain, readme_blocks.SUMMARY_START,
                                       readme_blocks.SUMMARY_END, "x") is False
    assert plain.read_text() == "no markers\n"


def test_a_record_names_the_checkout_commit_or_the_one_given(monkeypatch):
    """A device machine's copy of the files carries stale git metadata: gpu_check.sh's
    runs name their commit in BENCH_GIT_COMMIT, which the record keeps as given."""
    from bench import common

    monkeypatch.delenv("BENCH_GIT_COMMIT", raising=False)
    own = common.versions()["git"]
    assert len(own["commit"]) == 40 and "given" not in own
    monkeypatch.setenv("BENCH_GIT_COMMIT", "0" * 40)
    assert common.versions()["git"] == {"commit": "0" * 40, "dirty": False, "given": True}


def test_a_record_is_dirty_only_when_code_differs_from_its_commit(tmp_path, monkeypatch):
    """A bench run rewrites README's blocks, BENCHMARKS.md and its results after every entry:
    those do not make the next entry's record dirty; a changed source file does."""
    import subprocess

    from bench import common

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    for name in ("README.md", "BENCHMARKS.md", "code.py", "bench/results/a.json"):
        (tmp_path / name).write_text("x\n")
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "c")
    monkeypatch.delenv("BENCH_GIT_COMMIT", raising=False)
    monkeypatch.setattr(common, "ROOT", tmp_path)
    for name in ("README.md", "BENCHMARKS.md", "bench/results/a.json"):
        (tmp_path / name).write_text("regenerated\n")
    assert common.versions()["git"]["dirty"] is False
    (tmp_path / "code.py").write_text("changed\n")
    assert common.versions()["git"]["dirty"] is True


def test_first_touch_probe_is_recorded_and_reported(tmp_path, monkeypatch):
    import types

    touch = harness.first_touch_s_per_gib(mib=16)
    assert touch is not None and touch > 0
    # an entry's record carries the probe from before and after it ran
    monkeypatch.setattr(harness, "load", lambda name: types.SimpleNamespace(
        TITLE="probe", run=lambda quick: {"summary": "ran"}))
    rec = harness.run_entry("probe", True, tmp_path)
    assert rec["status"] == "ok"
    assert rec["first_touch_s_per_gib_start"] > 0 and rec["first_touch_s_per_gib_end"] > 0
    stored = json.loads(Path(rec["_path"]).read_text())
    assert stored["first_touch_s_per_gib_end"] == rec["first_touch_s_per_gib_end"]
    rec = json.loads(_record(tmp_path, "pca", 1.0).read_text())
    rec.update(first_touch_s_per_gib_start=0.129, first_touch_s_per_gib_end=8.6,
               _path=str(tmp_path / "pca-20260101-000000.json"))
    line = report._run_line(rec)
    assert "first touch of fresh memory 0.129 s/GiB before, 8.6 after" in line
