"""README's figures are generated from the stored results: the passages (bench/passages),
the benchmark summary and the anomaly table in the checked-in README.md are exactly what
``python -m bench report`` writes from ``bench/results``, and a passage whose record is
missing says so instead of keeping figures."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import passages, readme_blocks, report  # noqa: E402
from bench.passages import Records, end_marker, start_marker  # noqa: E402

RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"


def _block(text: str, start: str, end: str) -> str:
    a, b = text.index(start) + len(start), text.index(end)
    return text[a:b].strip("\n")


def test_every_readme_passage_is_what_the_stored_results_give():
    text = README.read_text()
    names = passages.names_in(text)
    assert {"why-missed", "anomaly-where", "h2o-quality", "tune-grid",
            "direct-reader"} <= set(names)
    records = Records(RESULTS)
    for name in names:
        body = _block(text, start_marker(name), end_marker(name))
        assert body == passages.render(name, records), (
            f"README's passage {name} is not what the stored results give: run "
            "`python -m bench report`")
        assert "Figures not available" not in body


def test_readme_summary_and_anomaly_table_are_current():
    from bench import bench_anomaly

    text = README.read_text()
    chosen, names = report.shown_records(RESULTS)
    rel = "BENCHMARKS.md"
    summary = readme_blocks.summary_block(chosen, names, rel, report.fmt, report._anchor,
                                          report._all_time(chosen, names, RESULTS))
    assert _block(text, readme_blocks.SUMMARY_START, readme_blocks.SUMMARY_END) == \
        summary.strip("\n")
    assert _block(text, bench_anomaly.README_START, bench_anomaly.README_END) == \
        bench_anomaly.readme_table(str(RESULTS)).strip("\n")


def test_a_passage_without_its_record_says_so_and_writing_keeps_the_rest(tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# title\n\nkept 1.23x\n\n", "\n\ntail 4.56x\n"
    readme.write_text(before + start_marker("tune-grid") + "\nstale 9.99x\n"
                      + end_marker("tune-grid") + after)
    results = tmp_path / "results"
    results.mkdir()
    assert passages.write_passages(readme, results) == ["tune-grid"]
    text = readme.read_text()
    assert text.startswith(before) and text.endswith(end_marker("tune-grid") + after)
    assert "stale" not in text and "Figures not available" in text and "`tune`" in text
    # with the record stored, its figures and file name appear
    name = sorted(RESULTS.glob("tune-*.json"))[-1].name
    shutil.copy(RESULTS / name, results / name)
    passages.write_passages(readme, results)
    body = _block(readme.read_text(), start_marker("tune-grid"), end_marker("tune-grid"))
    value = json.loads((RESULTS / name).read_text())["result"]["targets"][0]["value"]
    assert name in body and value in body


def test_newer_runs_change_the_figures_and_ranges_cover_every_run(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    runs = sorted(RESULTS.glob("gpu-*.json"))
    for p in runs:
        shutil.copy(p, results / p.name)
    # a later run with a slower loop at batch 1024: the range and the run list move with it
    rec = json.loads(runs[-1].read_text())
    rec["started"] = "2026-12-31T00:00:00+00:00"
    for cell in rec["result"]["training"]:
        if cell["batch"] == 1024 and (cell.get("epochs") or 3) == 3:
            cell["after_first_ratio"] = 0.123
    (results / "gpu-20261231-000000.json").write_text(json.dumps(rec))
    from bench.passages import gpu

    text = gpu.gpu(Records(results))
    assert "0.12-" in text and "`-000000`" not in text and "gpu-20261231-000000.json" in text
    assert "the 10 stored runs" in text


def test_span_and_files_helpers():
    assert passages.span([0.5, 0.25, 0.4]) == "0.25-0.50"
    assert passages.span([0.5, 0.5]) == "0.50"
    recs = [{"_file": "gpu-20261204-180336.json"}, {"_file": "gpu-20261204-180458.json"},
            {"_file": "gpu-20261205-010101.json"}]
    assert passages.files(recs) == ("`gpu-20261204-180336.json`, `-180458` and "
                                    "`gpu-20261205-010101.json`")
