"""sparkae vs H2O-3 (``h2o.deeplearning(autoencoder=TRUE)``) on MNIST.

Both systems train on the bundled 5,000-image sample (``bench_h2o_large``: 60,000 shifted
digits, the size issue 20's targets name) (pixels 0-255 as given; each
standardizes as H2O does, (x - mean) / (max - min), constant pixels left out) with tanh
and 10 epochs, and reconstruct the official MNIST test set; the test MSE of each is
computed by :func:`bench.common.pixel_mse` from its reconstructions (pixels in [0, 1]).
H2O runs with ``sparse=TRUE``, seed 123 and its other defaults (ADADELTA, mini-batch 1);
sparkae with its defaults (Adam 0.001, mini-batch 64, Torch on every core) in a fresh process
with ``OMP_WAIT_POLICY`` unset, as a user's process runs it (the harness's PASSIVE policy
slows 2 Torch threads 2.5x at mini-batch 64; the runs before 2026-12-03 11:00 had it).

H2O's backend is started here by :class:`h2o.backend.H2OLocalServer` bound to 127.0.0.1
(``-ip`` and ``-web_ip``), ``nthreads=2`` (Spark runs ``local[2]``), Java assertions off,
telemetry off; it is shut down at the end and its java process killed by pid if it is
still alive.

Architectures: [2], [50], [100], [100, 50, 100], [300, 100, 300] and the chapter's grid
([50], [100], [300, 100, 300], [100, 50, 100], [250, 100, 50, 100, 250]). sparkae fits each
with ``Autoencoder.fit`` (wall time of the call: scaling statistics and materialization
included; the session's first fit, a warm-up, is not counted).

H2O trains each architecture once, to the end: the chapter's grid as one ``h2o.grid``
(``H2OGridSearch``, Cartesian, sequential), whose models also serve as H2O's models for
the per-architecture comparison ([50], [100], [100, 50, 100], [300, 100, 300]), and each
architecture outside the grid ([2]) as one ``H2OAutoEncoderEstimator``. H2O's fit time of
an architecture is its model's server-side run time (``output.run_time``: data already
parsed); the grid is also timed as a whole (client wall time of ``grid.train``) and ranked
as the chapter ranks it, by training MSE (``grid.get_grid(sort_by="mse")``). On a quiet
2-core machine the H2O part takes about 11 minutes ([100] about 76 s, [300, 100, 300]
about 194 s). ``$SPARKAE_BENCH_H2O_BUDGET_S`` (unset by default: no cap) caps H2O's
training at that many seconds in all, each model at an equal share of what is left
(``max_runtime_secs``); a model stopped by its cap has its 10-epoch time extrapolated
from its time per epoch and its MSE comparison is marked not evaluated.

Quick mode (a check that both paths run, not a comparison): [2] as a single model and a
2-model grid ([50], [20, 10, 20]), 1 epoch, 1,000 training rows and 1,000 test rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bench import common, h2o_server

TITLE = "vs H2O-3: fit time and test reconstruction MSE"
SMOKE = False   # starting H2O's JVM and moving frames through its REST API alone takes > 30 s
log = logging.getLogger("bench")

ARCHS = [[2], [50], [100], [100, 50, 100], [300, 100, 300]]
GRID = [[50], [100], [300, 100, 300], [100, 50, 100], [250, 100, 50, 100, 250]]
QUICK_ARCHS, QUICK_GRID = [[2], [50]], [[50], [20, 10, 20]]
SPEED_TARGET, MSE_TARGET = 20.0, 0.5
#: Slack above the k-plane floor (:func:`bench.common.plane_floor`) of the proposed
#: replacement MSE target, where 0.5 x H2O's MSE lies below that floor.
FLOOR_SLACK = 1.05


def shifted_training(rows: int) -> Tuple[np.ndarray, np.ndarray]:
    """``rows`` bundled digits shifted by up to 2 pixels (seed 3, the training entry's
    rows): ``uint8`` pixels and labels."""
    from sparkae.datasets import shifted_digits

    sx, sy = common.sample_arrays()
    x, idx = shifted_digits(sx, rows, max_shift=2, seed=3, return_index=True)
    return x, sy[idx]


def training_arrays(quick: bool, rows: Optional[int], shifted: int
                    ) -> Tuple[np.ndarray, np.ndarray, str]:
    """The training rows of a run: ``shifted`` > 0 shifted digits, else the bundled sample
    (``rows`` of it, or 1,000 in quick mode, when given); pixels, labels and their
    description."""
    if shifted:
        x, y = shifted_training(shifted)
        return x, y, f"{len(x):,} shifted digits"
    x, y = common.sample_arrays()
    rows = rows or (1_000 if quick else None)
    if not rows:
        return x, y, "the bundled sample"
    idx = np.sort(np.random.default_rng(0).permutation(len(x))[:rows])
    return x[idx], y[idx], f"{len(idx):,} rows of the bundled sample"


def sparkae_fits(quick: bool, rows: Optional[int], shifted: int, archs: List[List[int]],
                 epochs: int) -> Dict[str, Dict[str, Any]]:
    """sparkae's fit of every architecture in this process (after a warm-up fit): per
    architecture its fit wall time, training-loop seconds, scaled training MSE, test MSE
    and the seconds of reconstructing the test set."""
    x, y, _ = training_arrays(quick, rows, shifted)
    test = common.test_arrays(limit=rows or (1_000 if quick else None))
    common.warm_up()
    df = common.to_df(x, y)
    test_df = common.to_df(test.images, test.labels)
    sp: Dict[str, Dict[str, Any]] = {}
    for hidden in archs:
        model, fit_s = common.fit_sparkae(df, hidden, epochs=epochs)
        t0 = time.perf_counter()
        rec = common.sparkae_reconstruction(model, test_df, len(test.images))
        sp[h2o_server.arch(hidden)] = {"fit_s": fit_s, "predict_s": time.perf_counter() - t0,
                             "test_mse": common.pixel_mse(test.images, rec),
                             "train_mse_scaled": model.summary.train_mse,
                             "loop_s": sum(h["seconds"] for h in model.summary.history)}
    df.unpersist()
    test_df.unpersist()
    return sp


_SPARKAE_CHILD = """
import json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.WARNING)
from bench import bench_h2o, common
common.set_torch_threads(int(sys.argv[2]))
quick, rows, shifted, archs, epochs = json.loads(sys.argv[3])
out = bench_h2o.sparkae_fits(quick, rows, shifted, archs, epochs)
common.spark().stop()
print(json.dumps(out))
"""


def fresh_sparkae_fits(quick: bool, rows: Optional[int], shifted: int,
                       archs: List[List[int]], epochs: int) -> Dict[str, Dict[str, Any]]:
    """:func:`sparkae_fits` in a fresh process with ``OMP_WAIT_POLICY`` unset and Torch on
    every core, as a user's process runs sparkae's defaults."""
    from bench import torch_baselines

    runs = torch_baselines.fresh_process_runs(
        _SPARKAE_CHILD, [json.dumps([quick, rows, shifted, archs, epochs])],
        configs=[("default", common.CORES)], timeout=3600,
        what="sparkae fits, OMP_WAIT_POLICY unset")
    sp = next(iter(runs.values()))
    for a, s in sp.items():
        log.info("sparkae %s: fit in %.1f s (loop %.1f s), test MSE %.5f", a, s["fit_s"],
                 s["loop_s"], s["test_mse"])
    return sp


def run(quick: bool = False, archs: List[List[int]] = None, grid: List[List[int]] = None,
        epochs: int = None, rows: int = None, shifted: int = 0) -> Dict[str, Any]:
    """Keyword overrides (architectures, grid, epochs, training/test rows) are for trying the
    entry out; the harness passes only ``quick``. ``shifted`` > 0 trains both systems on
    that many shifted digits (:func:`shifted_training`, as the training entry) instead of
    the bundled sample (``bench_h2o_large``)."""
    try:
        import h2o  # noqa: F401
    except ImportError as exc:
        raise common.Skip(f"h2o is not installed ({exc}); pip install -e '.[bench]'")
    x, y, data = training_arrays(quick, rows, shifted)
    rows = rows or (1_000 if quick else None)
    test = common.test_arrays(limit=rows)
    epochs = epochs or (1 if quick else 10)
    archs = archs or (QUICK_ARCHS if quick else ARCHS)
    grid_archs = grid or (QUICK_GRID if quick else GRID)
    # H2O trains each architecture once: the grid's in h2o.grid, the others one by one
    singles = [h for h in archs if h not in grid_archs]
    all_archs = archs + [g for g in grid_archs if g not in archs]
    budget = h2o_server.budget_s()

    # sparkae first, in a fresh process as a user's (OpenMP's wait policy unset: the
    # harness's PASSIVE slows 2 Torch threads 2.5x at mini-batch 64); H2O's JVM starts after
    sp = fresh_sparkae_fits(quick, rows, shifted, all_archs, epochs)

    work = tempfile.mkdtemp(prefix="sparkae-bench-h2o-")
    try:
        ho = h2o_server.run_h2o(singles, grid_archs, epochs, x, test.images, work, budget)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    r = common.fmt
    ep = f"{epochs} epoch{'s' if epochs > 1 else ''}"
    capped = [a for a, m in ho["models"].items() if not m["complete"]]
    rows, targets, per_arch = [], [], {}
    floors = common.plane_floor(test.images, sorted({h[-1] for h in archs}))
    for hidden in archs:
        a = h2o_server.arch(hidden)
        s, h = sp[a], ho["models"].get(a)
        floor = floors[hidden[-1]]
        if h is None:
            rows.append([a, r(s["fit_s"]), "not run", None, None, None, r(s["test_mse"]), None,
                         None, r(floor)])
            continue
        speed, mse_ratio = h["fit_s"] / s["fit_s"], s["test_mse"] / h["test_mse"]
        per_arch[a] = {"sparkae": {k: r(v) for k, v in s.items()},
                       "h2o": {k: r(v) if not isinstance(v, str) else v for k, v in h.items()},
                       "speedup": r(speed), "mse_ratio": r(mse_ratio),
                       "plane_floor": r(floor)}
        est = "" if h["complete"] else " (est.)"
        rows.append([a, r(s["fit_s"]), f"{h['fit_s']:.1f}{est}",
                     f"{h['epochs_done']:.2f} in {h['run_s']:.0f} s", h["source"],
                     f"{speed:.1f}{est}", r(s["test_mse"]), r(h["test_mse"]), r(mse_ratio),
                     r(floor)])
        if quick:
            continue              # 1 epoch on 1,000 rows says nothing about the targets
        targets.append({"name": f"{a}: sparkae fit >= {SPEED_TARGET:g}x faster than H2O"
                                + ("" if h["complete"] else
                                   f" (H2O's {epochs}-epoch time extrapolated from "
                                   f"{h['epochs_done']:.2f} epochs)"),
                        "value": f"{speed:.1f}x", "target": f">= {SPEED_TARGET:g}x",
                        "met": bool(speed >= SPEED_TARGET)})
        targets.append({"name": f"{a}: sparkae test MSE <= {MSE_TARGET:g} x H2O's"
                                + ("" if h["complete"] else
                                   f" (H2O stopped by its time cap after "
                                   f"{h['epochs_done']:.2f} of {epochs} epochs: not comparable)"),
                        "value": f"{mse_ratio:.2f}x", "target": f"<= {MSE_TARGET:g}x",
                        "met": bool(mse_ratio <= MSE_TARGET) if h["complete"] else None})
        bound = max(MSE_TARGET * h["test_mse"], FLOOR_SLACK * floor)
        if h["complete"] and MSE_TARGET * h["test_mse"] < floor:
            targets.append({"name": f"{a}: sparkae test MSE <= max({MSE_TARGET:g} x H2O's, "
                                    f"{FLOOR_SLACK:g} x the {hidden[-1]}-plane floor) "
                                    f"(proposed replacement: {MSE_TARGET:g} x H2O's "
                                    f"{r(h['test_mse'])} = {r(MSE_TARGET * h['test_mse'])} lies "
                                    f"below the floor {r(floor)}, which "
                                    "no network with this last hidden width and a linear "
                                    "output layer can pass)",
                            "value": r(s["test_mse"]), "target": f"<= {r(bound)}",
                            "met": bool(s["test_mse"] <= bound)})
    if not quick:
        for a in [h2o_server.arch(h) for h in archs if h2o_server.arch(h) not in per_arch]:
            targets.append({"name": f"{a}: compared with H2O", "value": "H2O not run (budget)",
                            "target": "both systems measured", "met": None})
    tables = [{"title": (f"Per architecture: tanh, {ep}, {data} ({len(x):,} training rows); "
                         "test MSE on "
                         f"{test.source} (pixels in [0, 1])"),
               "columns": ["hidden", "sparkae fit s", f"H2O fit s ({ep})", "H2O epochs run",
                           "H2O model", "H2O / sparkae time", "sparkae test MSE",
                           "H2O test MSE", "sparkae / H2O MSE",
                           "k-plane floor (k = last hidden width)"],
               "rows": rows,
               "caption": ("H2O fit s: the model's own server-side run time; a model from "
                           "`h2o.grid` is the grid's model of that architecture (each "
                           "architecture is trained once). k-plane floor: the least test MSE "
                           "of any reconstruction lying in one k-dimensional affine subspace "
                           "(the test set's own first k principal components), which a "
                           "network with k units in its last hidden layer and a linear output "
                           "layer (sparkae's default) never passes."
                           + (" (est.): H2O hit its time cap before the last epoch; its time "
                              f"for {epochs} epochs is extrapolated from its measured time per "
                              "epoch, and its test MSE is that of the shorter training."
                              if capped else ""))}]

    def h2o_val(h, key):
        m = ho["models"].get(h2o_server.arch(h))
        return None if m is None else m[key]

    charts = [
        {"name": "time", "kind": "bar", "title": f"Fit wall time for {ep} (s), log scale",
         "categories": [h2o_server.arch(h) for h in archs],
         "series": {"sparkae": [sp[h2o_server.arch(h)]["fit_s"] for h in archs],
                    "H2O-3": [h2o_val(h, "fit_s") for h in archs]},
         "ylabel": "seconds", "log": True},
        {"name": "mse", "kind": "bar", "title": "Test reconstruction MSE (pixels in [0, 1])",
         "categories": [h2o_server.arch(h) for h in archs],
         "series": {"sparkae": [sp[h2o_server.arch(h)]["test_mse"] for h in archs],
                    "H2O-3": [h2o_val(h, "test_mse") for h in archs]},
         "ylabel": "MSE"},
    ]

    # the chapter's grid: h2o.grid (wall time, ranking by training MSE) vs sparkae's 5 fits
    g_names = [h2o_server.arch(g) for g in grid_archs]
    h_rank = [a for a in ho["grid_rank"] if a in g_names]
    s_rank = sorted(g_names, key=lambda a: sp[a]["train_mse_scaled"])
    s_test_rank = sorted(g_names, key=lambda a: sp[a]["test_mse"])
    h_test_rank = sorted((a for a in g_names if a in ho["models"]),
                         key=lambda a: ho["models"][a]["test_mse"])
    s_total = sum(sp[a]["fit_s"] for a in g_names)
    h_wall = ho["grid_wall_s"]
    h_sum = sum(ho["models"][a]["run_s"] for a in g_names if a in ho["models"])
    g_rows = []
    for a in g_names:
        s, h = sp[a], ho["models"].get(a, {})
        g_rows.append([a, r(h.get("train_mse_scaled")),
                       h_rank.index(a) + 1 if a in h_rank else None, r(h.get("test_mse")),
                       r(h.get("run_s")), r(s["train_mse_scaled"]), s_rank.index(a) + 1,
                       r(s["test_mse"]), r(s["fit_s"])])
    g_rows.append(["whole grid", None, None, None,
                   f"{h_wall:.0f} (h2o.grid wall)" if h_wall is not None else "not run",
                   None, None, None, f"{s_total:.1f} (5 fits)" if len(g_names) == 5 else
                   f"{s_total:.1f} ({len(g_names)} fits)"])
    grid_speed = h_wall / s_total if h_wall else None
    grid_result = {"h2o_rank_by_training_mse": h_rank, "h2o_rank_by": ho["grid_rank_by"],
                   "sparkae_rank_by_training_mse": s_rank,
                   "h2o_rank_by_test_mse": h_test_rank, "sparkae_rank_by_test_mse": s_test_rank,
                   "h2o_grid_wall_s": r(h_wall), "h2o_models_run_s": r(h_sum),
                   "sparkae_total_fit_s": r(s_total), "h2o_grid_wall_over_sparkae":
                   r(grid_speed)}
    same_best = bool(h_rank and h_rank[0] == s_rank[0])
    tables.append({
        "title": (f"The chapter's grid ({len(grid_archs)} architectures, {ep}): one `h2o.grid` "
                  "vs sparkae fitting each"),
        "columns": ["hidden", "H2O training MSE (scaled)", "H2O rank", "H2O test MSE",
                    "H2O fit s", "sparkae training MSE (scaled)", "sparkae rank",
                    "sparkae test MSE", "sparkae fit s"],
        "rows": g_rows,
        "caption": (
            ("`h2o.grid` not run. " if h_wall is None else
             f"`h2o.grid` trained the {len(g_names)} models in {h_wall:.0f} s wall "
             f"(the models' own run times add up to {h_sum:.0f} s); sparkae's "
             f"{len(g_names)} fits took {s_total:.1f} s: {grid_speed:.1f}x. ")
            + "Ranks are by training MSE, each in its own standardized units (H2O's from "
            f"`{ho['grid_rank_by'] or '—'}`, the chapter's `h2o.getGrid(sort_by = \"mse\")`): "
            f"H2O's best {h_rank[0] if h_rank else '—'}, sparkae's best {s_rank[0]}"
            + (" (the same)" if same_best else "") + ". By test MSE (comparable across "
            f"systems): H2O {', '.join(h_test_rank) or '—'}; sparkae {', '.join(s_test_rank)}."
            + (f" Capped by the budget: {', '.join(a for a in capped if a in g_names)}."
               if any(a in g_names for a in capped) else ""))})
    charts.append({"name": "grid", "kind": "bar",
                   "title": "The chapter's grid: test reconstruction MSE (pixels in [0, 1])",
                   "categories": g_names,
                   "series": {"sparkae": [sp[a]["test_mse"] for a in g_names],
                              "H2O-3 (h2o.grid)": [h2o_val(g, "test_mse") for g in grid_archs]},
                   "ylabel": "MSE"})

    evaluated = [t for t in targets if t["met"] is not None]
    missed = [t["name"] for t in evaluated if not t["met"]]
    speeds = [per_arch[a]["speedup"] for a in per_arch]
    ratios = [per_arch[a]["mse_ratio"] for a in per_arch]
    not_evaluated = len(targets) - len(evaluated)
    if not per_arch:
        verdict = "H2O produced no model to compare with."
    elif quick:
        verdict = "Quick run: targets not evaluated."
    elif missed:
        verdict = (f"**{len(missed)} of {len(evaluated)} evaluated targets are missed**"
                   + (f" ({not_evaluated} not evaluated)" if not_evaluated else "")
                   + "; see below.")
    else:
        verdict = ("Every evaluated target is met"
                   + (f" ({not_evaluated} not evaluated)." if not_evaluated else "."))
    summary = verdict if not per_arch else (
        f"sparkae's fit is {min(speeds):.1f}x to {max(speeds):.1f}x faster than H2O-3 and its "
        f"test MSE is {min(ratios):.2f}x to {max(ratios):.2f}x H2O's over {len(per_arch)} "
        f"architecture{'s' if len(per_arch) > 1 else ''}"
        + (f"; the chapter's grid: `h2o.grid` {h_wall:.0f} s, sparkae {s_total:.0f} s"
           if h_wall is not None else "")
        + f". {verdict}")
    notes = []
    if quick:
        notes.append(f"Quick run ({ep}, {len(x):,} rows, small architectures): a check that "
                     "the single-model and `h2o.grid` paths run; the targets are only evaluated "
                     "in full runs.")
    notes.append(
        ("H2O trained every model to the end (no time cap; its early stopping off, "
         f"`stopping_rounds=0`, so that every model trains all its {ep}: with H2O's default, "
         "10 epochs on the bundled sample, the grid's [300, 100, 300] and "
         "[250, 100, 50, 100, 250] stopped after about 5). "
         if ho["budget_s"] is None else
         f"H2O time budget: {ho['budget_s']:.0f} s of training in all "
         f"(`{h2o_server.BUDGET_ENV}`), each "
         "model capped (`max_runtime_secs`) at an equal share of what was left; "
         + (f"stopped by the cap: {', '.join(capped)}. " if capped else
            "every model finished within its cap. "))
        + (f"Not run: {', '.join(ho['not_run'])}. " if ho["not_run"] else "")
        + "Each architecture was trained once: "
        + (", ".join(map(h2o_server.arch, singles))
           + (" as a single model, " if len(singles) == 1 else " as single models, ")
           if singles else "")
        + "the grid's in one `h2o.grid`. H2O trained at "
        + ", ".join(f"{a} {m['samples_per_s']:.0f}" for a, m in ho["models"].items())
        + " rows/s here (mini-batch 1, one update per row).")
    notes.append(f"H2O backend: started in {ho['start_s']:.1f} s; importing the training and "
                 f"test frames (CSV written here, parsed by the server) took "
                 f"{ho['import_s']:.1f} s; neither is in the fit times. H2O fit time = the "
                 "model's server-side run time (data already parsed). sparkae fit time = the "
                 "wall time of `Autoencoder.fit` after a warm-up fit, in a fresh process with "
                 "OpenMP's wait policy unset, as a user's (it includes the scaling "
                 "aggregation and materializing the prepared rows).")
    if missed:
        notes.append(
            "Where sparkae's time goes (training loop of the whole fit): "
            + "; ".join(f"{a} {sp[a]['loop_s']:.1f} s of {sp[a]['fit_s']:.1f} s"
                        for a in map(h2o_server.arch, archs))
            + ". The rest is fixed per fit (input checks, the scaling aggregation, "
            "materializing the prepared rows as Parquet, Spark job start), which is what "
            f"bounds the speed ratio on a {len(x):,}-row table.")
    if not test.official:
        notes.append(f"**The official MNIST test set was not found**; the test rows are a "
                     f"stand-in ({test.source}).")
    return {"summary": summary, "targets": targets, "tables": tables, "charts": charts,
            "notes": "\n\n".join(notes),
            "config": {"epochs": epochs, "train_rows": len(x), "train_data": data,
                       "test_rows": len(test.images),
                       "test_set": test.source, "h2o_nthreads": common.CORES,
                       "spark_master": "local[2]", "h2o_budget_s": ho["budget_s"],
                       "h2o_single_models": [h2o_server.arch(h) for h in singles],
                       "h2o_grid": g_names},
            "per_arch": per_arch, "grid": grid_result, "h2o_not_run": ho["not_run"],
            "h2o_overhead": {"start_s": r(ho["start_s"]), "import_s": r(ho["import_s"])}}
