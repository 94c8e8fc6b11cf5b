"""Helpers shared by the benchmark entries: machine and version facts, the Spark session,
data (the bundled sample, the MNIST test set, shifted digits as Parquet), the common
reconstruction-MSE code, and the sparkae / plain-Torch measurements several entries use.

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


def _git() -> Dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        return {"commit": head or None, "dirty": bool(dirty.strip())}
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


# -- plain Torch ---------------------------------------------------------------------------

def torch_network(images: np.ndarray, hidden: Sequence[int], seed: int = 123,
                  standardize: str = "h2o"):
    """sparkae's network class with the ``standardize`` scaling (default H2O's) computed
    from ``images`` in NumPy (the same :func:`sparkae.nn.scaling.compute_scaling`),
    untrained, seeded."""
    import torch

    from sparkae.nn.models import build_network
    from sparkae.nn.scaling import FeatureStats, compute_scaling

    x = images.astype(np.float64)
    stats = FeatureStats(count=len(x), mean=x.mean(0), std=x.std(0, ddof=1), min=x.min(0),
                         max=x.max(0))
    scaling = compute_scaling(stats, standardize, True)
    torch.manual_seed(seed)
    net = build_network({"input_size": x.shape[1], "kept": int(len(scaling.keep)),
                         "hidden": list(hidden), "activation": "tanh",
                         "output_activation": "linear"})
    net.scaler.set_statistics(**scaling.tensors())
    return net


def torch_train(images: np.ndarray, hidden: Sequence[int], epochs: int = 10,
                batch_size: int = 64, seed: int = 123, lr: float = 1e-3,
                standardize: str = "h2o") -> Dict[str, Any]:
    """A plain in-memory Torch loop: the same network, Adam, MSE in the scaled space,
    shuffled mini-batches; the rows are scaled once before the loop (not timed). Returns
    the trained net, seconds (loop only) and rows/s. In-process: the benchmarks run it in
    fresh processes under each thread count and OpenMP wait policy
    (:func:`fresh_process_runs`)."""
    import torch

    net = torch_network(images, hidden, seed, standardize)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x = torch.from_numpy(images.astype(np.float32))
    with torch.no_grad():
        z_all = net.scaler(x)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(z_all), generator=gen)
        for i in range(0, len(perm), batch_size):
            z = z_all[perm[i:i + batch_size]]
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((net.reconstruct(z) - z) ** 2)
            loss.backward()
            opt.step()
    secs = time.perf_counter() - t0
    net.eval()
    return {"net": net, "seconds": secs, "rows_per_s": len(images) * epochs / secs}


def torch_reconstruct(net, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Reconstruction (input units, full width) of ``images`` by a Torch net."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            z = net.scaler(torch.from_numpy(images[i:i + batch_size].astype(np.float32)))
            out.append(net.scaler.unscale(net.reconstruct(z)).numpy())
    return np.concatenate(out).astype(np.float64)


def torch_score_rate(net, images: np.ndarray, batch_size: int = 1024,
                     repeats: int = 1) -> float:
    """Rows/s of a plain Torch forward computing what ``transform`` computes by default
    (codings of the coding layer and the per-row reconstruction MSE), uint8 -> float32
    conversion included."""
    import torch

    from sparkae.nn.models import coding_layer

    layer = coding_layer(net.hidden)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(repeats):
            for i in range(0, len(images), batch_size):
                z = net.scaler(torch.from_numpy(images[i:i + batch_size].astype(np.float32)))
                acts = net.hidden_activations(z)
                codes = acts[layer - 1].numpy()
                mse = ((net.decode_from_last(acts[-1]) - z) ** 2).mean(dim=1).numpy()
    del codes, mse
    return len(images) * repeats / (time.perf_counter() - t0)


def train_gemm_gflops(batch: int, kept: int, hidden: int, threads: Optional[int] = None,
                      seconds: float = 2.0) -> float:
    """Measured float32 rate (GFLOP/s) of the matrix multiplies one training step of a
    ``kept -> hidden -> kept`` network makes on ``batch`` rows, as a plain ``torch.mm``
    loop at the same shapes and layouts: the two forward products, and the backward's
    output-layer input and weight gradients and first-layer weight gradient (the inputs
    need no gradient); 5 x 2 x batch x kept x hidden FLOP a step (:func:`train_gemm_flop`).
    The median of repeated timings over ``seconds`` on ``threads`` Torch threads (default:
    as set): on shared cores a best-of would compare the loop's average with a burst."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        z, w1 = torch.randn(batch, kept, generator=gen), torch.randn(hidden, kept, generator=gen)
        h, w2 = torch.randn(batch, hidden, generator=gen), torch.randn(kept, hidden, generator=gen)
        dy, dh = torch.randn(batch, kept, generator=gen), torch.randn(batch, hidden, generator=gen)

        def step() -> None:
            torch.mm(z, w1.t())          # first layer: batch x hidden
            torch.mm(h, w2.t())          # output layer: batch x kept
            torch.mm(dy, w2)             # gradient of the hidden activations
            torch.mm(dy.t(), h)          # output layer's weight gradient
            torch.mm(dh.t(), z)          # first layer's weight gradient
        for _ in range(3):
            step()
        flop = train_gemm_flop(batch, kept, hidden)
        reps = max(1, int(5e7 / flop))          # time blocks of about 0.05 GFLOP or more
        rates, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end or len(rates) < 3:
            t0 = time.perf_counter()
            for _ in range(reps):
                step()
            rates.append(flop * reps / (time.perf_counter() - t0))
        return float(np.median(rates)) / 1e9
    finally:
        torch.set_num_threads(old)


def train_gemm_flop(batch: int, kept: int, hidden: int) -> float:
    """FLOP of the matrix multiplies of one training step (see :func:`train_gemm_gflops`)."""
    return 5 * 2.0 * batch * kept * hidden


#: Configurations the plain Torch baselines run under, each in a fresh process (the
#: OpenMP wait policy is read once, when Torch loads): (OMP_WAIT_POLICY or "default" for
#: unset, Torch threads).
OMP_CONFIGS: List[Tuple[str, int]] = [("default", 1), ("default", 2), ("PASSIVE", 1),
                                      ("PASSIVE", 2)]


def fresh_process_runs(code: str, args: Sequence[str],
                       configs: Sequence[Tuple[str, int]] = tuple(OMP_CONFIGS),
                       timeout: float = 900, what: str = "plain Torch baseline"
                       ) -> Dict[str, Any]:
    """Run ``python -c code ROOT THREADS *args`` once per configuration of ``configs``,
    each in a fresh process with ``OMP_WAIT_POLICY`` set to the policy (unset for
    ``default``); the child sets its Torch threads from ``THREADS`` and prints one JSON
    value as its last line. Returns ``{"omp=POLICY threads=N": value}``; a configuration
    whose process fails is logged and left out.

    Raises
    ------
    RuntimeError
        Every configuration failed.
    """
    import subprocess
    import sys

    out: Dict[str, Any] = {}
    errors = []
    for policy, threads in configs:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(threads),
                               *map(str, args)], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            log.warning("%s omp=%s threads=%d failed: %s", what, policy, threads,
                        proc.stderr[-1000:])
            errors.append(proc.stderr[-300:])
            continue
        out[f"omp={policy} threads={threads}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out:
        raise RuntimeError(f"{what}: every configuration failed; last error: {errors[-1]}")
    return out


def matmul_gflops(n: int = 2048, threads: int = CORES, seconds: float = 2.0,
                  m: Optional[int] = None, k: Optional[int] = None) -> float:
    """Measured float32 matrix-multiply rate (GFLOP/s) of (m x k) @ (k x n) on ``threads``
    Torch threads (square n x n by default), best of repeated timings over ``seconds``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        m, k = m or n, k or n
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        for _ in range(3):
            torch.mm(a, b, out=c)
        flop = 2.0 * m * k * n
        reps = max(1, int(2e8 / flop))          # time blocks of about 0.2 GFLOP or more
        best, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=c)
            best = max(best, flop * reps / (time.perf_counter() - t0))
        return best / 1e9
    finally:
        torch.set_num_threads(old)


def fmt(v: Any, digits: int = 4) -> Any:
    """Round floats for JSON (significant digits), leave the rest."""
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return None
        return float(f"{v:.{digits}g}")
    return v


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
