"""Helpers shared by the benchmark entries: machine and version facts, the Spark session,
data (the bundled sample, the MNIST test set, shifted digits as Parquet), the common
reconstruction-MSE code, and the sparkae measurements several entries use (the plain-Torch
baselines are in :mod:`bench.torch_baselines`).

Nothing here prints; progress goes to the ``bench`` logger.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parents[1]
#: Default location of the official MNIST test set (IDX files), beside the checkout.
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
MNIST_ENV = "SPARKAE_MNIST_DIR"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
#: Cores the benchmarks use: Spark local[2], 2 Torch threads, H2O nthreads=2.
CORES = 2


class Skip(Exception):
    """Raised by an entry that cannot run here (a missing optional package); the harness
    records the entry as skipped with this message instead of failed."""


# -- facts about the run ------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> Dict[str, Any]:
    """Cores, memory, CPU model and OS of this machine."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": _cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
            "memory_gib": _mem_total_gib(), "os": platform.platform()}


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def _java_version() -> Optional[str]:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        return (out.stderr or out.stdout).splitlines()[0].strip()
    except Exception:  # noqa: BLE001 - no java
        return None


#: What a bench run itself rewrites (the report, README's generated blocks, the charts and
#: results): changes there leave the measured code as committed, so they do not make a
#: record "dirty".
GENERATED = ("README.md", "BENCHMARKS.md", "bench/results/", "bench/charts/")


def _git() -> Dict[str, Any]:
    given = os.environ.get("BENCH_GIT_COMMIT")
    if given:   # a copy of the files whose own git metadata is stale (bench/gpu_check.sh)
        return {"commit": given, "dirty": False, "given": True}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        changed = [line[3:] for line in dirty.splitlines() if line.strip()]
        return {"commit": head or None,
                "dirty": any(not p.startswith(GENERATED) for p in changed)}
    except Exception:  # noqa: BLE001 - not a checkout
        return {"commit": None, "dirty": None}


def versions() -> Dict[str, Any]:
    """Python, Java and the packages a benchmark may use (None where not installed)."""
    out: Dict[str, Any] = {"python": platform.python_version(), "java": _java_version()}
    for name in ("sparkae", "torch", "pyspark", "numpy", "pandas", "pyarrow", "h2o", "pyod",
                 "scikit-learn", "matplotlib"):
        out[name] = _version(name)
    out["git"] = _git()
    return out


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# -- Spark ---------------------------------------------------------------------------------

def spark():
    """The benchmark SparkSession: ``local[2]``, every service on 127.0.0.1 (created once;
    an entry that stops it gets a fresh one next time)."""
    from sparkae.session import get_session

    return get_session("local[2]", "sparkae-bench", {
        "spark.sql.shuffle.partitions": 2,
        "spark.driver.memory": "4g",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    })


def set_torch_threads(n: int = CORES) -> None:
    import torch

    torch.set_num_threads(n)


# -- data ----------------------------------------------------------------------------------

def sample_arrays() -> Tuple[np.ndarray, np.ndarray]:
    """The bundled 5,000-image sample: ``uint8 (5000, 784)`` pixels and labels."""
    from sparkae.datasets import load_mnist_arrays, mnist_sample_paths

    return load_mnist_arrays(*mnist_sample_paths())


def mnist_dir() -> Path:
    return Path(os.environ.get(MNIST_ENV) or DEFAULT_MNIST_DIR)


@dataclass
class TestSet:
    images: np.ndarray
    labels: np.ndarray
    source: str            # what the rows are (the official test set or a stand-in)
    official: bool


def test_arrays(limit: Optional[int] = None) -> TestSet:
    """The official MNIST test set from ``--mnist DIR`` / ``$SPARKAE_MNIST_DIR`` (default
    ``../shared/data/mnist``). Where it is missing, a stand-in: 10,000 shifted digits of the
    bundled sample (seed 2024), so that the harness still runs (results say so)."""
    from sparkae.datasets import load_mnist_arrays, shifted_digits

    d = mnist_dir()
    if (d / TEST_IMAGES).exists() and (d / TEST_LABELS).exists():
        x, y = load_mnist_arrays(d / TEST_IMAGES, d / TEST_LABELS)
        ts = TestSet(x, y, f"official MNIST test set ({d})", True)
    else:
        log.warning("the official MNIST test set is not at %s; using 10,000 shifted sample "
                    "digits instead", d)
        sx, sy = sample_arrays()
        x, idx = shifted_digits(sx, 10_000, max_shift=2, seed=2024, return_index=True)
        ts = TestSet(x, sy[idx], f"stand-in: 10,000 shifted sample digits (no MNIST at {d})",
                     False)
    if limit is not None and limit < len(ts.images):
        ts = TestSet(ts.images[:limit], ts.labels[:limit], ts.source + f", first {limit} rows",
                     ts.official)
    return ts


def to_df(images: np.ndarray, labels: np.ndarray, partitions: int = CORES, cache: bool = True):
    """A Spark DataFrame (id, features, label) of ``images``, cached and counted."""
    from sparkae.datasets import images_to_dataframe

    df = images_to_dataframe(spark(), images, labels, num_partitions=partitions)
    if cache:
        df = df.cache()
        df.count()
    return df


def write_digits_parquet(directory: str, images: np.ndarray, labels: np.ndarray,
                         start_id: int = 0, part: int = 0) -> None:
    """Write images as one Parquet file of (id, features, label) in Spark's vector layout
    (sparse vectors, straight from NumPy through Arrow; Spark reads ``features`` back as a
    vector column). Used for tables too large to pass through the driver as Python rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    n, width = images.shape
    schema = T.StructType([T.StructField("id", T.LongType(), False),
                           T.StructField("features", VectorUDT(), True),
                           T.StructField("label", T.IntegerType(), False)])
    meta = {b"org.apache.spark.sql.parquet.row.metadata": schema.json().encode()}
    rows, cols = np.nonzero(images)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32)
    idx_t = pa.list_(pa.field("element", pa.int32(), False))
    val_t = pa.list_(pa.field("element", pa.float64(), False))
    vec = pa.StructArray.from_arrays(
        [pa.array(np.zeros(n, np.int8)), pa.array(np.full(n, width, np.int32)),
         pa.ListArray.from_arrays(pa.array(offsets), pa.array(cols.astype(np.int32)),
                                  type=idx_t),
         pa.ListArray.from_arrays(pa.array(offsets),
                                  pa.array(images[rows, cols].astype(np.float64)), type=val_t)],
        fields=[pa.field("type", pa.int8(), False), pa.field("size", pa.int32()),
                pa.field("indices", idx_t), pa.field("values", val_t)])
    table = pa.table({"id": pa.array(np.arange(start_id, start_id + n, dtype=np.int64)),
                      "features": vec,
                      "label": pa.array(np.asarray(labels, dtype=np.int32))}
                     ).replace_schema_metadata(meta)
    os.makedirs(directory, exist_ok=True)
    pq.write_table(table, os.path.join(directory, f"part-{part:05d}.parquet"),
                   row_group_size=25_000)


def shifted_parquet(directory: str, n: int, seed: int = 0, chunk: int = 100_000) -> str:
    """``n`` bundled digits with random shifts of up to 2 pixels
    (:func:`sparkae.datasets.shifted_digits`), written as Parquet in chunks; returns the
    directory."""
    from sparkae.datasets import shifted_digits

    sx, sy = sample_arrays()
    for part, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        x, idx = shifted_digits(sx, m, max_shift=2, seed=seed + part, return_index=True)
        write_digits_parquet(directory, x, sy[idx], start_id=start, part=part)
    return directory


# -- the one reconstruction-MSE code ---------------------------------------------------------

def plane_floor(images: np.ndarray, ks: Sequence[int]) -> Dict[int, float]:
    """For each k, the least :func:`pixel_mse` of any reconstruction of ``images`` whose
    rows all lie in one k-dimensional affine subspace: the images' own first k principal
    components (Eckart-Young). A network whose last hidden layer has k units and whose
    output layer is linear (sparkae's default) reconstructs every row in such a subspace
    (scaling and unscaling are affine per feature), so its test MSE is never below this."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    ev = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    return {int(k): float(ev[int(k):].sum() / x.size) for k in ks}


def pixel_mse(images: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean over rows and all pixels of the squared error with pixels scaled to [0, 1]
    (both arguments in the input's units, 0-255). Every system's test MSE uses this."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    r = np.asarray(reconstruction, dtype=np.float64) / 255.0
    if x.shape != r.shape:
        raise ValueError(f"reconstruction shape {r.shape} != input shape {x.shape}")
    return float(((r - x) ** 2).mean())


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    import pandas as pd

    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# -- sparkae measurements ------------------------------------------------------------------

def timed(fn: Callable[[], Any]) -> Tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fit_sparkae(df, hidden: Sequence[int], epochs: int = 10, seed: int = 123,
                **params: Any) -> Tuple[Any, float]:
    """Fit ``Autoencoder(hidden, tanh, epochs, seed, **params)`` on ``df``; return the model
    and the wall time of ``fit`` (scaling statistics, materialization and training)."""
    from sparkae import Autoencoder

    ae = Autoencoder(hidden=list(hidden), activation="tanh", epochs=epochs, seed=seed, **params)
    model, secs = timed(lambda: ae.fit(df))
    log.info("sparkae %s: fit in %.1f s (train MSE %.5f)", list(hidden), secs,
             model.summary.train_mse)
    return model, secs


_WARMED: Dict[str, float] = {}


def warm_up() -> float:
    """One tiny fit and transform, so that the first timed fit does not pay for starting
    Python workers and JIT-compiling Spark's code paths; returns its seconds (once per
    Spark application: later calls return the first one's time)."""
    app = spark().sparkContext.applicationId
    if app in _WARMED:
        return _WARMED[app]
    x, y = sample_arrays()
    df = to_df(x[:400], y[:400])
    t0 = time.perf_counter()
    model, _ = fit_sparkae(df, [10], epochs=1)
    model.transform(df).write.format("noop").mode("overwrite").save()
    df.unpersist()
    _WARMED[app] = time.perf_counter() - t0
    return _WARMED[app]


def sparkae_reconstruction(model, df, n: int) -> np.ndarray:
    """``model``'s reconstruction of ``df`` (rows ordered by ``id``) as a float array."""
    model.set(model.outputs, ["reconstruction"])
    try:
        pdf = model.transform(df).select("id", "reconstruction").toPandas()
    finally:
        model.set(model.outputs, ["deep_features", "reconstruction_mse"])
    pdf = pdf.sort_values("id")
    out = np.stack(pdf["reconstruction"].to_numpy()).astype(np.float64)
    if len(out) != n:
        raise RuntimeError(f"expected {n} reconstructed rows, got {len(out)}")
    return out


def sparkae_column(model, df, outputs: List[str], column: str) -> np.ndarray:
    """One output column of ``model`` over ``df``, ordered by ``id``, as a NumPy array."""
    model.set(model.outputs, outputs)
    try:
        pdf = model.transform(df).select("id", column).toPandas().sort_values("id")
    finally:
        model.set(model.outputs, ["deep_features", "reconstruction_mse"])
    values = pdf[column].to_numpy()
    return np.stack(values) if values.dtype == object else values


def score_to_noop(model, df, outputs: Optional[List[str]] = None) -> float:
    """Seconds to score ``df`` into Spark's ``noop`` sink (every row computed, none kept)."""
    if outputs:
        scored = model.score(df, outputs)
    else:
        scored = model.transform(df)
    _, secs = timed(lambda: scored.write.format("noop").mode("overwrite").save())
    return secs


def weights(hidden: Sequence[int], kept: int) -> int:
    """Weights of a dense autoencoder (kept -> hidden... -> kept), biases excluded: the
    multiply-adds per row of a forward pass."""
    sizes = [kept] + list(hidden) + [kept]
    return int(sum(a * b for a, b in zip(sizes[:-1], sizes[1:])))


def fmt(v: Any, digits: int = 4) -> Any:
    """Round floats for JSON (significant digits), leave the rest."""
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return None
        return float(f"{v:.{digits}g}")
    return v


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
