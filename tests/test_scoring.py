"""Scoring: Arrow decoding, the one-pass forward, every output, sparse input, schema checks,
the bounded caches of payloads and networks, and the package's import rules."""

from __future__ import annotations

import ast
import contextlib
import io
import itertools
import os

import numpy as np
import pyarrow as pa
import pytest
import pyarrow.parquet as pq
import torch
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from sparkae import Autoencoder, AutoencoderModel, scoring
from sparkae.data import arrow_rows
from sparkae.data.prepare import InputInfo
from sparkae.data.vectors import decode_vectors
from sparkae.scoring import broadcasts, faults, worker
from sparkae.scoring.broadcasts import PayloadSource
from sparkae.data.batches import to_device
from sparkae.scoring.forward import Scorer, scatter_block
from sparkae.nn.models import build_network
from sparkae.train.summary import TrainingSummary
from tests.conftest import scoring_net, sparse_block, sparse_rows, vec_array

ALL = ["deep_features", "reconstruction_mse", "feature_errors", "reconstruction", "is_anomaly"]
COMBOS = [list(c) for n in range(1, 6) for c in itertools.combinations(ALL, n)]
THRESHOLD = 0.05


@pytest.fixture(scope="module")
def fitted(small_dense):
    """A stacked [8, 3, 8] model trained briefly once for the module."""
    x, df = small_dense
    model = Autoencoder(features_col="vec", hidden=[8, 3, 8], epochs=2, mini_batch_size=32,
                        seed=5).fit(df)
    return x, df, model


def reference(model, x, layer, threshold=THRESHOLD):
    """The same rows through a local Torch copy of the network, written out longhand."""
    net = model.network()
    with torch.no_grad():
        z = net.scaler(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        acts = net.hidden_activations(z)
        y = net.decode_from_last(acts[-1])
        err = (y - z) ** 2
        mse = err.mean(dim=1).double().numpy()
        return {"deep_features": acts[layer - 1].numpy(), "reconstruction_mse": mse,
                "feature_errors": err.numpy(), "reconstruction": net.scaler.unscale(y).numpy(),
                "is_anomaly": mse > threshold}


def collect(scored, outputs, key="id"):
    pdf = scored.toPandas().sort_values(key)
    got = {}
    for o in outputs:
        col = pdf[o].to_numpy()
        got[o] = col.astype(col[0].dtype) if o in ("reconstruction_mse", "is_anomaly") \
            else np.stack(col)
    return got


def assert_close(got, ref):
    for o, v in got.items():
        if o == "is_anomaly":
            np.testing.assert_array_equal(v, ref[o])
        else:
            np.testing.assert_allclose(v, ref[o], rtol=1e-5, atol=1e-5, err_msg=o)


# -- Arrow decoding (no Spark) ---------------------------------------------------------------

def test_decode_vectors_mixed_sparse_dense_null_and_sliced():
    col = vec_array([("s", 4, [1, 3], [1.0, 2.0]), None, ("d", [1.0, 0.0, 3.0, 4.0]),
                     ("s", 4, [], [])])
    block = arrow_rows.decode_rows(col, 4)
    assert block.status.tolist() == [0, 1, 0, 0]
    np.testing.assert_array_equal(block.to_dense(), [[0, 1, 0, 2], [1, 0, 3, 4], [0, 0, 0, 0]])
    part = arrow_rows.decode_rows(col.slice(1, 2), 4)  # an offset into the buffers
    assert part.status.tolist() == [1, 0]
    np.testing.assert_array_equal(part.to_dense(), [[1, 0, 3, 4]])
    np.testing.assert_array_equal(block.to_dense(1, 2), [[1, 0, 3, 4]])


def test_decode_dense_vectors_only_with_nulls_missing_and_infinite_values():
    """A batch of dense vectors alone is decoded as rows, with the statuses of lists."""
    col = vec_array([("d", [1.0, 2.0]), None, ("d", [np.nan, 1.0]), ("d", [np.inf, 0.0])])
    block = arrow_rows.decode_rows(col, 2)
    assert block.status.tolist() == [0, 1, 0, 2]
    np.testing.assert_array_equal(block.to_dense(), np.array([[1, 2], [np.nan, 1]], np.float32))
    skip = arrow_rows.decode_rows(col, 2, skip_missing=True)
    assert skip.status.tolist() == [0, 1, 3, 2]
    np.testing.assert_array_equal(skip.to_dense(), [[1, 2]])
    with pytest.raises(ValueError, match="a row has 3 features where the model expects 2"):
        arrow_rows.decode_rows(vec_array([("d", [1.0, 2.0]), ("d", [1.0, 2.0, 3.0])]), 2)


def test_decode_lists_and_missing_infinite_values():
    col = pa.array([[1.0, 2.0], None, [np.nan, 1.0], [np.inf, 0.0], [3.0, None]],
                   type=pa.list_(pa.float64()))
    block = arrow_rows.decode_rows(col, 2)
    assert block.status.tolist() == [0, 1, 0, 2, 0]     # NaN / null values: imputed
    assert block.rows == 3 and np.isnan(block.dense[1, 0]) and np.isnan(block.dense[2, 1])
    skip = arrow_rows.decode_rows(col, 2, skip_missing=True)
    assert skip.status.tolist() == [0, 1, 3, 2, 3]
    np.testing.assert_array_equal(skip.dense, [[1.0, 2.0]])
    vec = arrow_rows.decode_rows(vec_array([("s", 3, [0], [np.nan]), ("d", [1.0, np.inf, 0.0]),
                                            ("s", 3, [2], [5.0])]), 3, skip_missing=True)
    assert vec.status.tolist() == [3, 2, 0]
    np.testing.assert_array_equal(vec.to_dense(), [[0, 0, 5]])


def test_decode_rejects_other_widths_and_bad_indices():
    with pytest.raises(ValueError, match="a row has 3 features where the model expects 4"):
        arrow_rows.decode_rows(vec_array([("d", [1.0, 2.0, 3.0])]), 4)
    with pytest.raises(ValueError, match="a row has 5 features where the model expects 4"):
        arrow_rows.decode_rows(vec_array([("s", 5, [0], [1.0])]), 4)
    with pytest.raises(ValueError, match="a row has 1 features where the model expects 2"):
        arrow_rows.decode_rows(pa.array([[1.0]]), 2)
    with pytest.raises(ValueError, match=r"an index outside \[0, 4\)"):
        arrow_rows.decode_rows(vec_array([("s", 4, [7], [1.0])]), 4)
    # a sparse vector written by hand with more indices than values, alone and beside a
    # dense row (Spark never writes one)
    for rows in ([("s", 4, [0, 2], [1.0])], [("d", [1.0] * 4), ("s", 4, [0, 2], [1.0])]):
        with pytest.raises(ValueError, match="scoring input: sparse vectors hold 2 indices "
                                             "for 1 values"):
            arrow_rows.decode_rows(vec_array(rows), 4)
        with pytest.raises(ValueError, match="features: sparse vectors hold 2 indices"):
            decode_vectors(vec_array(rows), 4)


def test_encode_outputs_with_nulls():
    ok = np.array([True, False, True])
    lst = arrow_rows.encode_list(np.array([[1, 2], [3, 4]], np.float32), ok)
    assert lst.to_pylist() == [[1.0, 2.0], None, [3.0, 4.0]]
    assert arrow_rows.encode_values(np.array([0.5, 1.5]), ok, pa.float64()).to_pylist() == \
        [0.5, None, 1.5]


# -- the forward pass (no Spark) -------------------------------------------------------------

@pytest.mark.parametrize("kept", [None, 23])
def test_sparse_first_layer_equals_the_dense_forward(kept):
    net = scoring_net(kept=kept)
    x = sparse_rows(50, 30, 0.02)
    x[4, 5] = np.nan                     # a stored missing value: imputed by the model
    scorer = Scorer(net, torch.device("cpu"))
    ref = scoring.score_matrix(net, x, ALL, 2, THRESHOLD)
    block = sparse_block(x)
    assert block.nnz < scoring.SPARSE_DENSITY * 50 * scorer.kept      # the CSR path
    got = scorer.score(block, ALL, 2, THRESHOLD, batch_size=7)
    assert_close(got, ref)
    dense = scorer.score(arrow_rows.RowBlock(status=block.status, size=30, dense=x), ALL, 2,
                         THRESHOLD, batch_size=7)
    assert_close(dense, ref)


def test_deep_features_alone_take_the_csr_path_up_to_a_higher_density():
    """With only hidden layers asked for on the CPU (no decoder), rows up to
    ``SPARSE_DENSITY_ENCODER`` stored go through the CSR first layer; with an error asked
    for too, the same rows are densified. Both equal the dense forward."""
    net = scoring_net(kept=23)
    x = sparse_rows(50, 30, 0.15, seed=7)
    scorer = Scorer(net, torch.device("cpu"))
    block = sparse_block(x)
    assert (scoring.SPARSE_DENSITY * 50 * scorer.kept < block.nnz
            < scoring.SPARSE_DENSITY_ENCODER * 50 * scorer.kept)
    ref = scoring.score_matrix(net, x, ALL, 2, THRESHOLD)
    dense = scorer.dense_rows
    paths = []
    scorer.dense_rows = lambda *a: paths.append("dense") or dense(*a)
    got = scorer.score(block, ["deep_features"], 2, None, batch_size=16)
    assert paths == []
    np.testing.assert_allclose(got["deep_features"], ref["deep_features"], rtol=1e-5, atol=1e-6)
    got = scorer.score(block, ["deep_features", "reconstruction_mse"], 2, None, batch_size=16)
    assert paths and set(paths) == {"dense"}
    assert_close(got, {k: ref[k] for k in ("deep_features", "reconstruction_mse")})


def test_vectors_scattered_on_the_device_equal_the_dense_rows():
    """A GPU worker scatters vectors' stored entries on its device (scatter_block); the same
    code on the CPU gives RowBlock.to_dense exactly, missing values and empty rows included."""
    col = vec_array([("s", 5, [1, 4], [1.5, 2.0]), None, ("d", [1.0, 0.0, np.nan, 4.0, 5.0]),
                     ("s", 5, [], []), ("s", 5, [0], [-3.0])])
    block = arrow_rows.decode_rows(col, 5)
    for lo, hi in [(0, 4), (1, 3), (2, 4), (3, 3)]:
        got = scatter_block(block, lo, hi, torch.device("cpu"))
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), block.to_dense(lo, hi))


def test_to_device_keeps_values_and_dtype_on_the_cpu():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    x.setflags(write=False)              # Arrow's buffers are read-only
    for src in (x, torch.from_numpy(x.copy())):
        t = to_device(src, torch.device("cpu"))
        assert t.dtype == torch.int64 and t.device.type == "cpu"
        np.testing.assert_array_equal(t.numpy(), x)


def test_unrequested_outputs_are_not_computed():
    net = scoring_net()
    calls = []
    net.decode_from_last = lambda h: calls.append("decode") or torch.zeros(len(h), 30)
    later = net.layers[2].forward
    net.layers[2].forward = lambda z: calls.append("layer3") or later(z)
    scorer = Scorer(net, torch.device("cpu"))
    for x in (sparse_rows(20, 30, 0.02), sparse_rows(20, 30, 0.9)):
        out = scorer.score(sparse_block(x), ["deep_features"], 2, None, batch_size=8)
        assert set(out) == {"deep_features"} and out["deep_features"].shape == (20, 2)
    assert calls == []      # neither the decoder nor the layer after the coding layer ran
    out = scorer.score(sparse_block(x), ["reconstruction_mse"], 2, None, batch_size=8)
    assert set(out) == {"reconstruction_mse"} and "decode" in calls


def test_wide_rows_are_scored_in_bounded_passes():
    scorer = Scorer(scoring_net(), torch.device("cpu"))
    assert scorer.rows_per_pass(1024, 784) == 1024
    assert scorer.rows_per_pass(1024, 1_000_000) == scoring.PASS_ELEMENTS // 1_000_000
    assert scorer.rows_per_pass(1024, 10**9) == 1


def test_a_batch_is_scored_in_slices_of_bounded_bytes_with_the_same_scores(monkeypatch):
    """A batch wider than ``SLICE_BYTES`` is decoded and scored slice by slice; joined, the
    scores and statuses equal one pass over the whole batch."""
    net = scoring_net(size=30, hidden=(6, 2, 6), seed=2)
    payload = scoring.pack({"input_size": 30, "kept": 30, "hidden": [6, 2, 6],
                            "activation": "tanh"}, net.state_dict())
    rng = np.random.default_rng(0)
    rows = []
    for i in range(50):
        v = rng.normal(size=30)
        if i % 7 == 3:
            rows.append(None)
        elif i % 5 == 1:
            nz = np.flatnonzero(rng.random(30) < 0.2)
            rows.append(("s", 30, nz.tolist(), v[nz].tolist()))
        else:
            if i % 11 == 4:
                v[2] = np.inf
            rows.append(("d", v.tolist()))
    col = vec_array(rows)
    job = worker.BatchScorer(PayloadSource("slices", payload=payload), tuple(ALL), 2, THRESHOLD,
                             16, 1, True, False)
    whole_names, whole = job(col)
    seen = []
    real = worker.score_column
    monkeypatch.setattr(worker, "score_column", lambda c, *a: seen.append(len(c)) or real(c, *a))
    monkeypatch.setattr(worker, "SLICE_BYTES", 2_000)
    names, sliced = job(col)
    step = worker.rows_within(col.nbytes / len(col), len(col), 2_000)
    assert 1 < step < 50 and seen == [min(step, 50 - lo) for lo in range(0, 50, step)]
    assert names == whole_names == ALL + ["status"]
    for name, a, b in zip(names, sliced, whole):    # (BLAS blocks other batch sizes alike)
        assert a.type == b.type and a.is_valid().equals(b.is_valid()), name
        if pa.types.is_list(a.type):
            a, b = a.flatten(), b.flatten()
        np.testing.assert_allclose(a.to_numpy(zero_copy_only=False).astype(float),
                                   b.to_numpy(zero_copy_only=False).astype(float),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    assert worker.rows_within(100.0, 10_000, 8 << 20) == 10_000
    assert worker.rows_within(6272.0, 10_000, 8 << 20) == (8 << 20) // 6272
    assert worker.rows_within(1e12, 10_000) == 1 and worker.rows_within(0.0, 7) == 7


def test_the_workers_read_row_groups_in_batches_of_bounded_bytes(tmp_path):
    """``row_bytes`` counts every decoded value of the read columns at its width, however
    well it compresses, and a reading task reads a wide table in batches of at most
    ``SLICE_BYTES``, a narrow one in batches of ``read_rows``."""
    from sparkae.scoring.parquet import PieceScorer, row_bytes

    n, width = 3_000, 784
    x = np.zeros((n, width), np.float32)
    x[:, 5] = 1.0
    wide = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)),
                     "f": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), width)
                     .cast(pa.list_(pa.float32()))})
    pq.write_table(wide, str(tmp_path / "wide.parquet"), row_group_size=n)
    pq.write_table(pa.table({"id": wide.column("id"), "v": pa.array(np.ones(n))}),
                   str(tmp_path / "narrow.parquet"), row_group_size=n)
    meta = pq.ParquetFile(str(tmp_path / "wide.parquet")).metadata.row_group(0)
    assert row_bytes(meta, ("f",)) == width * 4
    assert row_bytes(meta, ("f", "id")) == width * 4 + 8
    assert row_bytes(meta, ("id",)) == 8

    seen = []

    def job(col):
        seen.append(len(col))
        return ["n"], [pa.array(np.zeros(len(col)))]

    budget = worker.SLICE_BYTES // (width * 4 + 8)
    for name, col, expect in (("wide", "f", budget), ("narrow", "v", 2_000)):
        seen.clear()
        piece = PieceScorer(job, (col, "id"), ("id",), ("id", "n"), 2_000,
                            (((str(tmp_path / f"{name}.parquet"), 0),),))
        out = list(piece.scored(pa.record_batch([pa.array([0])], ["t"])))
        assert sum(b.num_rows for b in out) == n
        assert max(seen) == min(expect, 2_000) and sum(seen) == n
        assert out[0].column(0).to_pylist()[:3] == [0, 1, 2]


# -- on Spark --------------------------------------------------------------------------------

@pytest.mark.parametrize("outputs", COMBOS, ids=["+".join(o[:2] for o in c) for c in COMBOS])
def test_every_output_combination_matches_a_local_forward_pass(fitted, outputs):
    x, df, model = fitted
    scored = model.score(df, outputs, layer=2, threshold=THRESHOLD)
    assert scored.columns == df.columns + outputs
    assert_close(collect(scored, outputs), reference(model, x, 2))


@pytest.mark.parametrize("engine", scoring.ENGINES)
def test_every_input_layout_and_both_transports_agree(spark, fitted, engine):
    if engine == "arrow_udf" and not hasattr(F, "arrow_udf"):
        pytest.skip("this Spark has no arrow_udf (< 4.1): mapInArrow is the transport")
    x, df, model = fitted
    ref = reference(model, x, 1)
    for col in ("vec", "arr"):
        info = InputInfo("vector" if col == "vec" else "array", col, [], 12)
        m = AutoencoderModel._create(model._spec, model._state, info, model.summary)
        got = collect(m.score(df, ALL, 1, THRESHOLD, engine=engine), ALL)
        assert_close(got, ref)
    cols = [f"c{j}" for j in range(12)]
    m = AutoencoderModel._create(model._spec, model._state, InputInfo("columns", None, cols, 12),
                                 model.summary)
    assert_close(collect(m.score(df, ALL, 1, THRESHOLD, engine=engine), ALL), ref)


def test_sparse_vectors_score_like_dense_ones(spark):
    """A 400-wide model on 2%-dense rows: sparse vectors take the CSR path in the worker,
    dense vectors the dense one; both equal the local forward pass."""
    net = scoring_net(size=400, kept=380, hidden=(5,), seed=3)
    info = InputInfo("vector", "v", [], 400)
    model = AutoencoderModel._create(net_spec(400, 380, [5]), net.state_dict(), info,
                                     TrainingSummary(), threshold=THRESHOLD)
    x = sparse_rows(300, 400, 0.02, seed=4)
    sparse_vecs = [(i, Vectors.sparse(400, np.flatnonzero(r).tolist(), r[r != 0].tolist()))
                   for i, r in enumerate(x.astype(np.float64))]
    dense_vecs = [(i, Vectors.dense(r.tolist())) for i, r in enumerate(x.astype(np.float64))]
    ref = reference(model, x, 1)
    for rows in (sparse_vecs, dense_vecs):
        df = spark.createDataFrame(rows, ["id", "v"]).repartition(2)
        assert_close(collect(model.score(df, ALL, 1), ALL), ref)


def test_vectors_read_from_parquet_score_with_the_default_transport(spark, fitted, tmp_path):
    """Spark 4's Arrow UDFs fail on a table with a vector column read by the vectorized
    Parquet reader; the default transport (mapInArrow for such tables) does not."""
    x, df, model = fitted
    df.select("id", "vec").write.parquet(str(tmp_path / "in"))
    back = spark.read.parquet(str(tmp_path / "in"))
    assert scoring.has_udt(back.schema) and not scoring.has_udt(df.select("arr").schema)
    scored = model.score(back, ALL, 2, THRESHOLD)
    assert scored.columns == ["id", "vec"] + ALL
    assert_close(collect(scored, ALL), reference(model, x, 2))


@pytest.mark.parametrize("col", ["vec", "arr"])
def test_a_plain_parquet_scan_is_read_by_the_workers_with_the_same_scores(spark, fitted,
                                                                           tmp_path, col):
    """A DataFrame that is exactly a scan of local Parquet files is scored with the workers
    reading its row groups: same columns, rows and scores as through Spark's reader; a
    filtered, cached or partitioned table is read by Spark."""
    from sparkae.data.parquet_scan import scan_pieces

    x, df, model = fitted
    info = InputInfo("vector" if col == "vec" else "array", col, [], 12)
    m = AutoencoderModel._create(model._spec, model._state, info, model.summary)
    df.select("id", col).write.parquet(str(tmp_path / "in"))
    back = spark.read.parquet(str(tmp_path / "in"))
    assert scan_pieces(back)
    scored = m.score(back, ALL, 1, THRESHOLD, status_col="status")
    assert scored.columns == ["id", col] + ALL + ["status"]
    pdf = scored.toPandas().sort_values("id")
    assert pdf["status"].tolist() == [0] * len(x)
    assert_close(collect(scored, ALL), reference(model, x, 1))
    via_spark = collect(m.score(back, ALL, 1, THRESHOLD, engine="map_in_arrow"), ALL)
    assert_close(collect(scored, ALL), via_spark)
    assert not scan_pieces(back.where("id > 3"))
    df.select("id", col, (F.col("id") % 2).alias("part")).write.partitionBy("part").parquet(
        str(tmp_path / "parts"))
    assert not scan_pieces(spark.read.parquet(str(tmp_path / "parts")))
    cached = spark.read.parquet(str(tmp_path / "in")).cache()
    try:
        assert not scan_pieces(cached)
    finally:
        cached.unpersist()


def net_spec(size, kept, hidden):
    return {"input_size": size, "kept": kept, "hidden": list(hidden), "activation": "tanh",
            "output_activation": "linear"}


def test_null_infinite_and_missing_rows(spark, fitted):
    x, df, model = fitted
    rows = [(0, x[0].tolist()), (1, None), (2, [float("inf")] + x[2, 1:].tolist()),
            (3, [float("nan")] + x[3, 1:].tolist())]
    t = spark.createDataFrame(rows, "id long, arr array<double>")
    m = AutoencoderModel._create(model._spec, model._state, InputInfo("array", "arr", [], 12),
                                 model.summary)
    out = m.score(t, ["reconstruction_mse"], status_col="st").toPandas().sort_values("id")
    assert out.st.tolist() == [0, 1, 2, 0]
    assert out.reconstruction_mse.isna().tolist() == [False, True, True, False]
    xi = x[3].copy()
    xi[0] = np.nan                                          # imputed with the training mean
    np.testing.assert_allclose(out.reconstruction_mse.iloc[3],
                               reference(model, xi[None], 1)["reconstruction_mse"][0], rtol=1e-5)
    m.set(m.missing_values_handling, "skip")
    out = m.score(t, ["reconstruction_mse"], status_col="st").toPandas().sort_values("id")
    assert out.st.tolist() == [0, 1, 2, 3]


def test_threshold_given_at_scoring_time(fitted):
    x, df, model = fitted
    mse = reference(model, x, 1)["reconstruction_mse"]
    cut = float(np.median(mse))
    got = collect(model.score(df, ["reconstruction_mse", "is_anomaly"], threshold=cut),
                  ["is_anomaly"])
    np.testing.assert_array_equal(got["is_anomaly"], mse > cut)
    assert 0 < got["is_anomaly"].sum() < len(x)


def _fails_before_any_job(spark, fn, message):
    """``fn`` raises a ValueError matching ``message`` and starts no Spark job."""
    sc = spark.sparkContext
    sc.setJobGroup("sparkae-schema-check", "schema check")
    try:
        with pytest.raises(ValueError, match=message):
            fn()
    finally:
        jobs = sc.statusTracker().getJobIdsForGroup("sparkae-schema-check")
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert list(jobs) == []


def test_schema_and_request_errors_before_any_job(spark, fitted):
    x, df, model = fitted
    attrs = {"ml_attr": {"num_attrs": 7}}
    cases = [
        (df.drop("vec"), ["reconstruction_mse"], {},
         r"scoring input: features_col: column 'vec' not found; the DataFrame has columns"),
        (df.withColumn("vec", F.lit("a")), ["reconstruction_mse"], {},
         r"column 'vec' has type string; expected a vector"),
        (df.withColumn("vec", F.col("vec").alias("vec", metadata=attrs)),
         ["reconstruction_mse"], {}, r"column 'vec' holds vectors of 7 features \(from its ML "
                                     r"attribute metadata\); the model expects 12"),
        (df, ["mse"], {}, r"outputs: got 'mse', expected any of deep_features, "),
        (df, ["deep_features"], {"layer": 4},
         r"layer: got 4, expected a hidden layer number from 1 to 3"),
        (df, ["is_anomaly"], {}, r"output 'is_anomaly' needs a threshold"),
        (df, ["is_anomaly"], {"threshold": float("nan")},
         r"threshold: got nan, expected a finite number"),
        (df, ["reconstruction_mse"], {"engine": "rdd"},
         r"engine: got 'rdd', expected one of arrow_udf"),
    ]
    for frame, outputs, kw, message in cases:
        _fails_before_any_job(spark, lambda: model.score(frame, outputs, **kw), message)
    _fails_before_any_job(spark, lambda: scoring.score(
        df, scoring.pack(model._spec, model._state), "k", model.input_info,
        ["reconstruction_mse"], 1, batch_size=0),
        "scoring_batch_size: got 0, expected an integer >= 1")


def test_rows_of_another_width_fail_in_the_task(spark, fitted):
    bad = spark.createDataFrame([(0, Vectors.dense([1.0, 2.0]))], ["id", "vec"])
    with pytest.raises(Exception, match="a row has 2 features where the model expects 12"):
        fitted[2].transform(bad).collect()


def test_a_million_sparse_columns_without_densifying(spark):
    """1,000,000 columns, 0.1% dense, 60 rows. Training a model that wide densely is heavy,
    so the model is built directly (``AutoencoderModel._create``) from a random [4] network
    with random scaling statistics. The vector column reaches the worker as its sparse
    struct (no ``vector_to_array`` in the plan; ``mapInArrow``, as for any table with a
    vector column); the worker's first layer is a CSR product and full-width outputs run
    in passes of ``PASS_ELEMENTS // width`` rows."""
    size, n, per_row = 1_000_000, 60, 1000
    torch.manual_seed(0)
    spec = net_spec(size, size, [4])
    net = build_network(spec)
    rng = np.random.default_rng(0)
    net.scaler.set_statistics(np.arange(size), rng.random(size) * 0.01,
                              1.0 + rng.random(size), np.zeros(size))
    model = AutoencoderModel._create(spec, net.state_dict(), InputInfo("vector", "v", [], size),
                                     TrainingSummary())
    idx = [np.sort(rng.choice(size, per_row, replace=False)) for _ in range(n)]
    vals = [rng.random(per_row) for _ in range(n)]
    df = spark.createDataFrame([(i, Vectors.sparse(size, idx[i], vals[i])) for i in range(n)],
                               ["id", "v"]).repartition(2)
    scored = model.score(df, ["deep_features", "reconstruction_mse"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        scored.explain()
    plan = out.getvalue()
    assert "vector_to_array" not in plan and "MapInArrow" in plan   # the vector goes as is
    got = collect(scored, ["deep_features", "reconstruction_mse"])
    for lo in range(0, n, 10):                      # the reference, 10 dense rows at a time
        x = np.zeros((10, size), np.float32)
        for r in range(10):
            x[r, idx[lo + r]] = vals[lo + r]
        ref = reference(model, x, 1)
        np.testing.assert_allclose(got["deep_features"][lo:lo + 10], ref["deep_features"],
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["reconstruction_mse"][lo:lo + 10],
                                   ref["reconstruction_mse"], rtol=1e-5)


# -- the direct Parquet reader's listing (no Spark) -----------------------------------------

def test_parquet_pieces_lists_row_groups_of_plain_local_tables_only(tmp_path):
    table = pa.table({"id": list(range(10))})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=4)
    (tmp_path / "_SUCCESS").write_text("")
    assert scoring.parquet_pieces(str(tmp_path)) == [
        (str(tmp_path / "a.parquet"), 0, 4), (str(tmp_path / "a.parquet"), 1, 4),
        (str(tmp_path / "a.parquet"), 2, 2)]
    assert scoring.parquet_pieces(f"file:{tmp_path}") == []      # URIs: Spark reads them
    assert scoring.parquet_pieces("s3a://bucket/t") == []
    os.makedirs(tmp_path / "p" / "day=1")
    pq.write_table(table, tmp_path / "p" / "day=1" / "b.parquet")
    assert scoring.parquet_pieces(str(tmp_path / "p")) == []     # Hive-partitioned
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.parquet").write_text("not parquet")
    assert scoring.parquet_pieces(str(tmp_path / "bad")) == []


def test_row_groups_are_shared_out_in_tasks_sized_like_sparks_file_scan(spark, tmp_path):
    """Tasks are sized by bytes as Spark sizes a file scan's (each file counts its size
    plus spark.sql.files.openCostInBytes; at most maxPartitionBytes per task), never more
    than the row groups; the row groups are balanced over them by rows."""
    from sparkae.scoring.parquet import assign_pieces, task_count

    table = pa.table({"x": np.arange(4000, dtype=np.float64)})
    for i in range(4):
        pq.write_table(table, tmp_path / f"f{i}.parquet", row_group_size=1000)
    pieces = scoring.parquet_pieces(str(tmp_path))
    assert len(pieces) == 16
    assert spark.sparkContext.defaultParallelism == 2
    # 4 small files: 4 x (size + 4 MB) over the 2 slots: a task each
    assert task_count(spark, pieces) == 2
    spark.conf.set("spark.sql.files.maxPartitionBytes", "65536")   # a task per row group
    try:
        assert task_count(spark, pieces) == 16
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.openCostInBytes", "64m")     # 4 x (64 MB + size) ...
    spark.conf.set("spark.sql.files.maxPartitionBytes", "64m")   # ... in tasks of 64 MB
    try:
        assert task_count(spark, pieces) == 5
    finally:
        spark.conf.unset("spark.sql.files.openCostInBytes")
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    uneven = [("a", 0, 500), ("a", 1, 300), ("b", 0, 300), ("b", 1, 200), ("c", 0, 100)]
    tasks = assign_pieces(uneven, 2)
    rows = {(f, g): r for f, g, r in uneven}
    assert sorted(p for t in tasks for p in t) == sorted((f, g) for f, g, _ in uneven)
    assert sorted(sum(rows[p] for p in t) for t in tasks) == [700, 700]
    assert all(list(t) == sorted(t) for t in tasks)


# -- bounded caches (fakes, no Spark) --------------------------------------------------------

class FakeBroadcast:
    def __init__(self, value):
        self.value, self.unpersisted = value, False

    def unpersist(self, blocking=False):
        self.unpersisted = True


class FakeContext:
    def __init__(self, app="local-1", start=1):
        self.applicationId, self.startTime, self.made = app, start, []

    def broadcast(self, value):
        self.made.append(FakeBroadcast(value))
        return self.made[-1]


class FakeSession:
    def __init__(self, sc=None, conf=None):
        self._sc, self.conf = sc, FakeConf(conf or {})

    @property
    def sparkContext(self):
        if self._sc is None:
            raise RuntimeError("Spark Connect: no SparkContext")
        return self._sc


class FakeConf:
    def __init__(self, values):
        self.values = values

    def get(self, name, default=None):
        return self.values.get(name, default)


@pytest.fixture
def registry(monkeypatch):
    """An empty driver registry for the test (the module's own is left alone)."""
    from collections import OrderedDict

    monkeypatch.setattr(broadcasts, "_ENTRIES", OrderedDict())
    return broadcasts


def test_a_payload_is_broadcast_once_and_a_newer_one_replaces_it(registry):
    sc = FakeContext()
    spark = FakeSession(sc)
    first = registry.payload_source(spark, "m", b"one")
    assert registry.payload_source(spark, "m", bytes(b"one")) is first   # equal bytes: reused
    assert len(sc.made) == 1 and first.get() == b"one"
    newer = registry.payload_source(spark, "m", b"two")
    assert newer.token != first.token and newer.get() == b"two"
    assert sc.made[0].unpersisted and not sc.made[1].unpersisted


def test_the_driver_registry_is_bounded_and_unpersists_what_it_evicts(registry, monkeypatch):
    monkeypatch.setattr(registry, "DRIVER_MODELS", 2)
    sc = FakeContext()
    spark = FakeSession(sc)
    a = registry.payload_source(spark, "a", b"a")
    registry.payload_source(spark, "b", b"b")
    assert registry.payload_source(spark, "a", b"a") is a            # a is now the newest
    registry.payload_source(spark, "c", b"c")                        # evicts b
    assert [bc.unpersisted for bc in sc.made] == [False, True, False]
    assert len(registry._ENTRIES) == 2
    registry.clear()
    assert all(bc.unpersisted for bc in sc.made) and not registry._ENTRIES


def test_a_restarted_context_never_reuses_an_old_broadcast(registry):
    """The same Python object stands for both contexts (as ``id(sc)`` could be reused):
    the application id and start time tell them apart."""
    sc = FakeContext("local-1", 100)
    spark = FakeSession(sc)
    old = registry.payload_source(spark, "m", b"p")
    sc.applicationId, sc.startTime = "local-2", 200
    new = registry.payload_source(spark, "m", b"p")
    assert new is not old and new.broadcast is sc.made[1]
    assert [k[0] for k in registry._ENTRIES] == [("local-2", 200)]   # the stopped one is gone


def test_under_spark_connect_the_payload_travels_with_the_function(registry):
    src = registry.payload_source(FakeSession(None), "m", b"p")
    assert src.broadcast is None and src.get() == b"p"
    assert registry.payload_source(FakeSession(None), "m", b"p") is src


def test_the_worker_cache_is_bounded_and_keyed_by_payload(monkeypatch):
    from collections import OrderedDict

    monkeypatch.setattr(worker, "_SCORERS", OrderedDict())
    monkeypatch.setattr(worker, "WORKER_MODELS", 2)
    built = []
    real_unpack = worker.unpack
    monkeypatch.setattr(worker, "unpack", lambda p: built.append(p) or real_unpack(p))
    net = scoring_net(size=10, hidden=(3,))
    payload = scoring.pack({"input_size": 10, "kept": 10, "hidden": [3], "activation": "tanh"},
                           net.state_dict())
    a, b, c = (PayloadSource(t, payload=payload) for t in "abc")
    first = worker.scorer_for(a, 1)
    assert worker.scorer_for(a, 1) is first and len(built) == 1      # rebuilt once
    worker.scorer_for(b, 1)
    worker.scorer_for(a, 1)
    worker.scorer_for(c, 1)                                          # evicts b
    assert worker.cached_tokens() == ["a", "c"] and len(built) == 3
    assert worker.scorer_for(b, 1) is not first and len(built) == 4


# -- test fault hooks ----------------------------------------------------------------------

def test_fault_hooks_are_off_unless_their_confs_are_set():
    assert faults.from_session(FakeSession(FakeContext())) is None
    hook = faults.from_session(FakeSession(conf={scoring.FAIL_CONF: "1:3",
                                                 scoring.DELAY_CONF: "0"}))
    assert hook == faults.BatchFault((1, 3), 0.0)
    hook()                                                  # no task here: nothing happens
    with pytest.raises(ValueError, match="expected PARTITION:BATCH"):
        faults.from_session(FakeSession(conf={scoring.FAIL_CONF: "3"}))
    with pytest.raises(ValueError, match="expected seconds"):
        faults.from_session(FakeSession(conf={scoring.DELAY_CONF: "soon"}))


def test_an_injected_fault_fails_the_scoring_job(spark, fitted):
    """What the tests of failed runs rely on: the conf makes the named batch raise."""
    x, df, model = fitted
    spark.conf.set(scoring.FAIL_CONF, "0:1")
    try:
        scored = model.score(df.repartition(1), ["reconstruction_mse"])
        with pytest.raises(Exception, match=r"injected failure .* in partition 0, Arrow batch 1"):
            scored.collect()
    finally:
        spark.conf.unset(scoring.FAIL_CONF)
    assert model.score(df, ["reconstruction_mse"]).count() == len(x)

# -- import rules of the package -----------------------------------------------------------

def _imports(module_file):
    tree = ast.parse(open(module_file).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_forward_pass_has_no_spark_and_scoring_no_job_glue():
    pkg = os.path.dirname(scoring.__file__)
    for name in ("forward.py", "payload.py", "broadcasts.py"):
        assert not any(n.split(".")[0] == "pyspark" for n in _imports(os.path.join(pkg, name)))
    for name in os.listdir(pkg):
        if name.endswith(".py"):
            assert not any(n.startswith(("sparkae.jobs", "sparkae.partitions"))
                           for n in _imports(os.path.join(pkg, name))), name
