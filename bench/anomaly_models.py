"""Scaling, autoencoder training and the first-round candidates of the anomaly research.

Pure NumPy/Torch (no Spark), shared by :mod:`bench.anomaly_research` (the entry point and
its registry of candidates, :data:`bench.anomaly_research.METHODS`) and
:mod:`bench.anomaly_rules` (the second round's scoring rules):

- :func:`auroc`, :func:`scale` (h2o, z-score, clipped z-score, min-max, robust scaling),
  :func:`robust_z` and :func:`members` (the ensemble's varied architectures);
- autoencoder training: :func:`train_ae` (per-feature squared errors, optionally trimmed),
  :func:`retrain_ae` / :func:`train_ae_on` / :func:`train_score` (train on some rows,
  score all), :func:`train_codes` (errors and codes of the coding layer) and
  :func:`fit_mse` (their Adam loop);
- the first-round candidates: :func:`ensemble`, :func:`vae_rp` and
  :func:`ensemble_latent`.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np


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
    return train_score(xs_fit, xs_all, hidden, **kw)


def fit_mse(forward, params, xt, epochs, seed, batch, lr, min_steps):
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


def train_score(xfit, xall, hidden, epochs=10, seed=0, batch=64, lr=1e-3, min_steps=0, **_):
    """Train a tanh autoencoder on xfit; return the per-feature squared errors of xall."""
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
    fit_mse(net, list(net.parameters()), xt, epochs, seed, batch, lr, min_steps)
    with torch.no_grad():
        xa = torch.tensor(xall, dtype=torch.float32)
        return ((net(xa) - xa) ** 2).numpy()


def train_codes(xs, hidden, epochs=10, seed=0, batch=64, lr=1e-3, min_steps=0):
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
    fit_mse(lambda xb: g(e(xb)), list(e.parameters()) + list(g.parameters()), xt, epochs,
            seed, batch, lr, min_steps)
    with torch.no_grad():
        c = e(xt)
        return ((g(c) - xt) ** 2).numpy(), c.numpy()


# -- first-round candidates -----------------------------------------------------------------

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


def ensemble_latent(x, k=5, epochs=10, min_steps=0, seed=0, code_weight=1.0, how="zscore",
                    steps_by_member=None):
    """Each member: robust-z(reconstruction MSE) + code_weight * robust-z(squared
    standardised distance of the codes from their mean) (off- and along-manifold)."""
    xs = scale(x, how)
    out = []
    for i, hidden in enumerate(members(x.shape[1], k, seed)):
        steps = steps_by_member[i % len(steps_by_member)] if steps_by_member else min_steps
        fe, c = train_codes(xs, hidden, epochs=epochs, seed=seed + i, min_steps=steps)
        sd = c.std(0)
        sd[sd == 0] = 1.0
        dist = (((c - c.mean(0)) / sd) ** 2).mean(1)
        out.append(robust_z(fe.mean(1)) + code_weight * robust_z(dist))
    return np.mean(out, 0)
