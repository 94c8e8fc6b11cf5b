"""k-unit autoencoders vs k-component PCA (Spark MLlib) on MNIST: the chapter's Figure 19.2.

Both are fitted on the bundled 5,000-image sample scaled the same way (H2O's
(x - mean) / (max - min), constant pixels left out): PCA with
:func:`sparkae.baselines.pca`, the autoencoder with ``Autoencoder(hidden=[k], tanh, 10
epochs)``. For k in (2, 10, 50): the test reconstruction MSE of each (pixels in [0, 1],
:func:`bench.common.pixel_mse`; PCA reconstructs as mean + P P^T (x - mean) from the Spark
model's components) and the training MSE in the scaled space. For k = 2: how well each
2-D projection separates the digits, as the test accuracy of a 5-nearest-neighbour
classifier (scikit-learn) fitted on the training codings; and a chart of both projections
of the test set coloured by digit. For k in :data:`FLOOR_KS`: the k-plane floor, the least
test MSE of any reconstruction lying in one k-dimensional affine subspace
(:func:`bench.common.plane_floor`), below which no network with k units in its last hidden
layer and a linear output layer can reconstruct the test set.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Tuple

import numpy as np

from bench import common

TITLE = "vs PCA: reconstruction and 2-D projections (Figure 19.2)"
SMOKE = True
log = logging.getLogger("bench")


def _scaling(images: np.ndarray):
    from sparkae.nn.scaling import FeatureStats, compute_scaling

    x = images.astype(np.float64)
    return compute_scaling(FeatureStats(count=len(x), mean=x.mean(0), std=x.std(0, ddof=1),
                                        min=x.min(0), max=x.max(0)), "h2o", True)


def _pca_project(sc, pc: np.ndarray, images: np.ndarray) -> np.ndarray:
    z = (images[:, sc.keep].astype(np.float64) - sc.shift) * sc.scale
    return z @ pc


def _pca_reconstruct(sc, pc: np.ndarray, images: np.ndarray) -> np.ndarray:
    zr = _pca_project(sc, pc, images) @ pc.T
    out = np.tile(sc.fill.astype(np.float64), (len(images), 1))
    out[:, sc.keep] = zr / sc.scale + sc.shift
    return out


def knn_predict(train: np.ndarray, y_train: np.ndarray, test: np.ndarray,
                k: int = 5) -> Tuple[np.ndarray, str]:
    """Predictions of a k-nearest-neighbour classifier (scikit-learn's, else the same rule
    in NumPy: majority of the k nearest by Euclidean distance)."""
    try:
        from sklearn.neighbors import KNeighborsClassifier

        clf = KNeighborsClassifier(n_neighbors=k).fit(train, y_train)
        return clf.predict(test), "scikit-learn KNeighborsClassifier"
    except ImportError:
        preds = []
        for lo in range(0, len(test), 1000):
            d = ((test[lo:lo + 1000, None, :] - train[None, :, :]) ** 2).sum(-1)
            nn = np.argpartition(d, k, axis=1)[:, :k]
            preds.append([np.bincount(v, minlength=10).argmax() for v in y_train[nn]])
        return np.concatenate(preds), "NumPy 5-NN (no scikit-learn)"


def mcnemar_z(right_a: np.ndarray, right_b: np.ndarray) -> float:
    """Paired comparison of two classifiers on the same rows: (b - c) / sqrt(b + c), b = rows
    only A gets right, c = rows only B gets right; |z| > 1.96 is a difference at 5%."""
    b = int((right_a & ~right_b).sum())
    c = int((~right_a & right_b).sum())
    return 0.0 if b + c == 0 else (b - c) / float(np.sqrt(b + c))


#: Widths of the k-plane floor table (the last hidden widths of the H2O entries' networks).
FLOOR_KS = (2, 10, 50, 100, 300)


def run(quick: bool = False) -> Dict[str, Any]:
    from sparkae import baselines

    ks = (2,) if quick else (2, 10, 50)
    epochs = 2 if quick else 10
    common.set_torch_threads()
    x, y = common.sample_arrays()
    if quick:                     # 2,000 of the 5,000 rows (the sample is ordered by label)
        idx = np.sort(np.random.default_rng(0).permutation(len(x))[:2_000])
        x, y = x[idx], y[idx]
    test = common.test_arrays(limit=1_000 if quick else None)
    sc = _scaling(x)
    common.warm_up()
    df = common.to_df(x, y)
    test_df = common.to_df(test.images, test.labels)
    rows, res, proj = [], {}, {}
    for k in ks:
        t0 = time.perf_counter()
        p = baselines.pca(df, k)
        pca_s = time.perf_counter() - t0
        pc = p.model.pc.toArray()
        pca_test = common.pixel_mse(test.images, _pca_reconstruct(sc, pc, test.images))
        model, ae_s = common.fit_sparkae(df, [k], epochs=epochs)
        ae_test = common.pixel_mse(test.images, common.sparkae_reconstruction(
            model, test_df, len(test.images)))
        res[k] = {"pca_test_mse": pca_test, "ae_test_mse": ae_test,
                  "pca_train_mse_scaled": p.reconstruction_mse,
                  "ae_train_mse_scaled": model.summary.train_mse,
                  "pca_explained_variance": float(sum(p.explained_variance)),
                  "pca_fit_s": pca_s, "ae_fit_s": ae_s}
        rows.append([k, pca_test, ae_test, ae_test / pca_test, p.reconstruction_mse,
                     model.summary.train_mse, sum(p.explained_variance), pca_s, ae_s])
        if k == 2:
            proj["pca"] = (_pca_project(sc, pc, x), _pca_project(sc, pc, test.images))
            proj["ae"] = (common.sparkae_column(model, df, ["deep_features"], "deep_features"),
                          common.sparkae_column(model, test_df, ["deep_features"],
                                                "deep_features"))
    df.unpersist()
    test_df.unpersist()

    acc, right = {}, {}
    for name, (tr, te) in proj.items():
        pred, how = knn_predict(np.asarray(tr, np.float64), y, np.asarray(te, np.float64))
        right[name] = pred == test.labels
        acc[name] = float(right[name].mean())
    z = mcnemar_z(right["ae"], right["pca"])
    verdict = ("holds" if z > 1.96 else "does NOT hold (PCA's separate better)" if z < -1.96
               else "is not borne out: the two are indistinguishable")
    floors = common.plane_floor(test.images, FLOOR_KS)
    r = common.fmt
    pick = np.random.default_rng(0).permutation(len(test.images))[:3000]
    pick.sort()
    panels = []
    for name, title in (("pca", "PCA, 2 components"), ("ae", "Autoencoder, 2 tanh units")):
        te = np.asarray(proj[name][1], np.float64)[pick]
        panels.append({"title": f"{title} (5-NN accuracy {acc[name]:.3f})",
                       "x": [round(float(v), 4) for v in te[:, 0]],
                       "y": [round(float(v), 4) for v in te[:, 1]],
                       "c": [int(v) for v in test.labels[pick]]})
    lower = [k for k in ks if res[k]["ae_test_mse"] < res[k]["pca_test_mse"]]
    summary = (f"2-D projections: a 5-nearest-neighbour classifier on the test-set codings is "
               f"**{acc['ae']:.1%}** accurate on the autoencoder's and **{acc['pca']:.1%}** on "
               f"PCA's (paired McNemar z = {z:+.2f}): the chapter's claim (Figure 19.2) that the "
               f"autoencoder's 2-D codings separate the digits better {verdict} on this data "
               f"({len(x):,} training rows, {epochs} epochs). Reconstruction: the tanh "
               "autoencoder's test MSE is "
               + ("below PCA's at every k." if len(lower) == len(ks) else
                  f"below PCA's at k = {', '.join(map(str, lower))} only." if lower else
                  "above PCA's at every k (ratios in the table).")
               )
    targets = [{"name": "k = 2: autoencoder codings separate digits better than PCA's "
                        "(5-NN accuracy, paired test at 5%)",
                "value": f"{acc['ae']:.3f} vs {acc['pca']:.3f}, z = {z:+.2f}",
                "target": "z > 1.96", "met": bool(z > 1.96)}]
    return {
        "summary": summary, "targets": targets,
        "tables": [
            {"title": f"Reconstruction: k tanh units ({epochs} epochs) vs k principal "
                      f"components; test = {test.source}",
             "columns": ["k", "PCA test MSE", "AE test MSE", "AE / PCA", "PCA train MSE (scaled)",
                         "AE train MSE (scaled)", "PCA explained variance", "PCA fit s",
                         "AE fit s"],
             "rows": [[row[0]] + [r(v) for v in row[1:]] for row in rows]},
            {"title": "The k-plane floor: the least test MSE of any reconstruction lying in "
                      "one k-dimensional affine subspace",
             "columns": ["k", "floor (test set's own first k principal components)"],
             "rows": [[k, r(v)] for k, v in floors.items()],
             "caption": "A network whose last hidden layer has k units and whose output layer "
                        "is linear (sparkae's default) reconstructs every row in such a "
                        "subspace, so its test MSE never passes this floor "
                        "(`bench.common.plane_floor`); the H2O entries' MSE targets are "
                        "judged against it."},
            {"title": "k = 2: digit separation of the 2-D projections",
             "columns": ["projection", "5-NN test accuracy"],
             "rows": [["PCA", r(acc["pca"])], ["autoencoder", r(acc["ae"])]],
             "caption": f"{how}, 5 neighbours, fitted on the {len(x):,} training codings, "
                        f"scored on {len(test.images):,} test codings."}],
        "charts": [
            {"name": "projections", "kind": "scatter", "clabel": "digit",
             "title": "Test set projected to 2-D (3,000 points), coloured by digit",
             "panels": panels},
            {"name": "mse", "kind": "bar", "title": "Test reconstruction MSE vs k",
             "categories": [f"k = {k}" for k in ks],
             "series": {"PCA": [res[k]["pca_test_mse"] for k in ks],
                        "autoencoder": [res[k]["ae_test_mse"] for k in ks]},
             "ylabel": "MSE (pixels in [0, 1])"}],
        "knn_accuracy": {k: r(v) for k, v in acc.items()}, "mcnemar_z": r(z),
        "plane_floor": {str(k): r(v) for k, v in floors.items()},
        "per_k": {str(k): {n: r(v) for n, v in d.items()} for k, d in res.items()},
        "config": {"epochs": epochs, "train_rows": len(x), "test_set": test.source},
    }
