"""Research for issue 19: which autoencoder anomaly method has good defaults on unseen data.

Pure NumPy/Torch (no Spark): every candidate is fitted and scored on all rows of each
development set (:mod:`sparkae.anomaly.datasets`), unsupervised, and ranked by AUROC against
PyOD's IForest, ECOD and PCA. ``python -m bench.anomaly_research [--quick] [--methods a,b]``
prints the table and writes ``bench/results/anomaly_research/anomaly_research-<stamp>.json``;
``--summarize`` merges every stored run into ``anomaly_research_summary.json`` there.

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
  ``w_*`` use PyOD AutoEncoder's widths. See :func:`scored`.

``--summarize`` also reports, for every method measured on all six sets, its mean AUROC
and its largest gap below the best competitor (:data:`COMPETITORS`) on a set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

log = logging.getLogger("bench.anomaly_research")

#: Where the research runs are stored (a folder of their own: bench/results/*.json are the
#: harness's records, which bench/report.py renders).
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "anomaly_research")


def auroc(scores: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


# -- scaling --------------------------------------------------------------------------------

def scale(x: np.ndarray, how: str) -> np.ndarray:
    if how == "h2o":
        mean, rng = x.mean(0), x.max(0) - x.min(0)
        rng[rng == 0] = 1.0
        return (x - mean) / rng
    if how == "zscore":
        sd = x.std(0)
        sd[sd == 0] = 1.0
        return (x - x.mean(0)) / sd
    if how.startswith("zclip"):             # z-score clipped to +-c: rare features bounded
        c = float(how[5:])
        return np.clip(scale(x, "zscore"), -c, c)
    if how == "minmax":
        lo, rng = x.min(0), x.max(0) - x.min(0)
        rng[rng == 0] = 1.0
        return (x - lo) / rng
    if how == "robust":
        med = np.median(x, 0)
        iqr = np.percentile(x, 75, 0) - np.percentile(x, 25, 0)
        sd = x.std(0)
        iqr = np.where(iqr > 0, iqr / 1.349, sd)
        iqr[iqr == 0] = 1.0
        return (x - med) / iqr
    raise ValueError(how)


# -- autoencoders ---------------------------------------------------------------------------

def train_ae(xs: np.ndarray, hidden: Sequence[int], epochs: int = 10, seed: int = 0,
             batch: int = 64, lr: float = 1e-3, min_steps: int = 0,
             trim: Optional[float] = None, act: str = "tanh", dropout: float = 0.0):
    import torch

    torch.manual_seed(seed)
    d = xs.shape[1]
    layers: List[torch.nn.Module] = []
    prev = d
    for h in hidden:
        layers += [torch.nn.Linear(prev, h), torch.nn.Tanh() if act == "tanh" else torch.nn.ReLU()]
        if dropout:
            layers.append(torch.nn.Dropout(dropout))
        prev = h
    layers.append(torch.nn.Linear(prev, d))
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt = torch.tensor(xs, dtype=torch.float32)
    n = len(xt)
    steps_per_epoch = max(1, (n + batch - 1) // batch)
    epochs = max(epochs, -(-min_steps // steps_per_epoch))
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(n)
    for ep in range(epochs):
        if trim is not None and ep == epochs // 2:
            net.eval()
            with torch.no_grad():
                err = ((net(xt) - xt) ** 2).mean(1)
            rows = torch.nonzero(err <= torch.quantile(err, trim)).flatten()
            net.train()
        perm = rows[torch.randperm(len(rows), generator=gen)]
        for i in range(0, len(perm), batch):
            xb = xt[perm[i:i + batch]]
            loss = ((net(xb) - xb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        rec = net(xt).numpy()
    return (rec - xs) ** 2          # per-feature squared errors


def robust_z(s: np.ndarray) -> np.ndarray:
    med = np.median(s)
    iqr = np.percentile(s, 75) - np.percentile(s, 25)
    return (s - med) / (iqr if iqr > 0 else (s.std() or 1.0))


def members(d: int, k: int, seed: int) -> List[List[int]]:
    """Varied architectures scaled to the width d: bottleneck ratios and depths drawn."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        code = int(max(2, round(d * rng.uniform(0.1, 0.6))))
        code = min(code, 64)
        if rng.random() < 0.5:
            out.append([code])
        else:
            mid = int(min(max(code * 2, round(d * rng.uniform(0.5, 1.0))), 256))
            out.append([mid, code, mid])
    return out


def retrain_ae(xs, hidden, quantile=0.9, **kw):
    """Train, keep the rows whose error is at most the quantile, train afresh on them, and
    score every row (the chapter's retraining on inliers; what the Spark API offers)."""
    err = train_ae(xs, hidden, **kw).mean(1)
    keep = err <= np.quantile(err, quantile)
    return train_ae_on(xs, xs[keep], hidden, **kw)


def train_ae_on(xs_all, xs_fit, hidden, **kw):
    """Train on xs_fit, return the per-feature squared errors of xs_all."""
    return _train_score(xs_fit, xs_all, hidden, **kw)


def _fit_mse(forward, params, xt, epochs, seed, batch, lr, min_steps):
    """Adam on the mean squared reconstruction error of ``forward`` over ``xt``: ``epochs``
    shuffled passes, raised to ``min_steps`` gradient steps."""
    import torch

    opt = torch.optim.Adam(params, lr=lr)
    n = len(xt)
    epochs = max(epochs, -(-min_steps // max(1, (n + batch - 1) // batch)))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            xb = xt[perm[i:i + batch]]
            loss = ((forward(xb) - xb) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def _train_score(xfit, xall, hidden, epochs=10, seed=0, batch=64, lr=1e-3, min_steps=0, **_):
    import torch

    torch.manual_seed(seed)
    d = xfit.shape[1]
    layers, prev = [], d
    for h in hidden:
        layers += [torch.nn.Linear(prev, h), torch.nn.Tanh()]
        prev = h
    layers.append(torch.nn.Linear(prev, d))
    net = torch.nn.Sequential(*layers)
    xt = torch.tensor(xfit, dtype=torch.float32)
    _fit_mse(net, list(net.parameters()), xt, epochs, seed, batch, lr, min_steps)
    with torch.no_grad():
        xa = torch.tensor(xall, dtype=torch.float32)
        return ((net(xa) - xa) ** 2).numpy()


def ensemble(x, how="zscore", k=5, epochs=10, trim=None, per_feature=False, seed=0,
             min_steps=500, combine="robust_z", retrain=None, clip=None):
    xs = scale(x, how)
    if clip is not None:
        xs = np.clip(xs, -clip, clip)
    scores = []
    for i, hidden in enumerate(members(x.shape[1], k, seed)):
        if retrain is not None:
            fe = retrain_ae(xs, hidden, quantile=retrain, epochs=epochs, seed=seed + i,
                            min_steps=min_steps)
        else:
            fe = train_ae(xs, hidden, epochs=epochs, seed=seed + i, trim=trim,
                          min_steps=min_steps)
        if per_feature:
            spread = np.median(fe, 0)
            spread[spread <= 0] = np.mean(fe) or 1.0
            s = (fe / np.maximum(spread, 1e-3 * np.mean(fe))).mean(1)
        else:
            s = fe.mean(1)
        scores.append(robust_z(s) if combine == "robust_z" else
                      np.argsort(np.argsort(s)) / len(s))
    return np.mean(scores, 0)


def vae_rp(x, epochs=30, latent=None, seed=0, samples=10, min_steps=500):
    import torch

    xs = torch.tensor(scale(x, "zscore"), dtype=torch.float32)
    n, d = xs.shape
    latent = latent or max(2, min(16, d // 4))
    hid = min(128, max(16, d // 2))
    torch.manual_seed(seed)
    lin, tanh = torch.nn.Linear, torch.nn.Tanh
    enc = torch.nn.Sequential(lin(d, hid), tanh(), lin(hid, 2 * latent))
    dec = torch.nn.Sequential(lin(latent, hid), tanh(), lin(hid, 2 * d))
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)
    batch = 64
    epochs = max(epochs, -(-min_steps // max(1, n // batch)))
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            xb = xs[perm[i:i + batch]]
            mu, lv = enc(xb).chunk(2, 1)
            z = mu + torch.randn_like(mu) * (0.5 * lv).exp()
            xm, xlv = dec(z).chunk(2, 1)
            xlv = xlv.clamp(-6, 6)
            nll = 0.5 * (xlv + (xb - xm) ** 2 / xlv.exp()).sum(1)
            kl = -0.5 * (1 + lv - mu ** 2 - lv.exp()).sum(1)
            loss = (nll + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        mu, lv = enc(xs).chunk(2, 1)
        tot = torch.zeros(n)
        for _ in range(samples):
            z = mu + torch.randn_like(mu) * (0.5 * lv).exp()
            xm, xlv = dec(z).chunk(2, 1)
            xlv = xlv.clamp(-6, 6)
            tot += 0.5 * (xlv + (xs - xm) ** 2 / xlv.exp()).sum(1)
    return (tot / samples).numpy()


# -- PyOD baselines ---------------------------------------------------------------------------

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
    sets = ["wdbc", "wine", "digits-0", "mnist-0", "synthetic", "sparse"]
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


def seeded(name: str, seed: int):
    """Development set ``name`` drawn with ``seed`` (its anomalies' sample, or the
    synthetic draw)."""
    from sparkae.anomaly import datasets as ds

    if seed == 0:
        return ds.DEVELOPMENT_SETS[name]()
    builders = {"wdbc": ds.wdbc, "wine": ds.wine,
                "synthetic": lambda seed: ds.synthetic(seed=seed),
                "sparse": lambda seed: ds.sparse_dense_set(seed=seed)}
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
    fe = _train_score(s_train, s_all, [100], epochs=epochs, seed=seed)
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
    fe_c = _train_score(s_train, h2o(x, clip=True), [100], epochs=epochs, seed=seed)
    mse_c = fe_c.mean(1)
    top_c = np.argsort(-mse_c)[:5]
    out["clipped_top5"] = [{"row": int(r), "label": int(labels[r]), "in_training": bool(train[r]),
                            "mse": round(float(mse_c[r]), 4)} for r in top_c]
    out["top5_mse_span"] = [round(float(mse[top[0]]), 4), round(float(mse[top[-1]]), 4)]
    out["clipped_top5_mse_span"] = [round(float(mse_c[top_c[0]]), 4),
                                    round(float(mse_c[top_c[-1]]), 4)]
    log.info("MNIST scaling: %s", json.dumps(out, indent=1))
    return out


def _train_codes(xs, hidden, epochs=10, seed=0, batch=64, lr=1e-3, min_steps=0):
    """Train an autoencoder on xs; return (per-feature squared errors, codes of the
    coding layer) of every row."""
    import torch

    torch.manual_seed(seed)
    d = xs.shape[1]
    enc, prev = [], d
    code_at = len(hidden) // 2
    for h in hidden[:code_at + 1]:
        enc += [torch.nn.Linear(prev, h), torch.nn.Tanh()]
        prev = h
    dec = []
    for h in hidden[code_at + 1:]:
        dec += [torch.nn.Linear(prev, h), torch.nn.Tanh()]
        prev = h
    dec.append(torch.nn.Linear(prev, d))
    e, g = torch.nn.Sequential(*enc), torch.nn.Sequential(*dec)
    xt = torch.tensor(xs, dtype=torch.float32)
    _fit_mse(lambda xb: g(e(xb)), list(e.parameters()) + list(g.parameters()), xt, epochs,
             seed, batch, lr, min_steps)
    with torch.no_grad():
        c = e(xt)
        return ((g(c) - xt) ** 2).numpy(), c.numpy()


def ensemble_latent(x, k=5, epochs=10, min_steps=0, seed=0, code_weight=1.0, how="zscore",
                    steps_by_member=None):
    """Each member: robust-z(reconstruction MSE) + code_weight * robust-z(squared
    standardised distance of the codes from their mean) (off- and along-manifold)."""
    xs = scale(x, how)
    out = []
    for i, hidden in enumerate(members(x.shape[1], k, seed)):
        steps = steps_by_member[i % len(steps_by_member)] if steps_by_member else min_steps
        fe, c = _train_codes(xs, hidden, epochs=epochs, seed=seed + i, min_steps=steps)
        sd = c.std(0)
        sd[sd == 0] = 1.0
        dist = (((c - c.mean(0)) / sd) ** 2).mean(1)
        out.append(robust_z(fe.mean(1)) + code_weight * robust_z(dist))
    return np.mean(out, 0)


METHODS.update({
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
})


# -- member outputs shared by the scoring candidates (issue 19, second round) ---------------
#
# The candidates below differ only in how a member's outputs become a score, so each
# (data set, resampling) trains the five members once (the default's: z-scored inputs,
# :func:`members` architectures, seeds 0-4, at least 500 steps) and every scoring rule
# reads the same errors and codes. Terms, each a robust z-score over the training rows:
#
# - ``rec``: the member's reconstruction MSE;
# - ``dist``: the code distance, mean squared z-score of the codes (the first default);
# - ``knnM_K``: distance of the standardised codes to the K-th nearest of a seeded sample
#   of M training rows' codes (a row of the sample skips itself); ``knnall_K`` uses every
#   row (does not scale; for reference). Sampling the reference follows Sugiyama and
#   Borgwardt (2013), "Rapid distance-based outlier detection via sampling": a small
#   reference both scales (it is broadcast) and keeps a cluster of anomalies smaller
#   than K reference rows from shielding itself;
# - ``kmC``: squared distance of the standardised codes to the nearest of C k-means centres.

_OUTPUTS_CACHE: Dict[tuple, List[tuple]] = {}


def pyod_widths(d: int, k: int) -> List[List[int]]:
    """PyOD AutoEncoder's layout ([64, 32] encoder, mirrored), narrowed to the width d,
    for each of ``k`` members (they differ by seed only)."""
    return [[min(64, max(2, d)), min(32, max(2, d // 2)), min(64, max(2, d))]] * k


def member_outputs(x: np.ndarray, k: int = 5, seed: int = 0, min_steps: int = 500,
                   how: str = "zscore", widths: str = "varied") -> List[tuple]:
    """(reconstruction MSE, standardised codes) of each of ``k`` members trained on ``x``
    (cached by the data's bytes: every scoring candidate reads the same members);
    ``widths``: "varied" (:func:`members`) or "pyod" (:func:`pyod_widths`)."""
    import hashlib

    key = (hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest(), x.shape, k, seed,
           min_steps, how, widths)
    if key not in _OUTPUTS_CACHE:
        xs = scale(x, how)
        out = []
        archs = members(x.shape[1], k, seed) if widths == "varied" else pyod_widths(
            x.shape[1], k)
        for i, hidden in enumerate(archs):
            fe, c = _train_codes(xs, hidden, epochs=10, seed=seed + i, min_steps=min_steps)
            sd = c.std(0)
            sd[sd == 0] = 1.0
            out.append((fe.mean(1), (c - c.mean(0)) / sd))
        if _OUTPUTS_CACHE and next(iter(_OUTPUTS_CACHE))[0] != key[0]:
            _OUTPUTS_CACHE.clear()       # one data set at a time
        _OUTPUTS_CACHE[key] = out
    return _OUTPUTS_CACHE[key]


def knn_reference(cz: np.ndarray, m: Optional[int], k: int, seed: int) -> np.ndarray:
    """Distance of every row of ``cz`` to its ``k``-th nearest row of a seeded sample of
    ``m`` rows (all rows when ``m`` is None); a sampled row skips itself."""
    from sklearn.neighbors import NearestNeighbors

    n = len(cz)
    idx = (np.arange(n) if m is None or m >= n else
           np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False)))
    nn = NearestNeighbors(n_neighbors=min(k + 1, len(idx)), algorithm="brute").fit(cz[idx])
    d, j = nn.kneighbors(cz)
    self_hit = idx[j[:, 0]] == np.arange(n)
    col = np.where(self_hit, min(k, d.shape[1] - 1), k - 1)
    return d[np.arange(n), col]


def term(name: str, err: np.ndarray, cz: np.ndarray, seed: int) -> np.ndarray:
    """One member's term ``name`` (see above), before the robust z-score."""
    from sklearn.cluster import KMeans

    if name == "rec":
        return err
    if name == "dist":
        return (cz ** 2).mean(1)
    if name.startswith("knn"):
        m, kk = name[3:].split("_")
        return knn_reference(cz, None if m == "all" else int(m), int(kk), seed)
    if name.startswith("km"):
        km = KMeans(int(name[2:]), n_init=1, random_state=seed).fit(cz)
        return km.transform(cz).min(1) ** 2
    raise ValueError(name)


def scored(terms: Sequence[str], combine: str = "mean", **kw) -> Callable[[np.ndarray],
                                                                          np.ndarray]:
    """A candidate: each member's score is the sum (``combine="max_terms"``: the largest)
    of the robust z-scores of ``terms``; the members are combined by ``combine`` (mean,
    median, or rank: mean of ranks; max_terms: mean)."""
    def run(x: np.ndarray) -> np.ndarray:
        per = []
        for i, (err, cz) in enumerate(member_outputs(x, **kw)):
            zs = [robust_z(term(t, err, cz, seed=i)) for t in terms]
            s = np.max(zs, 0) if combine == "max_terms" else sum(zs)
            per.append(np.argsort(np.argsort(s)) / len(s) if combine == "rank" else s)
        return np.median(per, 0) if combine == "median" else np.mean(per, 0)
    return run


METHODS.update({
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
    "w_rec": scored(["rec"], widths="pyod"),
    "w_rec_dist": scored(["rec", "dist"], widths="pyod"),
})


if __name__ == "__main__":
    raise SystemExit(main())
