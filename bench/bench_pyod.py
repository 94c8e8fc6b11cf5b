"""Anomaly detection: sparkae vs PyOD's AutoEncoder and VAE, one digit held out at a time.

For each digit d: train on the bundled sample's images of the other nine digits (4,500
rows; quick mode: digits 0 and 1, 1 epoch, a 2,000-row subset, 1,000 test rows), score the MNIST test set, and measure how well each score ranks the images of d
above the others (AUROC, d = the positive class). sparkae: ``Autoencoder(hidden=[100],
tanh, 10 epochs)`` and its ``reconstruction_mse`` (``model.anomaly``); PyOD (its
defaults, 10 epochs, CPU, 2 Torch threads): ``AutoEncoder`` ([64, 32] ReLU, batch norm,
dropout 0.2) and ``VAE`` (latent 2), scores from ``decision_function`` on pixels / 255.
Fit and score wall times of each.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List

import numpy as np

from bench import common

TITLE = "vs PyOD: anomaly detection (AUROC, one digit held out)"
SMOKE = True
log = logging.getLogger("bench")


def _pyod_models(epochs: int) -> Dict[str, Any]:
    try:
        from pyod.models.auto_encoder import AutoEncoder
    except ImportError as exc:
        log.warning("PyOD AutoEncoder unavailable: %s", exc)
        return {}
    out = {"PyOD AutoEncoder": lambda: AutoEncoder(epoch_num=epochs, verbose=0, device="cpu",
                                                   random_state=42)}
    try:
        from pyod.models.vae import VAE

        out["PyOD VAE"] = lambda: VAE(epoch_num=epochs, verbose=0, device="cpu",
                                      random_state=42)
    except ImportError as exc:
        log.warning("PyOD VAE unavailable: %s", exc)
    return out


def run(quick: bool = False) -> Dict[str, Any]:
    digits = [0, 1] if quick else list(range(10))
    epochs = 1 if quick else 10
    common.set_torch_threads()
    x, y = common.sample_arrays()
    if quick:                     # 2,000 of the 5,000 rows (the sample is ordered by label)
        idx = np.sort(np.random.default_rng(0).permutation(len(x))[:2_000])
        x, y = x[idx], y[idx]
    test = common.test_arrays(limit=1_000 if quick else None)
    pyod_models = _pyod_models(epochs)
    systems = ["sparkae"] + list(pyod_models)
    common.warm_up()
    test_df = common.to_df(test.images, test.labels)
    xt = test.images.astype(np.float32) / 255.0
    res: Dict[str, Dict[int, Dict[str, float]]] = {s: {} for s in systems}
    for d in digits:
        keep = y != d
        positive = test.labels == d
        df = common.to_df(x[keep], y[keep])
        model, fit_s = common.fit_sparkae(df, [100], epochs=epochs)
        t0 = time.perf_counter()
        scores = common.sparkae_column(model, test_df, ["reconstruction_mse"],
                                       "reconstruction_mse")
        res["sparkae"][d] = {"auroc": common.auroc(scores, positive), "fit_s": fit_s,
                             "score_s": time.perf_counter() - t0}
        df.unpersist()
        xtr = x[keep].astype(np.float32) / 255.0
        for name, make in pyod_models.items():
            det = make()
            t0 = time.perf_counter()
            det.fit(xtr)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            s = det.decision_function(xt)
            res[name][d] = {"auroc": common.auroc(s, positive), "fit_s": fit_s,
                            "score_s": time.perf_counter() - t0}
        log.info("digit %d: %s", d, ", ".join(f"{s} AUROC {res[s][d]['auroc']:.3f}"
                                              for s in systems))
    test_df.unpersist()

    r = common.fmt
    mean = {s: {k: float(np.mean([res[s][d][k] for d in digits])) for k in
                ("auroc", "fit_s", "score_s")} for s in systems}
    rows: List[List[Any]] = []
    for d in digits:
        rows.append([d] + [r(res[s][d]["auroc"]) for s in systems])
    rows.append(["mean"] + [r(mean[s]["auroc"]) for s in systems])
    time_rows = [[s, r(mean[s]["fit_s"]), r(mean[s]["score_s"]),
                  r(mean[s]["fit_s"] / mean["sparkae"]["fit_s"]),
                  r(mean[s]["score_s"] / mean["sparkae"]["score_s"])] for s in systems]
    best = max(systems, key=lambda s: mean[s]["auroc"])
    summary = (f"Mean AUROC over {len(digits)} held-out digit{'s' if len(digits) > 1 else ''}: "
               + ", ".join(f"{s} **{mean[s]['auroc']:.3f}**" for s in systems)
               + f" (best: {best}).")
    notes = []
    if not pyod_models:
        notes.append("**PyOD is not installed here, so only sparkae was measured** "
                     "(`pip install -e '.[bench]'`).")
    notes.append("Times: sparkae's fit is `Autoencoder.fit` on a cached DataFrame (after a "
                 "warm-up fit) and its score time is `transform` of the test set collected to "
                 "the driver; PyOD's are `fit` and `decision_function` on NumPy arrays in "
                 "memory. All use 2 cores.")
    if not test.official:
        notes.append(f"The official MNIST test set was not found; test rows: {test.source}.")
    return {
        "summary": summary,
        "per_digit": {s: {str(d): {k: r(v) for k, v in m.items()} for d, m in res[s].items()}
                      for s in systems},
        "tables": [
            {"title": f"AUROC for detecting digit d (trained on the other digits, {epochs} "
                      f"epochs); test = {test.source}",
             "columns": ["d"] + systems, "rows": rows},
            {"title": "Mean time per digit",
             "columns": ["system", "fit s", "score s", "fit vs sparkae", "score vs sparkae"],
             "rows": time_rows}],
        "charts": [{"name": "auroc", "kind": "bar", "title": "AUROC by held-out digit",
                    "categories": [str(d) for d in digits],
                    "series": {s: [res[s][d]["auroc"] for d in digits] for s in systems},
                    "ylabel": "AUROC"}],
        "notes": "\n\n".join(notes),
        "mean": {s: {k: r(v) for k, v in m.items()} for s, m in mean.items()},
        "config": {"epochs": epochs, "digits": digits, "test_set": test.source,
                   "systems": systems},
    }
