"""Scoring against what users would write themselves, on four inputs, in one run.

Used by :mod:`bench.bench_scoring`. The same rows (shifted digits, 784 pixels) are written
as three Parquet layouts -- ``array`` (``array<float>``), ``dense`` and ``sparse`` (Spark
vectors) -- and also scored from a ``cached`` DataFrame (the sparse table, cached). On
each, into Spark's ``noop`` sink after a warm-up, with the same network and outputs
(``deep_features`` + ``reconstruction_mse``):

- ``sparkae``: ``model.score(df, outputs)`` (what ``transform`` runs);
- ``predict_batch_udf``: :func:`pyspark.ml.functions.predict_batch_udf` with the network
  rebuilt once per worker (1 Torch thread per task, ``torch.no_grad``), vectors turned
  into ``array<float>`` by :func:`pyspark.ml.functions.vector_to_array` first (with
  :data:`COLUMNAR_CONF` off for vector input: Spark 4's pandas UDFs fail with
  "Unsupported data type UDT" on a table holding a vector column otherwise);
- both again with only ``id`` kept beside the scores (``ids_only``): transform keeps every
  column, so the 784-wide input column crosses back from Python to the JVM, whose
  row conversion (an element-by-element copy of each array, with a null check per
  element) costs it about as much CPU as the Python workers' whole scoring;
- for the Parquet layouts, the nightly job (:func:`sparkae.jobs.score_job.run_score`,
  ``id`` + outputs into a Parquet date partition) against ``predict_batch_udf`` writing
  the same columns as Parquet;
- the time split of the Spark path: Parquet read alone, the input column crossing to a
  Python worker that returns nothing (JVM -> Arrow), and made-up outputs of the same
  shape crossing back (Arrow -> JVM).

Spark measurements are interleaved with their baseline's and repeated :data:`REPEATS`
times; the best run of each counts (the machine may be shared). The plain in-memory
Torch forward runs in fresh processes for every configuration --
1 and 2 threads, OpenMP wait policy unset (libgomp's default) and PASSIVE, batches of 256,
1,024 and 4,096 rows -- and the best one counts (:func:`torch_best`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from bench.torch_baselines import OMP_CONFIGS, fresh_process_runs

log = logging.getLogger("bench")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUTS = ("array", "dense", "sparse")
OUTPUTS = ["deep_features", "reconstruction_mse"]
#: Configurations of the plain Torch forward: (OMP_WAIT_POLICY or "default", threads).
TORCH_ENVS = OMP_CONFIGS
TORCH_BATCHES = (256, 1024, 4096)
#: Runs of each Spark measurement (interleaved with its baseline's); the best counts.
REPEATS = 2
#: Spark 4's columnar input of Arrow UDFs, which rejects tables holding a vector column.
COLUMNAR_CONF = "spark.sql.execution.arrow.pythonUDF.columnarInput.enabled"


def write_rows(directory: str, x: np.ndarray, start: int, part: int, layout: str) -> None:
    """Write rows ``x`` (uint8, n x width) as one Parquet file of ``(id, features)``;
    ``features`` is ``array<float>`` (``array``) or a Spark vector (``dense``, ``sparse``),
    written straight from NumPy through Arrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    m, width = x.shape
    ids = pa.array(np.arange(start, start + m, dtype=np.int64))
    if layout == "array":
        flat = pa.array(x.astype(np.float32).reshape(-1))
        offsets = pa.array(np.arange(0, (m + 1) * width, width, dtype=np.int32))
        table = pa.table({"id": ids, "features": pa.ListArray.from_arrays(offsets, flat)})
    else:
        idx_t = pa.list_(pa.field("element", pa.int32(), False))
        val_t = pa.list_(pa.field("element", pa.float64(), False))
        if layout == "sparse":
            rows, cols = np.nonzero(x)
            counts = np.bincount(rows, minlength=m)
            values = x[rows, cols].astype(np.float64)
            indices = pa.ListArray.from_arrays(
                pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)),
                pa.array(cols.astype(np.int32)), type=idx_t)
            kind, sizes = np.zeros(m, np.int8), pa.array(np.full(m, width, np.int32))
        else:
            counts, values = np.full(m, width), x.astype(np.float64).reshape(-1)
            indices = pa.nulls(m, idx_t)
            kind, sizes = np.ones(m, np.int8), pa.nulls(m, pa.int32())
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        vec = pa.StructArray.from_arrays(
            [pa.array(kind), sizes, indices,
             pa.ListArray.from_arrays(offsets, pa.array(values), type=val_t)],
            fields=[pa.field("type", pa.int8(), False), pa.field("size", pa.int32()),
                    pa.field("indices", idx_t), pa.field("values", val_t)])
        schema = T.StructType([T.StructField("id", T.LongType(), False),
                               T.StructField("features", VectorUDT(), True)])
        meta = {b"org.apache.spark.sql.parquet.row.metadata": schema.json().encode()}
        table = pa.table({"id": ids, "features": vec}).replace_schema_metadata(meta)
    os.makedirs(directory, exist_ok=True)
    pq.write_table(table, os.path.join(directory, f"part-{part:05d}.parquet"),
                   row_group_size=25_000)


def digits(n: int, seed: int) -> np.ndarray:
    """``n`` shifted digits of the bundled sample (uint8, n x 784)."""
    from sparkae.datasets import load_mnist_arrays, mnist_sample_paths, shifted_digits

    images, _ = load_mnist_arrays(*mnist_sample_paths())
    return shifted_digits(images, n, seed=seed)


def write_layouts(base: str, n: int, seed: int, chunk: int = 50_000) -> Dict[str, str]:
    """The same ``n`` rows in every layout of :data:`LAYOUTS`; returns layout -> path."""
    paths = {lay: os.path.join(base, lay) for lay in LAYOUTS}
    for part, start in enumerate(range(0, n, chunk)):
        x = digits(min(chunk, n - start), seed + part)
        for lay in LAYOUTS:
            write_rows(paths[lay], x, start, part, lay)
    return paths


def with_kind(model, kind: str):
    """``model`` with its input declared as ``kind`` (``vector`` or ``array``)."""
    from sparkae.data.prepare import InputInfo
    from sparkae.estimator import AutoencoderModel

    info = model.input_info
    return AutoencoderModel._create(model._spec, model._state,
                                    InputInfo(kind, info.column, [], info.size),
                                    model.summary, threshold=model.threshold)


def predict_udf(payload: bytes, batch_size: int = 1024):
    """A ``predict_batch_udf`` computing ``deep_features`` + ``reconstruction_mse`` with the
    network of ``payload`` (rebuilt once per worker, 1 Torch thread)."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import types as T

    def make_predict_fn():
        import torch

        from sparkae.scoring import unpack

        torch.set_num_threads(1)
        net = unpack(payload)

        def predict(x: np.ndarray) -> Dict[str, np.ndarray]:
            with torch.inference_mode():   # the errors in place, as sparkae computes them
                z = net.scaler(torch.from_numpy(x))
                acts = net.hidden_activations(z)
                mse = net.decode_from_last(acts[-1]).sub_(z).square_().mean(dim=1).double()
            return {"deep_features": acts[0].numpy(), "reconstruction_mse": mse.numpy()}
        return predict

    schema = T.StructType([T.StructField("deep_features", T.ArrayType(T.FloatType())),
                           T.StructField("reconstruction_mse", T.DoubleType())])
    return predict_batch_udf(make_predict_fn, return_type=schema, batch_size=batch_size,
                             input_tensor_shapes=[[784]])


def pbu_scored(df, udf, layout: str):
    """``df`` with ``deep_features`` and ``reconstruction_mse`` from ``udf``."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    col = F.col("features") if layout == "array" else vector_to_array("features", "float32")
    scored = df.select(*df.columns, col.alias("__x")).withColumn("__s", udf("__x"))
    return scored.select(*df.columns, "__s.deep_features", "__s.reconstruction_mse")


def noop_rate(df, n: int, columnar: bool = True) -> Dict[str, Any]:
    """Rows/s of writing ``df`` into the ``noop`` sink (with :data:`COLUMNAR_CONF` set to
    ``columnar`` meanwhile)."""
    return _timed(lambda: df.write.format("noop").mode("overwrite").save(), df, n, columnar)


def _timed(write, df, n: int, columnar: bool) -> Dict[str, Any]:
    conf = df.sparkSession.conf
    before = conf.get(COLUMNAR_CONF, None)
    conf.set(COLUMNAR_CONF, str(columnar).lower())
    try:
        t0 = time.perf_counter()
        write()
        secs = time.perf_counter() - t0
    finally:
        conf.unset(COLUMNAR_CONF) if before is None else conf.set(COLUMNAR_CONF, before)
    return {"rows": n, "seconds": round(secs, 3), "rows_per_s": round(n / secs)}


def split_rates(spark, path: str, n: int) -> Dict[str, Any]:
    """Where the Spark path's time goes: the Parquet read alone, the input crossing to
    Python (which returns nothing), and outputs of the real shape crossing back."""
    import pyarrow as pa
    from pyspark.sql import types as T

    df = spark.read.parquet(path)

    def swallow(batches):
        for b in batches:
            yield pa.RecordBatch.from_arrays([pa.array([b.num_rows], pa.int64())], ["n"])

    def emit(batches):
        for b in batches:
            m = b.num_rows
            feats = pa.ListArray.from_arrays(
                pa.array(np.arange(0, (m + 1) * 100, 100, dtype=np.int32)),
                pa.array(np.ones(m * 100, np.float32)))
            yield pa.RecordBatch.from_arrays(
                [b.column(0), feats, pa.array(np.ones(m))],
                ["id", "deep_features", "reconstruction_mse"])

    out = T.StructType([T.StructField("id", T.LongType()),
                        T.StructField("deep_features", T.ArrayType(T.FloatType())),
                        T.StructField("reconstruction_mse", T.DoubleType())])
    return {"parquet_read": noop_rate(df, n),
            "jvm_to_python": noop_rate(df.select("features").mapInArrow(swallow, "n long"), n),
            "python_to_jvm": noop_rate(df.select("id").mapInArrow(emit, out), n)}


_TORCH_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from bench.scoring_compare import digits
from sparkae.scoring import unpack
net = unpack(open(sys.argv[3], "rb").read())
x8 = digits(int(sys.argv[4]), int(sys.argv[6]))
out = {}
for batch in [int(b) for b in sys.argv[5].split(",")]:
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(x8), batch):
                z = net.scaler(torch.from_numpy(x8[i:i + batch].astype(np.float32)))
                acts = net.hidden_activations(z)
                codes = acts[0].numpy()
                mse = net.decode_from_last(acts[-1]).sub_(z).square_().mean(dim=1).numpy()
        best = max(best, len(x8) / (time.perf_counter() - t0))
    out[batch] = round(best)
print(json.dumps(out))
"""


def torch_best(payload: bytes, n: int, batches: Sequence[int] = TORCH_BATCHES,
               seed: int = 11, quick: bool = False) -> Tuple[int, Dict[str, Any]]:
    """Rows/s of the plain forward (codings + per-row MSE, uint8 -> float32 included) over
    ``n`` shifted digits (``seed``) in its best configuration, and every configuration's
    rows/s (fresh processes, one per wait policy and thread count; ``quick``: only the
    default policy on 2 threads, for smoke runs, whose figures are never published)."""
    by_config: Dict[str, Any] = {}
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        f.write(payload)
    try:
        runs = fresh_process_runs(_TORCH_CHILD, [f.name, n, ",".join(map(str, batches)), seed],
                                  TORCH_ENVS[1:2] if quick else TORCH_ENVS,
                                  what="plain Torch forward")
        for config, rates in runs.items():
            for batch, rate in rates.items():
                by_config[f"{config} batch={batch}"] = rate
    finally:
        os.unlink(f.name)
    best = max(by_config, key=by_config.get)
    return by_config[best], {"best": best, "rows_per_s": by_config}


def job_rate(spark, model_dir: str, path: str, out: str, n: int) -> Dict[str, Any]:
    """Rows/s of the nightly job (``run_score``: id + outputs into a Parquet date
    partition), wall time of the call."""
    from sparkae.jobs import score_job, score_settings

    settings = score_settings.load(None, [], {
        "model": model_dir, "input": path, "output": out, "id_cols": "id",
        "outputs": ",".join(OUTPUTS), "run_date": "2026-01-01"})
    t0 = time.perf_counter()
    summary = score_job.run_score(spark, settings)
    secs = time.perf_counter() - t0
    return {"rows": n, "seconds": round(secs, 3), "rows_per_s": round(n / secs),
            "reader": summary["reader"], "writer": summary.get("writer", "spark")}


def parquet_rate(df, out: str, n: int, columnar: bool = True) -> Dict[str, Any]:
    """Rows/s of writing ``df`` as Parquet to ``out``."""
    return _timed(lambda: df.write.mode("overwrite").parquet(out), df, n, columnar)


def _interleaved(ours: Callable[[], Dict[str, Any]], theirs: Callable[[], Dict[str, Any]]
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The best run (rows/s) of each side, run interleaved :data:`REPEATS` times: on shared
    cores the load changes from run to run."""
    runs = [(ours(), theirs()) for _ in range(REPEATS)]
    best = [max((r[i] for r in runs), key=lambda r: r["rows_per_s"]) for i in (0, 1)]
    return best[0], best[1]


def compare(spark, model, work: str, n: int) -> Dict[str, Any]:
    """Every measurement of this module on ``n`` rows (see the module's docstring)."""
    from sparkae.scoring import pack

    paths = write_layouts(os.path.join(work, "cmp"), n, seed=11)
    warm = write_layouts(os.path.join(work, "cmp-warm"), 4_000, seed=99, chunk=1_000)
    payload = pack(model._spec, model._state)
    udf = predict_udf(payload)
    models = {"vector": with_kind(model, "vector"), "array": with_kind(model, "array")}
    res: Dict[str, Any] = {"rows": n, "sparkae": {}, "predict_batch_udf": {}, "job": {},
                           "predict_batch_udf_to_parquet": {}, "split": {},
                           "ids_only": {"sparkae": {}, "predict_batch_udf": {}}}
    inputs: List[Tuple[str, str, Any]] = []
    for lay in LAYOUTS:
        inputs.append((lay, lay, spark.read.parquet(paths[lay])))
    cached = spark.read.parquet(paths["sparse"]).cache()
    cached.count()
    inputs.append(("cached", "sparse", cached))
    for name, lay, df in inputs:
        m = models["array" if lay == "array" else "vector"]
        wdf = spark.read.parquet(warm[lay])
        noop_rate(m.score(wdf, OUTPUTS), 4_000)               # warm both paths' workers
        noop_rate(pbu_scored(wdf, udf, lay), 4_000, lay == "array")
        res["sparkae"][name], res["predict_batch_udf"][name] = _interleaved(
            lambda: noop_rate(m.score(df, OUTPUTS), n),
            lambda: noop_rate(pbu_scored(df, udf, lay), n, lay == "array"))
        log.info("scoring %s: sparkae %s, predict_batch_udf %s", name,
                 res["sparkae"][name]["rows_per_s"], res["predict_batch_udf"][name]["rows_per_s"])
        # the same with only ``id`` kept beside the scores: the 784-wide input column does
        # not travel back to the JVM (transform keeps every column; a job keeps its ids)
        ids = res["ids_only"]
        ids["sparkae"][name], ids["predict_batch_udf"][name] = _interleaved(
            lambda: noop_rate(m.score(df, OUTPUTS, carry=["id"]), n),
            lambda: noop_rate(pbu_scored(df, udf, lay).select("id", *OUTPUTS), n,
                              lay == "array"))
        log.info("scoring %s, id + scores only: sparkae %s, predict_batch_udf %s", name,
                 ids["sparkae"][name]["rows_per_s"], ids["predict_batch_udf"][name]["rows_per_s"])
    cached.unpersist()
    for lay in LAYOUTS:
        m = models["array" if lay == "array" else "vector"]
        mdir = os.path.join(work, f"model-{lay}")
        m.write().overwrite().save(mdir)
        job_rate(spark, mdir, warm[lay], os.path.join(work, f"jobw-{lay}"), 4_000)
        df = spark.read.parquet(paths[lay])
        res["job"][lay], res["predict_batch_udf_to_parquet"][lay] = _interleaved(
            lambda: job_rate(spark, mdir, paths[lay], os.path.join(work, f"job-{lay}"), n),
            lambda: parquet_rate(pbu_scored(df, udf, lay).select("id", *OUTPUTS),
                                 os.path.join(work, f"pbu-{lay}"), n, lay == "array"))
        res["split"][lay] = split_rates(spark, paths[lay], n)
    return res
