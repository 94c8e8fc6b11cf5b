"""GPU: sparkae's training rank and scoring worker on one GPU against plain Torch on that GPU.

Runs only where Torch sees a CUDA device (elsewhere the entry is skipped) and only by name
(``python -m bench gpu``; ``bench/gpu_check.sh`` runs it on a GPU machine). It measures
the two pieces of sparkae that run on a GPU, each as Spark runs it but without the JVM,
so that it also runs on a GPU machine that has no Java (the figures are the GPU's work;
Spark's part of a fit or a scoring run is the CPU entries' subject):

- training: ``launch(TrainJob(use_gpu=True))`` with one rank (what ``Autoencoder.fit``
  runs for ``num_workers=1, use_gpu=True``) on 60,000 shifted digits written as Spark's
  Parquet vectors, against a plain Torch loop on the same GPU with the rows already
  scaled there (the same network, fused Adam, shuffled mini-batches), at batch 64, 256
  and 1024, each run twice (the faster counts), with the test MSE over every pixel on
  10,000 other shifted digits; batches 256 and 1024 also for the estimators' default of
  10 epochs, over which the first epoch's reading weighs what it weighs in a default fit;
- scoring: a Python worker's call (:func:`sparkae.scoring.encode.score_column` on the
  network the worker rebuilds on its GPU) on Arrow batches of 10,000 rows (Spark's
  ``maxRecordsPerBatch``) of ``array<float>``, dense-vector and sparse-vector rows, with
  ``deep_features`` + ``reconstruction_mse``, against a plain Torch forward of the same
  outputs from uint8 rows in memory (each batch to the GPU and back), over 200,000 rows;
  the array and dense-vector rows also with their NaN / infinity check on the worker's
  CPU as they are decoded (before ``Scorer.check_on_device`` moved it to the GPU).
- wide sparse rows (:mod:`bench.gpu_paths`): CSR training batches (exact and sampled
  loss) and the CSR scoring paths run on the GPU and checked against the CPU.

Ranks: a 2-rank (nccl) run needs a second GPU; on a one-GPU machine the entry says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Sequence

import numpy as np

from bench import common, gpu_paths, scoring_compare, torch_baselines

TITLE = "GPU: training and scoring against plain Torch on the same GPU"
SMOKE = False
IN_ALL = False
HIDDEN = [100]
#: (training rows, test rows, epochs, scored rows) full and quick.
SIZES = {False: (60_000, 10_000, 3, 200_000), True: (2_000, 500, 2, 10_000)}
TRAIN_BATCHES = (64, 256, 1024)
#: Batches also trained for the estimators' default number of epochs (``epochs=10``, H2O's
#: default too), over which the first epoch's reading weighs what it weighs in a default
#: fit; quick runs use 3.
DEFAULT_EPOCHS = {False: 10, True: 3}
DEFAULT_EPOCH_BATCHES = (256, 1024)
#: Rows per Arrow batch handed to a Python worker (Spark's default maxRecordsPerBatch).
ARROW_BATCH = 10_000
#: sparkae's scoring_batch_size default, then the Arrow batch whole.
SCORE_BATCHES = (1024, 10_000)
PLAIN_SCORE_BATCHES = (1024, 4096, 10_000)
LAYOUTS = ("array", "dense", "sparse")
REPEATS = 2
LOOP_TARGET = 0.8
SCORE_TARGET = 0.3
log = logging.getLogger("bench")


def run(quick: bool = False) -> Dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        raise common.Skip(f"torch {torch.__version__} sees no CUDA device: the GPU entry runs "
                          "on a machine with an NVIDIA GPU (bench/gpu_check.sh)")
    return measure("cuda", quick)


def measure(device: str, quick: bool = False) -> Dict[str, Any]:
    """Every measurement on ``device`` ("cuda"; "cpu" checks the entry where there is no
    GPU: its figures are not the entry's subject). Returns the harness's result dict."""
    import torch

    rows, test_rows, epochs, score_rows = SIZES[bool(quick)]
    work = tempfile.mkdtemp(prefix="sparkae-bench-gpu-")
    try:
        info = _device_info(device)
        _warm(device)
        x = scoring_compare.digits(rows, seed=1)
        test = scoring_compare.digits(test_rows, seed=2)
        train_path = os.path.join(work, "train")
        scoring_compare.write_rows(train_path, x, 0, 0, "sparse")
        spec, scaling = torch_baselines.network_spec(x, HIDDEN)
        training = [_train_cell(train_path, x, test, spec, scaling, batch, epochs, device)
                    for batch in TRAIN_BATCHES]
        training += [_train_cell(train_path, x, test, spec, scaling, batch,
                                 DEFAULT_EPOCHS[bool(quick)], device)
                     for batch in DEFAULT_EPOCH_BATCHES]
        state = training[-1]["state"]
        scoring = _scoring(work, spec, state, score_rows, device)
        paths = gpu_paths.check(device, quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    for cell in training:
        cell.pop("state")
    return _result(info, rows, epochs, training, scoring, score_rows, paths)


def _device_info(device: str) -> Dict[str, Any]:
    import torch

    out: Dict[str, Any] = {"device": device, "torch": torch.__version__,
                           "cuda": torch.version.cuda}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpus"] = torch.cuda.device_count()
        out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return out


def _warm(device: str) -> None:
    """The device's first kernels and cuBLAS handles, before anything is timed."""
    import torch

    a = torch.randn(1024, 784, device=device)
    w = torch.randn(100, 784, device=device, requires_grad=True)
    (torch.tanh(a @ w.t()) ** 2).mean().backward()
    torch_baselines.sync(torch.device(device))


def _sparkae_fit(path: str, spec, scaling, batch: int, epochs: int, device: str
                 ) -> Dict[str, Any]:
    from sparkae.train.distributed import TrainJob, launch
    from sparkae.train.loop import TrainConfig

    job = TrainJob(train_path=path, valid_path=None, spec=spec, scaling=scaling,
                   config=TrainConfig(epochs=epochs, seed=1, stopping_rounds=0),
                   batch_size=batch, seed=1, use_gpu=device == "cuda", progress="none")
    t0 = time.perf_counter()
    state, history = launch(job)
    return {"state": state, "rank_s": time.perf_counter() - t0,
            "epoch_seconds": [h["seconds"] for h in history]}


def _rates(rows: int, epoch_s: Sequence[float]) -> Dict[str, float]:
    """Rows/s over every epoch and over the epochs after the first (the first also reads
    and scales the rows into memory: sparkae's from Parquet, the plain loop's before its
    timer)."""
    out = {"rows_per_s": rows * len(epoch_s) / sum(epoch_s)}
    if len(epoch_s) > 1:
        out["after_first_rows_per_s"] = rows * (len(epoch_s) - 1) / sum(epoch_s[1:])
    return out


def _test_mse(net, test: np.ndarray) -> float:
    return common.pixel_mse(test, torch_baselines.torch_reconstruct(net, test))


def _train_cell(path: str, x: np.ndarray, test: np.ndarray, spec, scaling, batch: int,
                epochs: int, device: str) -> Dict[str, Any]:
    from sparkae.nn.models import build_network

    ours: List[Dict[str, Any]] = []
    plain: List[Dict[str, Any]] = []
    for _ in range(REPEATS):          # interleaved: both see the same machine state
        ours.append(_sparkae_fit(path, spec, scaling, batch, epochs, device))
        plain.append(torch_baselines.torch_train(x, HIDDEN, epochs=epochs, batch_size=batch,
                                                 seed=1, device=device))
    best_ours = min(ours, key=lambda r: sum(r["epoch_seconds"]))
    best_plain = min(plain, key=lambda r: r["seconds"])
    net = build_network(spec)
    net.scaler.set_statistics(**scaling)
    net.load_state_dict(best_ours["state"])
    net.eval()
    o, p = _rates(len(x), best_ours["epoch_seconds"]), _rates(len(x), best_plain["epoch_seconds"])
    cell = {"batch": batch, "epochs": epochs, "sparkae": o, "plain": p,
            "sparkae_runs_rows_per_s": [_rates(len(x), r["epoch_seconds"])["rows_per_s"]
                                        for r in ours],
            "plain_runs_rows_per_s": [r["rows_per_s"] for r in plain],
            "rank_s": best_ours["rank_s"],
            "sparkae_first_epoch_s": best_ours["epoch_seconds"][0],
            "plain_first_epoch_s": best_plain["epoch_seconds"][0],
            "loop_ratio": o["rows_per_s"] / p["rows_per_s"],
            "sparkae_test_mse": _test_mse(net, test),
            "plain_test_mse": _test_mse(best_plain["net"], test), "state": best_ours["state"]}
    if "after_first_rows_per_s" in o:
        cell["after_first_ratio"] = o["after_first_rows_per_s"] / p["after_first_rows_per_s"]
    log.info("gpu training, batch %d, %d epochs: sparkae %.0f rows/s, plain %.0f (%.2fx)",
             batch, epochs, o["rows_per_s"], p["rows_per_s"], cell["loop_ratio"])
    return cell


def _arrow_batches(path: str):
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["features"]).column("features").combine_chunks()
    return [col.slice(i, ARROW_BATCH) for i in range(0, len(col), ARROW_BATCH)]


def _worker_rate(batches, scorer, layer: int, batch_size: int) -> float:
    from sparkae.scoring.encode import score_column

    score_column(batches[0], scorer, scoring_compare.OUTPUTS, layer, None, batch_size,
                 False, False)                       # warm-up
    t0 = time.perf_counter()
    rows = 0
    for b in batches:
        _, arrays = score_column(b, scorer, scoring_compare.OUTPUTS, layer, None, batch_size,
                                 False, False)
        rows += len(arrays[0])
    return rows / (time.perf_counter() - t0)


def _scoring(work: str, spec, state, n: int, device: str) -> Dict[str, Any]:
    import torch

    from sparkae.nn.layout import coding_layer
    from sparkae.scoring.forward import Scorer
    from sparkae.scoring.payload import pack, unpack

    paths = {lay: os.path.join(work, "score", lay) for lay in LAYOUTS}
    x = scoring_compare.digits(n, seed=3)
    for lay in LAYOUTS:
        scoring_compare.write_rows(paths[lay], x, 0, 0, lay)
    payload = pack(spec, state)
    scorer = Scorer(unpack(payload), torch.device(device))   # as a GPU worker rebuilds it
    layer = coding_layer(spec["hidden"])
    out: Dict[str, Any] = {"sparkae": {}, "plain": {}}
    for lay in LAYOUTS:
        batches = _arrow_batches(paths[lay])
        for bs in SCORE_BATCHES:
            out["sparkae"][f"{lay} batch={bs}"] = max(
                _worker_rate(batches, scorer, layer, bs) for _ in range(REPEATS))
        if lay != "sparse":
            # the same rows with the other place of their NaN / inf check (on a GPU: on the
            # worker's CPU as they are decoded, what every worker did before
            # Scorer.check_on_device): the change, measured
            own = scorer.check_on_device
            scorer.check_on_device = not own
            where = "on the CPU" if own else "on the device"
            out["sparkae"][f"{lay} batch={SCORE_BATCHES[0]}, checked {where}"] = max(
                _worker_rate(batches, scorer, layer, SCORE_BATCHES[0])
                for _ in range(REPEATS))
            scorer.check_on_device = own
    net = unpack(payload)
    for bs in PLAIN_SCORE_BATCHES:
        torch_baselines.torch_score_rate(net, x[:bs], bs, device=device)   # warm-up
        out["plain"][f"batch={bs}"] = max(torch_baselines.torch_score_rate(
            net, x, bs, device=device) for _ in range(REPEATS))
    out["plain_best"] = max(out["plain"].values())
    log.info("gpu scoring: %s", out)
    return out


def _result(info: Dict[str, Any], rows: int, epochs: int, training: List[Dict[str, Any]],
            scoring: Dict[str, Any], score_rows: int,
            paths: List[Dict[str, Any]]) -> Dict[str, Any]:
    f = common.fmt
    plain_best = scoring["plain_best"]
    targets = []
    for c in training:
        default = c["epochs"] != epochs
        run = f", {c['epochs']} epochs (the estimators' default)" if default else ""
        targets.append({"name": f"training loop, batch {c['batch']}{run}, every epoch: "
                                "sparkae / plain Torch on the GPU",
                        "value": f(c["loop_ratio"], 3), "target": f">= {LOOP_TARGET}",
                        "met": c["loop_ratio"] >= LOOP_TARGET})
        if "after_first_ratio" in c and not default:
            targets.append({"name": f"training loop, batch {c['batch']}, epochs after the "
                                    "first (proposed measure): sparkae / plain Torch",
                            "value": f(c["after_first_ratio"], 3),
                            "target": f">= {LOOP_TARGET}",
                            "met": c["after_first_ratio"] >= LOOP_TARGET})
    for lay in LAYOUTS:
        ratio = scoring["sparkae"][f"{lay} batch={SCORE_BATCHES[0]}"] / plain_best
        targets.append({"name": f"scoring, {lay} rows (scoring_batch_size default): sparkae / "
                                "best plain forward on the GPU",
                        "value": f(ratio, 3), "target": f">= {SCORE_TARGET}",
                        "met": ratio >= SCORE_TARGET})
    for c in paths:
        targets.append({"name": f"{c['name']}: on the device as on the CPU (largest "
                                "relative difference)",
                        "value": c.get("error") or f(c["value"], 3),
                        "target": f"<= {c['tolerance']}" if c["tolerance"] else "runs",
                        "met": c["ok"]})
    train_rows = [[c["batch"], c["epochs"], round(c["sparkae"]["rows_per_s"]),
                   round(c["plain"]["rows_per_s"]),
                   f(c["loop_ratio"], 3), f(c.get("after_first_ratio"), 3),
                   f(c["sparkae_first_epoch_s"], 3), f(c["plain_first_epoch_s"], 3),
                   f(c["rank_s"], 2), f(c["sparkae_test_mse"], 5), f(c["plain_test_mse"], 5)]
                  for c in training]
    score_table = [[k, round(v), f(v / plain_best, 3)] for k, v in scoring["sparkae"].items()]
    score_table += [[f"plain Torch forward, {k}", round(v), f(v / plain_best, 3)]
                    for k, v in scoring["plain"].items()]
    gpu = info.get("gpu", info["device"])
    ranks = ("One GPU: the 2-rank (nccl) run needs a second GPU and did not run"
             if info.get("gpus", 0) < 2 else f"{info['gpus']} GPUs")
    b256 = next(c for c in training if c["batch"] == 256) if any(
        c["batch"] == 256 for c in training) else training[0]
    long_cells = [c for c in training if c["epochs"] != epochs]
    longer = (f"; over {long_cells[0]['epochs']} epochs (the default) " + ", ".join(
        f"{f(c['loop_ratio'], 3)}x at batch {c['batch']}" for c in long_cells)
        if long_cells else "")
    score_ratios = ", ".join(
        f"{f(scoring['sparkae'][f'{lay} batch={SCORE_BATCHES[0]}'] / plain_best, 3)}x"
        for lay in LAYOUTS)
    return {
        "summary": (f"On {gpu} (torch {info['torch']}, CUDA {info['cuda']}), one rank: "
                    f"sparkae's training loop at {f(b256['loop_ratio'], 3)}x the plain Torch "
                    f"loop on the same device at batch {b256['batch']} over every epoch "
                    f"({f(b256.get('after_first_ratio'), 3)}x after the first, which also "
                    f"reads the rows){longer}; scoring at {score_ratios} the best plain forward "
                    f"(array<float>, dense and sparse vectors); wide sparse paths: "
                    f"{sum(c['ok'] for c in paths)} of {len(paths)} checks agree with the "
                    f"CPU. {ranks}."),
        "device": info, "rows": rows, "epochs": epochs, "score_rows": score_rows,
        "training": training, "scoring": scoring, "paths": paths, "targets": targets,
        "tables": [
            {"title": f"Training, {rows:,} shifted digits x 784, {HIDDEN} tanh, Adam, "
                      f"one rank (rows/s over every epoch; faster of {REPEATS} runs)",
             "columns": ["batch", "epochs", "sparkae loop", "plain Torch loop", "ratio",
                         "ratio after epoch 1", "sparkae epoch 1 s", "plain epoch 1 s",
                         "sparkae rank s", "sparkae test MSE", "plain test MSE"],
             "rows": train_rows},
            {"title": f"Scoring {score_rows:,} rows, deep_features + reconstruction_mse "
                      f"(rows/s; Arrow batches of {ARROW_BATCH:,} rows)",
             "columns": ["path", "rows/s", "x best plain forward"], "rows": score_table}],
    }
