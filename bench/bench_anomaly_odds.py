"""Anomaly detection on real ODDS sets: AnomalyDetector (defaults) against the chapter's
workflow and PyOD, on data none of its defaults were chosen on.

Issue 19's filer measured on a held-out set of the ODDS family (Outlier Detection
DataSets, Rayana 2016, https://odds.cs.stonybrook.edu); the development sets that ship in
packages (:mod:`sparkae.anomaly.datasets`) are not ODDS's. This entry runs the same systems
as :mod:`bench.bench_anomaly`, the same way (fit and score on all rows, unsupervised,
AnomalyDetector on the shared local[2] Spark session), on every ODDS set it finds in the
folder named by ``SPARKAE_ODDS_DIR``: a ``<name>.mat`` file as ODDS distributes it (MATLAB
v5 with ``X`` and ``y``; v7.3 files are HDF5 and not read) or a ``<name>.npz`` with ``X`` and
``y``. The sets are not redistributed with sparkae; the record keeps each file's SHA-256.

ODDS's ``shuttle`` is built from UCI's Statlog (Shuttle) data, training and test parts
together (58,000 rows, 9 features): class 1 is the inlier class, classes 2, 3, 5, 6 and 7
are the anomalies and class 4 is dropped (49,097 rows, 3,511 anomalies);
:func:`odds_shuttle` applies that recipe. Run only by name:
``SPARKAE_ODDS_DIR=/path python -m bench anomaly_odds``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from bench import common
from bench.bench_anomaly import SYSTEMS, measure_set, worst_set_gaps

TITLE = "Anomaly detection on ODDS sets: AnomalyDetector vs PyOD (sets no default was chosen on)"
IN_ALL = False
log = logging.getLogger("bench")

#: Sets larger than this many rows are left out of a quick run.
QUICK_MAX_ROWS = 2_000


def odds_shuttle(x: np.ndarray, label: np.ndarray) -> Dict[str, np.ndarray]:
    """ODDS's shuttle from Statlog (Shuttle) rows ``x`` (n x 9) and class labels 1..7:
    class 1 inliers, classes 2, 3, 5, 6, 7 anomalies, class 4 dropped."""
    label = np.asarray(label).ravel()
    keep = label != 4
    return {"X": np.asarray(x, dtype=np.float64)[keep], "y": (label[keep] != 1).astype(np.int8)}


def load_sets(folder: str) -> List[Dict[str, Any]]:
    """Every readable ODDS set in ``folder`` (``*.mat`` or ``*.npz`` with ``X`` and ``y``),
    sorted by name: ``{name, x, y, sha256, rows, columns, anomalies}``. A file that is not
    such a set is logged and left out."""
    from scipy.io import loadmat

    out = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix not in (".mat", ".npz"):
            continue
        try:
            raw = dict(np.load(path)) if path.suffix == ".npz" else loadmat(str(path))
            x = np.asarray(raw["X"], dtype=np.float64)
            y = np.asarray(raw["y"]).ravel().astype(bool)
        except Exception as exc:  # noqa: BLE001 - not an ODDS file: say which, go on
            log.warning("%s: not an ODDS set with X and y (%s); left out", path, exc)
            continue
        if x.ndim != 2 or len(x) != len(y) or not y.any() or y.all():
            log.warning("%s: X %s and y %s are not an anomaly set; left out", path, x.shape,
                        y.shape)
            continue
        out.append({"name": path.stem, "x": x, "y": y, "rows": int(x.shape[0]),
                    "columns": int(x.shape[1]), "anomalies": int(y.sum()),
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return out


def run(quick: bool = False) -> Dict[str, Any]:
    folder = os.environ.get("SPARKAE_ODDS_DIR", "")
    if not folder or not os.path.isdir(folder):
        raise common.Skip("SPARKAE_ODDS_DIR names no folder of ODDS sets (found "
                          f"{folder!r}); see the module's docstring for the files it reads")
    sets = [s for s in load_sets(folder) if not quick or s["rows"] <= QUICK_MAX_ROWS]
    if not sets:
        raise common.Skip(f"no ODDS set (.mat or .npz with X and y) in {folder}")
    r = common.fmt
    common.set_torch_threads()
    common.warm_up()
    systems = list(SYSTEMS)
    res: Dict[str, Dict[str, Dict[str, float]]] = {s: {} for s in systems}
    names = [s["name"] for s in sets]
    for data in sets:
        measure_set(data["name"], data["x"], data["y"], res)
    mean = {s: float(np.mean([res[s][d].get("auroc", np.nan) for d in names])) for s in systems}
    competitors = systems[1:]
    best = max(competitors, key=lambda s: mean[s])
    gaps = worst_set_gaps(res, systems, names)
    # the best competitor's AUROC minus AnomalyDetector's, per set (negative: ahead)
    behind = {d: max(res[s][d].get("auroc", 0) for s in competitors)
              - res["AnomalyDetector"][d].get("auroc", 0) for d in names}

    def cell(s: str, d: str, k: str) -> Any:
        return r(res[s][d].get(k)) if k in res[s][d] else "error"

    rows = [[d] + [cell(s, d, "auroc") for s in systems] + [r(behind[d])] for d in names]
    rows.append(["mean"] + [r(mean[s]) for s in systems] + [""])
    described = [[s["name"], s["rows"], s["columns"], s["anomalies"],
                  r(s["anomalies"] / s["rows"]), s["sha256"][:16]] for s in sets]
    within = sum(1 for d in names if behind[d] <= 0.01)
    summary = (f"On {len(names)} ODDS sets none of its defaults were chosen on, mean AUROC: "
               + ", ".join(f"{s} **{mean[s]:.3f}**" for s in systems)
               + f". AnomalyDetector is within 0.01 of the best competitor on {within} of "
               f"{len(names)} sets; its largest gap is {gaps['AnomalyDetector']['gap']:.3f} "
               f"({gaps['AnomalyDetector']['set']}).")
    return {
        "summary": summary,
        "targets": [{"name": "mean AUROC >= best competitor's mean (ODDS sets)",
                     "value": r(mean["AnomalyDetector"]), "target": f">= {r(mean[best])} ({best})",
                     "met": mean["AnomalyDetector"] >= mean[best]}],
        "tables": [
            {"title": "The ODDS sets read (SPARKAE_ODDS_DIR)",
             "columns": ["set", "rows", "columns", "anomalies", "share", "sha256 (first 16)"],
             "rows": described},
            {"title": "AUROC (fit and score on all rows, unsupervised)",
             "columns": ["set"] + systems + ["best competitor - AnomalyDetector"], "rows": rows},
            {"title": "AUPRC", "columns": ["set"] + systems,
             "rows": [[d] + [cell(s, d, "auprc") for s in systems] for d in names]},
            {"title": "fit + score seconds", "columns": ["set"] + systems,
             "rows": [[d] + [cell(s, d, "seconds") for s in systems] for d in names]}],
        "mean_auroc": {s: r(v) for s, v in mean.items()},
        "worst_set_gaps": {s: {"gap": r(g["gap"]), "set": g["set"]} for s, g in gaps.items()},
        "per_set": {s: {d: {k: r(v) for k, v in m.items()} for d, m in res[s].items()}
                    for s in systems},
    }
