"""Research for issue 19: which autoencoder anomaly method has good defaults on unseen data.

Pure NumPy/Torch (no Spark): every candidate is fitted and scored on all rows of each
development set (:mod:`sparkae.anomaly.datasets`), unsupervised, and ranked by AUROC against
PyOD's IForest, ECOD and PCA. ``python -m bench.anomaly_research [--quick] [--methods a,b]``
prints the table and writes ``bench/results/anomaly_research/anomaly_research-<stamp>.json``;
``--summarize`` merges every stored run into ``anomaly_research_summary.json`` there.
``--sets odds-<name>`` reads the real ODDS set ``<name>`` from the folder that
``SPARKAE_ODDS_DIR`` names (:mod:`bench.bench_anomaly_odds`).

Candidates (names in the table):

- ``ae_h2o``: the chapter's workflow, sparkae's Autoencoder defaults (h2o scaling
  (x - mean) / (max - min), hidden [100] tanh, Adam 1e-3, batch 64, 10 epochs), MSE;
- ``ae_z``: the same with z-scored inputs; ``ae_z_small``: z-score, [64, 32, 64]
  -> hidden scaled to the width;
- ``ae_robust``: median/IQR scaling;
- ``ens``: an ensemble of autoencoders of varied widths and depths (RandNet-like, varied
  bottlenecks, seeds) on z-scored inputs, each member's score standardised by the median and
  IQR of its training scores, then averaged;
- ``ens_trim``: ``ens`` with training restricted, after half the epochs, to the rows whose
  error is below the 90th percentile (retraining on inliers, automated);
- ``ens_pf``: ``ens`` with per-feature squared errors divided by each feature's median
  training error before the mean (per-feature errors normalised by their training spread);
- ``vae_rp``: a VAE's reconstruction probability (An and Cho 2015), z-scored inputs;
- ``ens_lat*`` / ``lat_*``: ``ens`` plus each member's code distance (the first default);
- ``m_*`` / ``w_*`` (second round): one set of trained members per data set, scored by
  different rules (reconstruction only, code distance, distance to the k-th nearest code
  of a sampled reference, k-means code distance, rank, median or max combinations);
  ``w_*`` use PyOD AutoEncoder's widths. See :func:`bench.anomaly_rules.scored`.

``--summarize`` also reports, for every method measured on all six sets, its mean AUROC
and its largest gap below the best competitor (:data:`COMPETITORS`) on a set.

This module holds the registry of candidates (:data:`METHODS`), the MNIST scaling
question, the summary and the command line; the candidates' code is in
:mod:`bench.anomaly_models` (scaling, training, first round) and :mod:`bench.anomaly_rules`
(second round).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from bench.anomaly_models import (auroc, ensemble, ensemble_latent, scale, train_ae,
                                  train_score, vae_rp)
from bench.anomaly_rules import scored

log = logging.getLogger("bench.anomaly_research")

#: Where the research runs are stored (a folder of their own: bench/results/*.json are the
#: harness's records, which bench/report.py renders).
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "anomaly_research")


# -- the candidates: PyOD baselines and the registry ---------------------------------------

def pyod(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """A PyOD detector's training-row scores (bench_anomaly's configuration of it)."""
    from bench.bench_anomaly import pyod_scores

    full = {"PyOD-AE": "PyOD AutoEncoder"}.get(name, f"PyOD {name}")
    return lambda x: pyod_scores(full, x)


METHODS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "IForest": pyod("IForest"),
    "ECOD": pyod("ECOD"),
    "PCA": pyod("PCA"),
    "PyOD-AE": pyod("PyOD-AE"),
    "PyOD-VAE": pyod("VAE"),
    "PyOD-DeepSVDD": pyod("DeepSVDD"),
    "ae_h2o": lambda x: train_ae(scale(x, "h2o"), [100], epochs=10).mean(1),
    "ae_z": lambda x: train_ae(scale(x, "zscore"), [100], epochs=10).mean(1),
    "ae_z_steps": lambda x: train_ae(scale(x, "zscore"), [100], epochs=10, min_steps=500).mean(1),
    "ae_robust": lambda x: train_ae(scale(x, "robust"), [100], epochs=10, min_steps=500).mean(1),
    "ens": lambda x: ensemble(x),
    "ens_rank": lambda x: ensemble(x, combine="rank"),
    "ens_robust": lambda x: ensemble(x, how="robust"),
    "ens_trim": lambda x: ensemble(x, trim=0.9),
    "ens_pf": lambda x: ensemble(x, per_feature=True),
    "ens_pf_trim": lambda x: ensemble(x, per_feature=True, trim=0.9),
    "vae_rp": vae_rp,
    "ens_retrain": lambda x: ensemble(x, retrain=0.9),
    "ens_pf_retrain": lambda x: ensemble(x, retrain=0.9, per_feature=True),
    "ens_k10_retrain": lambda x: ensemble(x, retrain=0.9, k=10),
    "ens_nosteps": lambda x: ensemble(x, min_steps=0),
    # training length, and each member's code distance (bench.anomaly_models)
    "ens_e10": lambda x: ensemble(x, min_steps=0),
    "ens_s100": lambda x: ensemble(x, min_steps=100),
    "ens_lat": lambda x: ensemble_latent(x),
    "ens_lat_s100": lambda x: ensemble_latent(x, min_steps=100),
    "ens_lat_s500": lambda x: ensemble_latent(x, min_steps=500),
    "lat_mix": lambda x: ensemble_latent(x, steps_by_member=[100, 250, 500, 1000, 2000]),
    "ens_lat_k10_s500": lambda x: ensemble_latent(x, k=10, min_steps=500),
    "lat_minmax": lambda x: ensemble_latent(x, min_steps=500, how="minmax"),
    "lat_h2o": lambda x: ensemble_latent(x, min_steps=500, how="h2o"),
    "lat_zclip3": lambda x: ensemble_latent(x, min_steps=500, how="zclip3"),
    "lat_zclip5": lambda x: ensemble_latent(x, min_steps=500, how="zclip5"),
    # one set of trained members scored by different rules (bench.anomaly_rules)
    "m_rec": scored(["rec"]),
    "m_dist": scored(["dist"]),
    "m_rec_dist": scored(["rec", "dist"]),          # the first default (= ens_lat_s500)
    "m_rec_rank": scored(["rec"], combine="rank"),
    "m_rec_median": scored(["rec"], combine="median"),
    "m_knnall_10": scored(["knnall_10"]),
    "m_rec_knnall_10": scored(["rec", "knnall_10"]),
    "m_rec_knn256_1": scored(["rec", "knn256_1"]),
    "m_rec_knn256_5": scored(["rec", "knn256_5"]),
    "m_rec_knn1024_10": scored(["rec", "knn1024_10"]),
    "m_knn256_1": scored(["knn256_1"]),
    "m_knn256_5": scored(["knn256_5"]),
    "m_knn1024_10": scored(["knn1024_10"]),
    "m_rec_dist_knn256_5": scored(["rec", "dist", "knn256_5"]),
    "m_rec_dist_knn1024_10": scored(["rec", "dist", "knn1024_10"]),
    "m_rec_km10": scored(["rec", "km10"]),
    "m_max_rec_dist": scored(["rec", "dist"], combine="max_terms"),
    "m_max_rec_dist_knn1024_10": scored(["rec", "dist", "knn1024_10"], combine="max_terms"),
    "m_rec_dist_km10": scored(["rec", "dist", "km10"]),
    "m_rec_kmA": scored(["rec", "kmA"]),
    "m_rec_dist_kmA": scored(["rec", "dist", "kmA"]),
    "m_ifo": scored(["ifo"]),
    "m_rec_ifo": scored(["rec", "ifo"]),
    "m_rec_dist_kmA_ifo": scored(["rec", "dist", "kmA", "ifo"]),
    "m_rec_km50": scored(["rec", "km50"]),
    "m_rec_cblofA": scored(["rec", "cblofA"]),
    "m_rec_dist_cblofA": scored(["rec", "dist", "cblofA"]),
    "m_rec_cblof10": scored(["rec", "cblof10"]),
    "m_rec_dist_km10_kmA": scored(["rec", "dist", "km10", "kmA"]),
    "m_rec_km10_kmA": scored(["rec", "km10", "kmA"]),
    "m_kmA": scored(["kmA"]),
    "m_rec_dist_kmA_s0": scored(["rec", "dist", "kmA"], min_steps=0),   # 10 epochs only
    "m_cblofA": scored(["cblofA"]),
    "w_rec": scored(["rec"], widths="pyod"),
    "w_rec_dist": scored(["rec", "dist"], widths="pyod"),
}


def mnist_blowup(splits: int = 5) -> List[Dict[str, object]]:
    """For ``splits`` random 80/20 splits of the bundled sample: the largest h2o-scaled
    value of any row (scaling fitted on the training part), the row's label, whether it was
    in training, the pixel's training max and value, and the MSE that pixel alone adds if
    reconstructed at the mean (no training needed)."""
    from sparkae.datasets import load_mnist_arrays, mnist_sample_paths

    images, labels = load_mnist_arrays(*mnist_sample_paths())
    x = images.reshape(len(images), -1).astype(np.float64)
    out = []
    for seed in range(splits):
        train = np.random.default_rng(seed).random(len(x)) < 0.8
        xt = x[train]
        lo, hi, mean = xt.min(0), xt.max(0), xt.mean(0)
        keep = hi > lo
        s = (x[:, keep] - mean[keep]) / (hi - lo)[keep]
        m = np.abs(s).max(1)
        r = int(np.argmax(m))
        j = int(np.argmax(np.abs(s[r])))
        pix = int(np.flatnonzero(keep)[j])
        out.append({"split_seed": seed, "max_scaled": round(float(m[r]), 1),
                    "row_label": int(labels[r]), "in_training": bool(train[r]),
                    "pixel_train_max": float(hi[pix]), "pixel_value": float(x[r, pix]),
                    "one_pixel_mse_floor": round(float(s[r, j] ** 2 / keep.sum()), 3),
                    "rows_scaled_above_5": int((m > 5).sum()),
                    "max_scaled_training_rows": round(float(m[train].max()), 3)})
    return out


def summarize(results_dir: str) -> Dict[str, object]:
    """Merge every stored research run (``anomaly_research-*.json`` tables and the logs of
    runs stopped early, ``anomaly_research-*.log``) into one table: the mean AUROC of each
    method on each set over its resamplings (a resampling measured twice counts once), with
    their count."""
    import glob
    import re

    runs: Dict[str, Dict[str, Dict[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "anomaly_research-*.json"))):
        with open(path) as f:
            rec = json.load(f)
        if not isinstance(rec, dict):
            continue
        for m, by_set in (rec.get("results") or {}).items():
            for sname, cell in by_set.items():
                vals = cell.get("runs") or ([cell["auroc"]] if "auroc" in cell else [])
                runs.setdefault(m, {}).setdefault(sname, {}).update(
                    (rep, v) for rep, v in enumerate(vals) if v == v)
    pat = re.compile(r"^\S+ \S+ (\S+)\s+(\S+)\s+(?:rep (\d+) )?AUROC (\S+)")
    for path in sorted(glob.glob(os.path.join(results_dir, "anomaly_research-*.log"))):
        with open(path) as f:
            for line in f:
                hit = pat.match(line)
                if hit:
                    runs.setdefault(hit.group(2), {}).setdefault(hit.group(1), {})[
                        int(hit.group(3) or 0)] = float(hit.group(4))
    sets = ["wdbc", "wine", "digits-0", "mnist-0", "synthetic", "sparse", "topics"]
    table = {m: {s: {"auroc": round(float(np.mean(list(v.values()))), 4), "n": len(v)}
                 for s, v in by.items() if v} for m, by in runs.items()}
    gaps = worst_gaps(table, sets)
    lines = ["method".ljust(22) + "".join(s.rjust(13) for s in sets)
             + "mean".rjust(9) + "worst gap".rjust(18)]
    for m, by in table.items():
        g = gaps.get(m)
        lines.append(m.ljust(22) + "".join(
            (f"{by[s]['auroc']:.4f} ({by[s]['n']})" if s in by else "-").rjust(13)
            for s in sets) + (f"{g['mean']:9.4f}{g['worst_gap']:8.4f} {g['worst_set']:>9}"
                              if g else ""))
    return {"sets": sets, "competitors": COMPETITORS, "table": table, "gaps": gaps,
            "text": "\n".join(lines)}


#: The detectors a user compares with first (bench_anomaly's PyOD configurations).
COMPETITORS = ["IForest", "ECOD", "PCA", "PyOD-AE", "PyOD-VAE", "PyOD-DeepSVDD"]


def worst_gaps(table: Dict[str, Dict[str, Dict[str, float]]], sets: Sequence[str]
               ) -> Dict[str, Dict[str, object]]:
    """For every method measured on all ``sets``: its mean AUROC and its largest gap below
    the best competitor's AUROC on a set (0 where it beats them all), the set where that
    gap is, and whether it is within 0.01 everywhere (issue 19's second target)."""
    best = {s: max((table[c][s]["auroc"] for c in COMPETITORS
                    if c in table and s in table[c]), default=None) for s in sets}
    out: Dict[str, Dict[str, object]] = {}
    for m, by in table.items():
        if not all(s in by and best[s] is not None for s in sets):
            continue
        gap = {s: max(0.0, best[s] - by[s]["auroc"]) for s in sets}
        worst = max(gap, key=gap.get)
        out[m] = {"mean": round(float(np.mean([by[s]["auroc"] for s in sets])), 4),
                  "worst_gap": round(gap[worst], 4), "worst_set": worst,
                  "within_0.01_everywhere": gap[worst] <= 0.01}
    return out


@functools.lru_cache(maxsize=1)
def _odds_sets(folder: str) -> Dict[str, Dict[str, object]]:
    """The ODDS sets in ``folder`` by name, read once per run."""
    from bench.bench_anomaly_odds import load_sets

    return {s["name"]: s for s in load_sets(folder)}


def seeded(name: str, seed: int):
    """Development set ``name`` drawn with ``seed`` (its anomalies' sample, or the
    synthetic draw)."""
    from sparkae.anomaly import datasets as ds

    if name.startswith("odds-"):     # a real ODDS set (bench.bench_anomaly_odds); no draw
        s = _odds_sets(os.environ["SPARKAE_ODDS_DIR"])[name[len("odds-"):]]
        return ds.AnomalySet(x=s["x"], y=s["y"], name=name)
    if seed == 0:
        return ds.DEVELOPMENT_SETS[name]()
    builders = {"wdbc": ds.wdbc, "wine": ds.wine,
                "synthetic": lambda seed: ds.synthetic(seed=seed),
                "sparse": lambda seed: ds.sparse_dense_set(seed=seed),
                "topics": lambda seed: ds.topics_set(seed=seed)}
    if name.startswith("digits-"):
        return ds.digits(int(name.split("-")[1]), seed=seed)
    if name.startswith("mnist-"):
        return ds.mnist(int(name.split("-")[1]), seed=seed)
    return builders[name](seed)


def main(argv: Optional[List[str]] = None) -> int:
    from sparkae.anomaly.datasets import DEVELOPMENT_SETS

    p = argparse.ArgumentParser(prog="python -m bench.anomaly_research")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--sets", default=",".join(DEVELOPMENT_SETS))
    p.add_argument("--tag", default="")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1,
                   help="resamplings (seeds 0..reps-1) of the sets whose anomalies are sampled; "
                        "the table shows the mean AUROC")
    p.add_argument("--summarize", action="store_true",
                   help="merge the stored runs into anomaly_research_summary.json and print it")
    p.add_argument("--mnist-scaling", action="store_true",
                   help="only the MNIST scaling question (writes anomaly_research-mnist-*.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    if args.summarize:
        found = summarize(RESULTS)
        print(found["text"])
        with open(os.path.join(RESULTS,
                               "anomaly_research_summary.json"), "w") as f:
            json.dump(found, f, indent=1)
        return 0
    if args.mnist_scaling:
        found = mnist_scaling()
        found["blowup_by_split"] = mnist_blowup()
        path = os.path.join(RESULTS,
                            f"anomaly_research-mnist-{time.strftime('%Y%m%d-%H%M%S')}.json")
        with open(path, "w") as f:
            json.dump(found, f, indent=1)
        return 0
    methods = args.methods.split(",")
    sets = args.sets.split(",")
    res: Dict[str, Dict[str, Dict[str, float]]] = {m: {} for m in methods}
    for sname in sets:
        for rep in range(args.reps):
            data = seeded(sname, rep)
            for m in methods:
                t0 = time.perf_counter()
                try:
                    s = np.asarray(METHODS[m](data.x), dtype=np.float64)
                except Exception as exc:  # noqa: BLE001 - record, go on
                    log.error("%s on %s failed: %s", m, sname, exc)
                    res[m][sname] = {"auroc": float("nan"), "error": str(exc)[:200]}
                    continue
                s = np.nan_to_num(s, nan=0.0, posinf=np.finfo(np.float64).max / 10)
                cell = res[m].setdefault(sname, {"runs": [], "seconds": 0.0})
                cell["runs"].append(round(auroc(s, data.y), 4))
                cell["auroc"] = round(float(np.mean(cell["runs"])), 4)
                cell["seconds"] = round(cell["seconds"] + time.perf_counter() - t0, 2)
                log.info("%-10s %-14s rep %d AUROC %.4f  %.1f s", sname, m, rep, cell["runs"][-1],
                         cell["seconds"])
    head = "method".ljust(14) + "".join(s[:9].rjust(10) for s in sets) + "      mean"
    lines = [head]
    for m in methods:
        vals = [res[m][s]["auroc"] for s in sets]
        lines.append(m.ljust(14) + "".join(f"{v:10.4f}" for v in vals) + f"{np.mean(vals):10.4f}")
    table = "\n".join(lines)
    log.info("\n%s", table)
    out = os.path.join(RESULTS,
                       f"anomaly_research{args.tag}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump({"sets": sets, "methods": methods, "results": res, "table": table}, f, indent=1)
    log.info("-> %s", out)
    return 0


def mnist_scaling(seed: int = 0, epochs: int = 10) -> Dict[str, object]:
    """Issue 19's question: why the main job's worst rows are ordinary digits reconstructed
    as noise. Emulates ``jobs/train.py``'s default (bundled sample, 80/20 split, h2o scaling
    fitted on the training part, [100] tanh, 10 epochs, every row scored) and measures, for
    the five worst rows, the share of their squared error that comes from their single
    worst pixel, that pixel's training range, and what clipping scaled inputs to the
    training range (and z-scoring) does to the ranking."""
    from sparkae.datasets import load_mnist_arrays, mnist_sample_paths

    images, labels = load_mnist_arrays(*mnist_sample_paths())
    x = images.reshape(len(images), -1).astype(np.float64)
    rng = np.random.default_rng(seed)
    train = rng.random(len(x)) < 0.8
    xt = x[train]
    mean, lo, hi = xt.mean(0), xt.min(0), xt.max(0)
    rngw = hi - lo
    const = rngw == 0
    keep = ~const                          # ignore_const_cols
    out: Dict[str, object] = {"rows": int(len(x)), "train_rows": int(train.sum()),
                              "constant_pixels_dropped": int(const.sum())}

    def h2o(v, clip=False):
        s = (v[:, keep] - mean[keep]) / rngw[keep]
        if clip:
            s = np.clip(s, ((lo - mean) / np.where(const, 1, rngw))[keep],
                        ((hi - mean) / np.where(const, 1, rngw))[keep])
        return s

    s_train, s_all = h2o(xt), h2o(x)
    fe = train_score(s_train, s_all, [100], epochs=epochs, seed=seed)
    mse = fe.mean(1)
    top = np.argsort(-mse)[:5]
    rows = []
    kept_idx = np.flatnonzero(keep)
    for r in top:
        j = int(np.argmax(fe[r]))
        pix = int(kept_idx[j])
        rows.append({"row": int(r), "label": int(labels[r]), "in_training": bool(train[r]),
                     "mse": round(float(mse[r]), 4),
                     "worst_pixel": pix, "pixel_value": float(x[r, pix]),
                     "pixel_train_max": float(hi[pix]),
                     "pixel_train_rows_nonzero": int(np.sum(xt[:, pix] > 0)),
                     "scaled_value": round(float(s_all[r, j]), 2),
                     "share_of_error_from_worst_pixel": round(float(fe[r, j] / fe[r].sum()), 3)})
    out["h2o_top5"] = rows
    out["h2o_median_mse"] = round(float(np.median(mse)), 5)
    out["h2o_max_abs_scaled_train"] = round(float(np.abs(s_train).max()), 3)
    out["h2o_max_abs_scaled_all"] = round(float(np.abs(s_all).max()), 3)
    out["rows_with_scaled_value_above_2"] = int(np.sum(np.abs(s_all).max(1) > 2))
    out["of_them_not_in_training"] = int(np.sum((np.abs(s_all).max(1) > 2) & ~train))
    # the same network scored on clipped inputs
    fe_c = train_score(s_train, h2o(x, clip=True), [100], epochs=epochs, seed=seed)
    mse_c = fe_c.mean(1)
    top_c = np.argsort(-mse_c)[:5]
    out["clipped_top5"] = [{"row": int(r), "label": int(labels[r]), "in_training": bool(train[r]),
                            "mse": round(float(mse_c[r]), 4)} for r in top_c]
    out["top5_mse_span"] = [round(float(mse[top[0]]), 4), round(float(mse[top[-1]]), 4)]
    out["clipped_top5_mse_span"] = [round(float(mse_c[top_c[0]]), 4),
                                    round(float(mse_c[top_c[-1]]), 4)]
    log.info("MNIST scaling: %s", json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
