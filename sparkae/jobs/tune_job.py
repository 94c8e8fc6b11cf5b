"""The tuning job's run (``jobs/tune.py``): read the data, run the grid, write the results.

Results under ``output.dir``: ``leaderboard.csv``, ``leaderboard.md``, ``leaderboard.png``,
``report.html``, ``best_params.json``, ``best_model/``; the trial record and every trial's
model under ``tune.storage_path`` (default ``<output.dir>/trials``), so running the job
again with the same grid resumes where it stopped (``tune.resume: false`` starts over).
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional

import sparkae.report as report
from sparkae.estimator import Autoencoder
from sparkae.io import fs
from sparkae.io.uri import join, parse
from sparkae.jobs.train_job import read_source, split_input
from sparkae.tune import grid_search


def run(spark: Any, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Read the data, run the grid and write the results; return a summary dict.

    Raises
    ------
    FileExistsError
        ``output.overwrite`` is false and ``output.dir`` already holds results.
    """
    t0 = time.perf_counter()
    out = parse(settings["output"]["dir"], "output.dir").text
    names = ("leaderboard.csv", "leaderboard.md", "leaderboard.png", "best_model")
    if not settings["output"]["overwrite"] and any(fs.exists(join(out, n), "output.dir")
                                                   for n in names):
        raise FileExistsError(f"output.dir '{out}' already holds results and "
                              "output.overwrite is false")
    t = settings["tune"]
    storage = parse(t["storage_path"] or join(out, "trials"), "tune.storage_path").text
    if not t["resume"]:
        fs.delete(storage, "tune.storage_path")
    source = read_source(spark, settings["input"], "input")
    train_df, valid_df = split_input(source, settings, spark)
    res = grid_search(Autoencoder(**settings["model"]), train_df, settings["grid"],
                      validation_df=valid_df, search=t["search"], num_samples=t["num_samples"],
                      max_concurrent_trials=t["max_concurrent_trials"],
                      resources_per_trial={"cpu": t["cpus_per_trial"]},
                      scheduler=t["scheduler"], seed=t["seed"], storage_path=storage,
                      include_dashboard=t["dashboard"])
    fs.makedirs(out, "output.dir")
    board = res.leaderboard
    flat = board.copy()
    for col in flat.columns:
        if flat[col].map(lambda v: isinstance(v, (list, tuple))).any():
            flat[col] = flat[col].map(lambda v: json.dumps(v) if isinstance(v, (list, tuple))
                                      else v)
    def put(name: str, data: bytes) -> None:
        fs.write_bytes(join(out, name), data, "output.dir")

    put("leaderboard.csv", flat.to_csv(index=False).encode())
    put("leaderboard.md", (markdown_table(flat) + "\n").encode())
    put("leaderboard.png", leaderboard_chart(flat, valid_df is not None))
    put("best_params.json", json.dumps(res.best_params, indent=2).encode())
    best_dir = None
    if res.best_model is not None:
        best_dir = join(out, "best_model")
        res.best_model.write().overwrite().save(best_dir)
    write_report(join(out, "report.html"), flat, res.best_params,
                 res.best_model.summary.history if res.best_model is not None else None,
                 valid_df is not None)
    return {"leaderboard": flat, "best_params": res.best_params, "best_model": best_dir,
            "out": out, "storage_path": storage, "wall_time_s": time.perf_counter() - t0,
            "failed": int((board["status"] == "error").sum()), "trials": len(board)}


def markdown_table(df: Any) -> str:
    """A GitHub Markdown table of a small DataFrame (floats to 6 significant digits)."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def leaderboard_chart(flat: Any, has_valid: bool) -> bytes:
    """A horizontal bar chart of the leaderboard's MSE, best at the top; failed trials are
    listed with no bar."""
    plt = report.pyplot()
    by = "validation_mse" if has_valid else "train_mse"
    skip = {"trial", "train_mse", "validation_mse", "epochs", "wall_s", "status", "error"}
    params = [c for c in flat.columns if c not in skip]
    labels = [", ".join(f"{p}={r[p]}" for p in params) + ("" if r["status"] in ("ok", "stopped")
                                                          else f" ({r['status']})")
              for _, r in flat.iterrows()]
    values = [float(v) if v == v and v is not None else 0.0 for v in flat[by]]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.2))
    ax.barh(range(len(labels)), values, color=["tab:blue" if v > 0 else "tab:red"
                                               for v in values])
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{by.replace('_', ' ')} (scaled)")
    ax.set_title("Tuning leaderboard (best at the top)")
    return report.to_png(fig)


def write_report(path: str, flat: Any, best_params: Optional[Dict[str, Any]],
                 best_history: Optional[List[Dict[str, Any]]], has_valid: bool) -> str:
    """Write the grid's HTML report: the leaderboard chart and the best model's training
    curve, with the trial counts and the best Params; return the path."""
    figures = {"Tuning leaderboard": leaderboard_chart(flat, has_valid)}
    if best_history:
        figures["Best model: training curve"] = report.training_curve(best_history)
    by = "validation_mse" if has_valid else "train_mse"
    ok = flat[flat["status"] != "error"]
    rows = {"trials": len(flat), "failed": int((flat["status"] == "error").sum()),
            "best params": json.dumps(best_params),
            f"best {by}": f"{ok[by].min():.6g}" if len(ok) else "-"}
    return report.write_html(path, "sparkae tuning report", rows, figures)


def format_summary(summary: Dict[str, Any]) -> str:
    """A short human summary of :func:`run`'s result."""
    lines = [f"sparkae tune: {summary['trials']} trials ({summary['failed']} failed) in "
             f"{summary['wall_time_s']:.1f} s", "", markdown_table(summary["leaderboard"]), "",
             f"  best params: {json.dumps(summary['best_params'])}",
             f"  best model:  {summary['best_model']}",
             f"  results:     {summary['out']} (leaderboard.csv/.md/.png, report.html)",
             f"  trials:      {summary['storage_path']} (rerun the job to resume)"]
    return "\n".join(lines)
