"""sparkae's training loop and whole fit against the best plain Torch loop, in one run.

Used by :mod:`bench.bench_training`. The same shifted digits (``rows`` of them, 784
pixels) train the same network ([100] tanh, Adam, seed 123) for the same epochs, for
every cell of mini-batch size (:data:`BATCHES`) x ``standardize`` (:data:`STANDARDIZE`):

- sparkae: ``Autoencoder.fit`` on a cached DataFrame of the rows (1 rank, in the driver),
  with its default ``num_threads`` (every core) and with 1 thread (:data:`SPARKAE_THREADS`),
  under each OpenMP wait policy the plain loop runs under: in this process, under the
  harness's policy (PASSIVE unless told otherwise), and in a fresh process with
  ``OMP_WAIT_POLICY`` unset, as a user's process has it (:func:`fresh_sparkae_runs`; its
  own Spark session, a warm-up fit first); the best setting counts, named, and runs
  once more (:data:`FASTEST_RUNS`), its faster run counting;
  its training loop's rows/s are the epochs' own (``model.summary.rows_per_s``: rows over
  the epochs' seconds), its whole fit's the rows trained over the wall time of ``fit``
  (scaling statistics, materialization, job start and training); its loop after the
  first epoch (:func:`steady_rate`) leaves out the first epoch, which also reads the rows
  from the materialized Parquet and scales them into memory (the plain loop's rows are in
  memory, scaled, before its timer starts: that load counts in the whole fit);
- the plain loop (:func:`bench.torch_baselines.torch_train`: the rows scaled once in
  memory, then shuffled mini-batches; the scaling is not timed) in a fresh process for
  every thread count and OpenMP wait policy (:data:`bench.torch_baselines.OMP_CONFIGS`);
  the best counts, named, and runs once more, its faster run counting.

Each sparkae fit and each plain run records the load average when it ends; the plain runs
of a cell run between that cell's sparkae fits in this process and those in a fresh one.
Both report the test MSE over all 784 input features (pixels scaled to [0, 1],
:func:`bench.common.pixel_mse`) on the MNIST test set. At batch 256 every plain process
also times the matrix multiplies of one training step as a plain ``torch.mm`` loop at the same shapes
(:func:`bench.torch_baselines.train_gemm_gflops`, the median block rate); the best
configuration's rate is the reference that sparkae's loop (and the plain loop) is measured
against in FLOP/s.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

from bench import common, torch_baselines

log = logging.getLogger("bench")

BATCHES = (64, 256)
STANDARDIZE = ("h2o", "none")
HIDDEN = 100
#: sparkae's ``num_threads`` settings measured: the default (None: every core) and 1.
SPARKAE_THREADS = (None, 1)
#: Batch sizes at which the matrix-multiply reference is measured.
GEMM_BATCHES = (256,)
#: Targets of the training loop and the whole fit against the best plain loop, of the
#: loop's FLOP rate against the matrix-multiply reference, and of the test MSE.
LOOP_TARGET, FIT_TARGET, GEMM_TARGET, MSE_SLACK = 0.9, 0.75, 0.5, 0.03

_PLAIN_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[2]))
from bench import common, torch_baselines
from sparkae.datasets import shifted_digits
rows, epochs, batch = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
standardize, gemm, test_limit = sys.argv[6], sys.argv[7] == "1", int(sys.argv[8])
sx, _ = common.sample_arrays()
x = shifted_digits(sx, rows, max_shift=2, seed=3)
run = torch_baselines.torch_train(x, [%d], epochs=epochs, batch_size=batch,
                                  standardize=standardize)
test = common.test_arrays(test_limit or None)
net = run["net"]
out = {"rows_per_s": run["rows_per_s"], "seconds": run["seconds"],
       "test_mse": common.pixel_mse(test.images,
                                    torch_baselines.torch_reconstruct(net, test.images)),
       "kept": int(net.scaler.keep.numel()), "threads": torch.get_num_threads()}
if gemm:
    out["gemm_gflops"] = torch_baselines.train_gemm_gflops(batch, out["kept"], %d, seconds=1.5)
out["load_average"] = common.load_average()
print(json.dumps(out))
""" % (HIDDEN, HIDDEN)


_SPARKAE_CHILD = """
import json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.WARNING)
from bench import common, training_compare
path, rows, epochs, batch, standardize = sys.argv[3], *map(int, sys.argv[4:7]), sys.argv[7]
test_limit, cache, settings = int(sys.argv[8]), sys.argv[9], json.loads(sys.argv[10])
common.warm_up()
test = common.test_arrays(test_limit or None)
df = common.spark().read.parquet(path).cache()
df.count()
test_df = common.to_df(test.images, test.labels)
out = {}
for threads in settings:
    out[training_compare.setting_name(threads)] = training_compare.sparkae_run(
        df, test_df, test, rows, epochs, batch, standardize, threads, cache)
common.spark().stop()
print(json.dumps(out))
"""


def fresh_sparkae_runs(path: str, rows: int, epochs: int, batch: int, standardize: str,
                       test_limit: Optional[int], cache: str,
                       settings: Sequence[Optional[int]] = SPARKAE_THREADS) -> Dict[str, Any]:
    """sparkae's fits of one cell (``num_threads`` of each of ``settings``) in a fresh
    process with ``OMP_WAIT_POLICY`` unset: ``{setting_name(threads, "default"):
    sparkae_run's result, marked fresh}``; empty (logged) when the process fails."""
    runs = torch_baselines.fresh_process_runs(
        _SPARKAE_CHILD, [path, rows, epochs, batch, standardize, test_limit or 0, cache,
                         json.dumps(list(settings))],
        configs=[("default", 0)], what="sparkae fit, OMP_WAIT_POLICY unset",
        allow_failure=True)
    return {setting: dict(run, fresh=True) for out in runs.values()
            for setting, run in out.items()}


def plain_runs(rows: int, epochs: int, batch: int, standardize: str,
               test_limit: Optional[int]) -> Dict[str, Any]:
    """The plain loop of one cell in every configuration of
    :data:`bench.torch_baselines.OMP_CONFIGS`: ``{config: {rows_per_s, seconds, test_mse,
    kept, threads, load_average[, gemm_gflops]}}``."""
    return torch_baselines.fresh_process_runs(
        _PLAIN_CHILD, [rows, epochs, batch, standardize, int(batch in GEMM_BATCHES),
                       test_limit or 0], what="plain Torch training loop")


def sparkae_run(df, test_df, test: common.TestSet, rows: int, epochs: int, batch: int,
                standardize: str, threads: Optional[int], cache: str) -> Dict[str, Any]:
    """One sparkae fit of one cell: loop and whole-fit rows/s, test MSE over every input
    feature, the load average at its end."""
    model, secs = common.fit_sparkae(df, [HIDDEN], epochs=epochs, mini_batch_size=batch,
                                     num_threads=threads, standardize=standardize,
                                     cache_dir=cache, data_loader="arrow", stopping_rounds=0,
                                     progress="none")
    recon = common.sparkae_reconstruction(model, test_df, len(test.images))
    hist = model.summary.history
    return {"num_threads": threads, "fit_s": secs, "loop_s": sum(h["seconds"] for h in hist),
            "loop_rows_per_s": model.summary.rows_per_s,
            "epoch_rows_per_s": [h["rows_per_s"] for h in hist],
            "fit_rows_per_s": rows * epochs / secs, "train_mse": model.summary.train_mse,
            "test_mse": common.pixel_mse(test.images, recon), "kept": int(model._spec["kept"]),
            "load_average": common.load_average()}


def _threads_name(threads: Optional[int]) -> str:
    return "default" if threads is None else f"{threads} thread{'s' if threads > 1 else ''}"


def setting_name(threads: Optional[int], policy: Optional[str] = None) -> str:
    """The name of a sparkae setting: its OpenMP wait policy (default: this process's) and
    ``num_threads``."""
    policy = policy or os.environ.get("OMP_WAIT_POLICY") or "default"
    return f"omp={policy}, num_threads {_threads_name(threads)}"


#: The report's note on the "loop after the first epoch" column and its target.
STEADY_NOTE = ("The 'loop after the first epoch' column is the rows/s of the epochs after "
               "the first, which gather the rows from memory as the plain loop does: the "
               "first epoch also reads them from the materialized Parquet and scales them "
               "into memory, work the plain loop does before its timer starts; that load "
               "counts in the whole fit. It is proposed as the loop target's measure. ")


#: The report's note on the second run of each side's fastest configuration.
REPEAT_NOTE = ("In each cell the fastest plain configuration and the fastest sparkae setting "
               "run a second time and the faster run of each counts (both rates are in the "
               "result's 'rates'), so that one run slowed by other work on the machine does "
               "not decide a ratio. ")


def steady_rate(epoch_rates: Sequence[float]) -> Optional[float]:
    """Rows/s of the epochs after the first (each epoch trains the same rows: their
    harmonic mean), or None for fewer than 2 epochs."""
    later = [v for v in epoch_rates[1:] if v > 0]
    return len(later) / sum(1.0 / v for v in later) if later else None


def judge(cell: Dict[str, Any], batch: int) -> Dict[str, Any]:
    """Ratios of one cell: each sparkae setting against the best plain configuration."""
    plain = cell["plain"]
    best = max(plain, key=lambda k: plain[k]["rows_per_s"])
    rate = plain[best]["rows_per_s"]
    gemm = max((p.get("gemm_gflops") or 0.0) for p in plain.values()) or None
    out: Dict[str, Any] = {"plain_best": best, "plain_rows_per_s": rate,
                           "plain_test_mse": plain[best]["test_mse"], "gemm_gflops": gemm,
                           "sparkae": {}}
    for name, s in cell["sparkae"].items():
        r = {"loop_vs_plain": s["loop_rows_per_s"] / rate,
             "fit_vs_plain": s["fit_rows_per_s"] / rate,
             "test_mse_vs_plain": s["test_mse"] / plain[best]["test_mse"]}
        steady = steady_rate(s.get("epoch_rows_per_s") or [])
        if steady:
            r["steady_rows_per_s"], r["steady_vs_plain"] = steady, steady / rate
        if gemm:
            flop = torch_baselines.train_gemm_flop(batch, s["kept"], HIDDEN)
            r["loop_gflops"] = s["loop_rows_per_s"] / batch * flop / 1e9
            r["loop_vs_gemm"] = r["loop_gflops"] / gemm
            r["plain_vs_gemm"] = rate / batch * flop / 1e9 / gemm
        out["sparkae"][name] = r
    return out


def compare(spark, path: str, rows: int, epochs: int, cache: str,
            batches: Sequence[int] = BATCHES, standardize: Sequence[str] = STANDARDIZE,
            test_limit: Optional[int] = None) -> Dict[str, Any]:
    """Every cell of this module on the Parquet rows at ``path`` (see the module's
    docstring); returns ``{"cells": {name: {batch, standardize, sparkae, plain, judged}},
    "test_set": ...}``."""
    test = common.test_arrays(test_limit)
    df = spark.read.parquet(path).cache()
    df.count()
    test_df = common.to_df(test.images, test.labels)
    cells: Dict[str, Any] = {}
    try:
        for batch in batches:
            for std in standardize:
                name = f"batch {batch}, standardize {std}"
                cell: Dict[str, Any] = {"batch": batch, "standardize": std, "sparkae": {}}
                first, *rest = SPARKAE_THREADS
                cell["sparkae"][setting_name(first)] = sparkae_run(
                    df, test_df, test, rows, epochs, batch, std, first, cache)
                cell["plain"] = plain_runs(rows, epochs, batch, std, test_limit)
                for threads in rest:
                    cell["sparkae"][setting_name(threads)] = sparkae_run(
                        df, test_df, test, rows, epochs, batch, std, threads, cache)
                cell["sparkae"].update(fresh_sparkae_runs(path, rows, epochs, batch, std,
                                                          test_limit, cache))
                _rerun_fastest(cell, path, df, test_df, test, rows, epochs, test_limit, cache)
                cell["judged"] = judge(cell, batch)
                log.info("training %s: %s", name, cell["judged"])
                cells[name] = cell
    finally:
        df.unpersist()
        test_df.unpersist()
    return {"cells": cells, "test_set": test.source, "test_rows": len(test.images)}


#: Runs of each side's fastest configuration in a cell, the first pass included: the
#: plain loop's best configuration and sparkae's best setting run again and the faster
#: run of each counts, so that a run slowed by other work on the machine does not decide
#: a ratio (both sides get the same second chance).
FASTEST_RUNS = 2


def _keep_faster(runs: Dict[str, Any], name: str, again: Optional[Dict[str, Any]],
                 key: str) -> None:
    """Keep the faster of ``runs[name]`` and ``again`` (by ``key``); record both rates."""
    rates = runs[name].get("rates") or [runs[name][key]]
    if again is None:
        return
    rates = rates + [again[key]]
    if again[key] > runs[name][key]:
        runs[name] = dict(again)
    runs[name]["rates"] = rates


def _rerun_fastest(cell: Dict[str, Any], path: str, df, test_df, test: common.TestSet,
                   rows: int, epochs: int, test_limit: Optional[int], cache: str) -> None:
    """Run the cell's fastest plain configuration and fastest sparkae setting again
    (:data:`FASTEST_RUNS` in all) and keep the faster run of each."""
    batch, std = cell["batch"], cell["standardize"]
    plain = cell["plain"]
    for _ in range(FASTEST_RUNS - 1):
        best = max(plain, key=lambda k: plain[k]["rows_per_s"])
        policy, threads = (part.split("=", 1)[1] for part in best.split())
        again = torch_baselines.fresh_process_runs(
            _PLAIN_CHILD, [rows, epochs, batch, std, int(batch in GEMM_BATCHES),
                           test_limit or 0], configs=[(policy, int(threads))],
            what="plain Torch training loop (fastest again)", allow_failure=True)
        _keep_faster(plain, best, again.get(best), "rows_per_s")
        ours = cell["sparkae"]
        name = max(ours, key=lambda k: ours[k]["loop_rows_per_s"])
        threads_setting = ours[name]["num_threads"]
        if ours[name].get("fresh"):
            again = fresh_sparkae_runs(path, rows, epochs, batch, std, test_limit, cache,
                                       settings=[threads_setting]).get(name)
        else:
            again = sparkae_run(df, test_df, test, rows, epochs, batch, std, threads_setting,
                                cache)
        _keep_faster(ours, name, again, "loop_rows_per_s")


#: Epochs of the whole-fit comparison at the Autoencoder's default length
#: (:func:`default_epochs_fit`): the proposed replacement of the 3-epoch whole-fit target.
DEFAULT_EPOCHS = 10


def default_epochs_fit(path: str, rows: int, cache: str, batch: int = 64,
                       standardize: str = "h2o",
                       test_limit: Optional[int] = None) -> Dict[str, Any]:
    """The whole fit at the Autoencoder's default :data:`DEFAULT_EPOCHS` epochs against the
    best plain loop at as many, for one cell: sparkae in a fresh process with the OpenMP
    policy unset (both thread settings; a fit's fixed cost, the rows' collect, statistics and
    private Parquet, is the same as at 3 epochs), the plain loop in every configuration.
    Returns ``{"epochs", "batch", "standardize", "sparkae", "plain", "judged"}`` (empty
    ``sparkae`` when its process failed)."""
    cell: Dict[str, Any] = {"epochs": DEFAULT_EPOCHS, "batch": batch,
                            "standardize": standardize,
                            "plain": plain_runs(rows, DEFAULT_EPOCHS, batch, standardize,
                                                test_limit),
                            "sparkae": fresh_sparkae_runs(path, rows, DEFAULT_EPOCHS, batch,
                                                          standardize, test_limit, cache)}
    cell["judged"] = judge(cell, batch) if cell["sparkae"] else {}
    return cell


def default_epochs_rows(cell: Dict[str, Any]) -> tuple:
    """The report's rows for :func:`default_epochs_fit` and the best sparkae setting's
    whole fit vs the best plain loop (None without sparkae runs)."""
    r = common.fmt
    j = cell["judged"]
    if not j:
        return [], None
    best = cell["plain"][j["plain_best"]]
    rows = [[f"plain Torch loop, best ({j['plain_best']})", r(best["rows_per_s"]), "", 1.0, "",
             best["load_average"]]]
    for setting, s in cell["sparkae"].items():
        q = j["sparkae"][setting]
        rows.append([f"sparkae fit ({setting})", r(s["loop_rows_per_s"]),
                     r(s["fit_rows_per_s"]), r(q["loop_vs_plain"]), r(q["fit_vs_plain"]),
                     s["load_average"]])
    return rows, max(q["fit_vs_plain"] for q in j["sparkae"].values())


def _best_setting(judged: Dict[str, Any], key: str = "loop_vs_plain") -> Optional[str]:
    """The sparkae setting with the highest ``key`` ratio (None when no setting has it)."""
    have = [k for k, v in judged["sparkae"].items() if key in v]
    return max(have, key=lambda k: judged["sparkae"][k][key]) if have else None


def tables_and_targets(res: Dict[str, Any], rows: int, epochs: int) -> tuple:
    """The report's table rows and targets for :func:`compare`'s result."""
    r = common.fmt
    table: List[List[Any]] = []
    targets: List[Dict[str, Any]] = []
    for name, cell in res["cells"].items():
        j = cell["judged"]
        best = cell["plain"][j["plain_best"]]
        table.append([name, f"plain Torch loop, best ({j['plain_best']})", r(best["rows_per_s"]),
                      "", 1.0, "", "", r(best["test_mse"]), "",
                      r(j["gemm_gflops"] and best["rows_per_s"] / cell["batch"]
                        * torch_baselines.train_gemm_flop(cell["batch"], best["kept"],
                                                          HIDDEN) / 1e9
                        / j["gemm_gflops"]), best["load_average"]])
        for other, p in cell["plain"].items():
            if other != j["plain_best"]:
                table.append([name, f"plain Torch loop ({other})", r(p["rows_per_s"]), "",
                              r(p["rows_per_s"] / j["plain_rows_per_s"]), "", "",
                              r(p["test_mse"]), "", "", p["load_average"]])
        for setting, s in cell["sparkae"].items():
            q = j["sparkae"][setting]
            table.append([name, f"sparkae fit ({setting})",
                          r(s["loop_rows_per_s"]), r(s["fit_rows_per_s"]),
                          r(q["loop_vs_plain"]), r(q.get("steady_vs_plain")),
                          r(q["fit_vs_plain"]), r(s["test_mse"]),
                          r(q["test_mse_vs_plain"]), r(q.get("loop_vs_gemm")),
                          s["load_average"]])
        pick = _best_setting(j)
        q = j["sparkae"][pick]
        pick_steady = _best_setting(j, "steady_vs_plain")
        qs = j["sparkae"][pick_steady] if pick_steady else None
        targets += [
            {"name": f"{name}: training loop vs the best plain loop (sparkae {pick})",
             "value": r(q["loop_vs_plain"]), "target": f">= {LOOP_TARGET}",
             "met": q["loop_vs_plain"] >= LOOP_TARGET},
            *([{"name": f"proposed replacement of the loop target: {name}, training loop "
                        f"after the first epoch (whose load of the rows into memory counts "
                        f"in the whole fit) vs the best plain loop (sparkae {pick_steady})",
                "value": r(qs["steady_vs_plain"]), "target": f">= {LOOP_TARGET}",
                "met": qs["steady_vs_plain"] >= LOOP_TARGET}]
              if qs is not None else []),
            {"name": f"{name}: whole fit vs the best plain loop (sparkae {pick})",
             "value": r(q["fit_vs_plain"]), "target": f">= {FIT_TARGET}",
             "met": q["fit_vs_plain"] >= FIT_TARGET},
            {"name": f"{name}: test MSE over all features vs the plain loop's (sparkae {pick})",
             "value": r(q["test_mse_vs_plain"]), "target": f"within {MSE_SLACK:.0%}",
             "met": abs(q["test_mse_vs_plain"] - 1) <= MSE_SLACK}]
        if "loop_vs_gemm" in q:
            targets.append({"name": f"{name}: training loop's FLOP rate vs plain torch.mm at "
                                    f"the step's shapes (sparkae {pick})",
                            "value": r(q["loop_vs_gemm"]), "target": f">= {GEMM_TARGET}",
                            "met": q["loop_vs_gemm"] >= GEMM_TARGET})
    columns = ["cell", "system", "loop rows/s", "whole fit rows/s", "loop vs best plain",
               "loop after the first epoch vs best plain", "whole fit vs best plain",
               "test MSE (all 784 features)", "MSE vs plain",
               "loop FLOP rate vs torch.mm", "load average at its end"]
    title = (f"Training loop and whole fit vs the best plain Torch loop: [100] tanh, {epochs} "
             f"epoch{'s' if epochs > 1 else ''}, {rows:,} shifted digits ({res['test_set']})")
    return {"title": title, "columns": columns, "rows": table}, targets
