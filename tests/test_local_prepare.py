"""A small fit prepared on the driver (sparkae.data.local_prepare): one Arrow collect, the
statistics in NumPy, the Parquet written with pyarrow. Its statistics and rows must be
Spark's own, and anything unusual must go back to the Spark path (which checks and
reports it)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.ml.linalg import Vectors

from sparkae import Autoencoder
from sparkae.data.converter import parquet_files
from sparkae.data.vectors import decode_table, to_dense
from sparkae.data.local_prepare import LOCAL_ROWS_CONF, prepare_locally, row_limit
from sparkae.data.prepare import compute_stats, resolve


@pytest.fixture()
def rows_conf(spark):
    """Set ``spark.sparkae.localPrepareRows`` for one test, then restore it."""
    before = spark.conf.get(LOCAL_ROWS_CONF, None)

    def set_(value):
        spark.conf.set(LOCAL_ROWS_CONF, str(value))

    yield set_
    if before is None:
        spark.conf.unset(LOCAL_ROWS_CONF)
    else:
        spark.conf.set(LOCAL_ROWS_CONF, before)


def _vectors(spark, rows, col="features"):
    return resolve(spark.createDataFrame([(v,) for v in rows], [col]), col, None)


def _assert_same_stats(a, b):
    assert a.count == b.count
    for name in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def _rows_of(entry, size):
    files = parquet_files(entry.path)
    assert len(files) == 1
    block = decode_table(pq.read_table(files[0]), size)
    return to_dense(np.diff(block.indptr), block.cols, block.vals, size)


def test_dense_sample_matches_spark(spark, mnist_sample, tmp_path):
    vectors, info = resolve(mnist_sample, "features", None)
    got = prepare_locally(vectors, str(tmp_path))
    assert got is not None
    stats, entry = got
    _assert_same_stats(stats, compute_stats(vectors, info))
    assert entry.owned and os.path.isdir(entry.path) and entry.path.startswith(str(tmp_path))
    want = np.array([r.features.toArray() for r in mnist_sample.select("features").collect()],
                    dtype=np.float32)
    np.testing.assert_array_equal(_rows_of(entry, 784), want)
    entry.release()
    assert not os.path.exists(entry.path)


def test_sparse_and_mixed_rows_match_spark(spark, tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        idx = np.sort(rng.choice(50, 4, replace=False))
        vals = rng.normal(size=4) * 3
        rows.append(Vectors.sparse(50, idx.tolist(), vals.tolist()) if i % 3 else
                    Vectors.dense(np.where(rng.random(50) < 0.2, rng.normal(size=50), 0.0)))
    rows.append(Vectors.sparse(50, [], []))          # an empty row: every value is zero
    vectors, info = _vectors(spark, rows)
    stats, entry = prepare_locally(vectors, str(tmp_path))
    _assert_same_stats(stats, compute_stats(vectors, info))
    np.testing.assert_array_equal(_rows_of(entry, 50),
                                  np.array([r.toArray() for r in rows], dtype=np.float32))
    entry.release()


def test_features_cols_use_the_known_width(spark, tmp_path):
    df = spark.createDataFrame([(float(i), i % 3, "ab"[i % 2]) for i in range(30)],
                               ["a", "b", "s"])
    vectors, info = resolve(df, "features", ["a", "b", "s"])
    stats, entry = prepare_locally(vectors, str(tmp_path), info.size)
    _assert_same_stats(stats, compute_stats(vectors, info))
    assert len(stats.mean) == info.size == 4
    entry.release()


@pytest.mark.parametrize("case", ["null row", "nan", "infinite", "widths", "one row"])
def test_unusual_input_goes_to_spark(spark, tmp_path, case):
    good = [Vectors.dense([1.0, 2.0, 3.0]), Vectors.dense([0.5, 0.0, 1.0])]
    rows = {"null row": good + [None], "nan": good + [Vectors.dense([1.0, float("nan"), 2.0])],
            "infinite": good + [Vectors.sparse(3, [1], [float("inf")])],
            "widths": good + [Vectors.dense([1.0, 2.0])], "one row": good[:1]}[case]
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import StructField, StructType

    schema = StructType([StructField("features", VectorUDT(), True)])
    df = spark.createDataFrame([(v,) for v in rows], schema)
    vectors, _ = resolve(df, "features", None)
    assert prepare_locally(vectors, str(tmp_path)) is None
    assert os.listdir(tmp_path) == []                # nothing written


def test_the_row_limit(spark, tmp_path, rows_conf):
    vectors, _ = _vectors(spark, [Vectors.dense([float(i), 1.0]) for i in range(10)])
    rows_conf(9)
    assert prepare_locally(vectors, str(tmp_path)) is None
    rows_conf(0)
    assert row_limit(spark) == 0 and prepare_locally(vectors, str(tmp_path)) is None
    rows_conf(10)
    stats, entry = prepare_locally(vectors, str(tmp_path))
    assert stats.count == 10
    entry.release()
    rows_conf("many")
    with pytest.raises(ValueError, match=r"spark.sparkae.localPrepareRows: got 'many', "
                                         r"expected a whole number >= 0"):
        row_limit(spark)


def test_a_fit_prepared_either_way_learns_the_same_scaling(spark, mnist_sample, rows_conf,
                                                           caplog):
    small = mnist_sample.limit(600)
    ae = Autoencoder(hidden=[16], epochs=2, seed=5, stopping_rounds=0, data_loader="arrow")
    with caplog.at_level(logging.INFO, logger="sparkae"):
        local = ae.fit(small)
    assert "prepared on the driver" in caplog.text
    caplog.clear()
    rows_conf(0)
    with caplog.at_level(logging.INFO, logger="sparkae"):
        spark_side = ae.fit(small)
    assert "prepared on the driver" not in caplog.text and "materialized to" in caplog.text
    scaler = [k for k in local._state if k.startswith("scaler.")]
    assert scaler
    for key in scaler:
        np.testing.assert_allclose(local._state[key].numpy(), spark_side._state[key].numpy(),
                                   rtol=1e-6, atol=1e-7, err_msg=key)
    a, b = local.summary.train_mse, spark_side.summary.train_mse
    assert abs(a - b) <= 0.1 * b, (a, b)


def test_dense_statistics_in_blocks_match_numpy_and_refuse_a_late_nan():
    from sparkae.data.local_prepare import STATS_ROWS, _dense_stats

    x = np.random.default_rng(3).normal(5.0, 2.0, size=(2 * STATS_ROWS + 7, 6))
    stats = _dense_stats(x)
    assert stats.count == len(x)
    for name, want in (("mean", x.mean(axis=0)), ("std", x.std(axis=0, ddof=1)),
                       ("min", x.min(axis=0)), ("max", x.max(axis=0))):
        np.testing.assert_allclose(getattr(stats, name), want, rtol=1e-12, err_msg=name)
    x[-1, 2] = np.nan        # in the last block: the fit goes to Spark's path
    assert _dense_stats(x) is None
    x[-1, 2] = np.inf
    assert _dense_stats(x) is None


def _parquet_input(spark, mnist_sample, tmp_path, layout, files=2):
    """600 sample rows as Parquet in ``files`` files: the vector column, or array<float>."""
    from pyspark.ml.functions import vector_to_array

    df = mnist_sample.limit(600).select("label", "features")
    if layout == "array":
        df = df.withColumn("features", vector_to_array("features", "float32"))
    path = str(tmp_path / f"input-{layout}")
    df.repartition(files).write.parquet(path)
    assert len([f for f in os.listdir(path) if f.endswith(".parquet")]) == files
    return spark.read.parquet(path), path


@pytest.mark.parametrize("layout,files", [("vector", 1), ("vector", 2), ("array", 2)])
def test_a_plain_parquet_scan_is_read_with_pyarrow_and_matches_spark(spark, mnist_sample,
                                                                     tmp_path, layout, files,
                                                                     caplog):
    """One file of one row group is taken as read, several are joined: the same rows."""
    df, _ = _parquet_input(spark, mnist_sample, tmp_path, layout, files)
    vectors, info = resolve(df, "features", None)
    with caplog.at_level(logging.INFO, logger="sparkae"):
        stats, entry = prepare_locally(vectors, str(tmp_path / "cache"), source=(df, info))
    assert "prepared on the driver (read with pyarrow)" in caplog.text
    _assert_same_stats(stats, compute_stats(vectors, info))
    got = _rows_of(entry, 784)
    want = np.array([r.features.toArray() for r in vectors.collect()], dtype=np.float32)
    # the rows of every file, files in name order: Spark may order them otherwise
    order = lambda m: m[np.lexsort(m.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(order(got), order(want))
    entry.release()


def test_a_filtered_scan_is_not_read_directly(spark, mnist_sample, tmp_path):
    from sparkae.data.local_prepare import _read_direct

    df, _ = _parquet_input(spark, mnist_sample, tmp_path, "vector")
    _, info = resolve(df, "features", None)
    assert _read_direct(df, info, 10_000) is not None
    assert _read_direct(df.where("label > 3"), info, 10_000) is None   # not a plain scan
    assert _read_direct(df, info, 599) is None                          # over the row limit
    spark.conf.set("spark.sparkae.scoring.directParquet", "false")
    try:
        assert _read_direct(df, info, 10_000) is None
    finally:
        spark.conf.unset("spark.sparkae.scoring.directParquet")


def _dense_row(vector: dict, width: int) -> np.ndarray:
    """One row of Spark's vector struct (as pyarrow gives it) as a dense array."""
    if vector["type"] == 1:
        return np.asarray(vector["values"], dtype=np.float64)
    row = np.zeros(width)
    row[vector["indices"]] = vector["values"]
    return row


def test_a_cached_scan_is_read_from_its_files_only_while_they_are_as_listed(
        spark, mnist_sample, tmp_path):
    """A fit reads a cached plain scan's files with pyarrow (the same rows as the cache)
    while each file has the size and modification time Spark listed; a file changed since
    sends it to the cache. Scoring keeps reading the cache."""
    from sparkae.data.local_prepare import _read_direct
    from sparkae.data.parquet_scan import scan_pieces

    df, path = _parquet_input(spark, mnist_sample, tmp_path, "vector")
    cached = spark.read.parquet(path).cache()
    try:
        assert cached.count() == 600
        _, info = resolve(cached, "features", None)
        col = _read_direct(cached, info, 10_000)
        assert col is not None and len(col) == 600
        got = np.stack([_dense_row(v, 784) for v in col.to_pylist()])
        want = np.array([r.features.toArray() for r in cached.select("features").collect()])
        order = lambda m: m[np.lexsort(m.T[::-1])]  # noqa: E731
        np.testing.assert_array_equal(order(got), order(want))
        assert not scan_pieces(cached)                          # scoring reads the cache
        part = sorted(f for f in os.listdir(path) if f.endswith(".parquet"))[0]
        st = os.stat(os.path.join(path, part))
        os.utime(os.path.join(path, part), ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
        assert _read_direct(cached, info, 10_000) is None       # changed since listed
        assert cached.count() == 600                            # the cache still answers
    finally:
        cached.unpersist()


def test_a_one_rank_fit_holds_its_rows_in_memory_and_learns_what_the_files_teach(
        spark, mnist_sample, tmp_path, caplog):
    from sparkae.data import held
    from sparkae.fitting import prepare_input

    df, _ = _parquet_input(spark, mnist_sample, tmp_path, "vector")
    cache = tmp_path / "cache"
    ae = Autoencoder(hidden=[16], epochs=2, seed=5, stopping_rounds=0, data_loader="arrow",
                     cache_dir=str(cache))
    with caplog.at_level(logging.INFO, logger="sparkae"):
        in_memory = ae.fit(df)
    assert "read with pyarrow) and held in memory" in caplog.text
    assert not cache.exists() or os.listdir(cache) == []       # nothing written
    assert not held._TABLES                                     # released after the fit
    written = prepare_input(df, ae.param_values(), in_process=False)
    try:
        assert not held.is_held(written.data.train[0])
        from_files = ae.fit_prepared(written)
    finally:
        written.data.release()
    for key, value in from_files._state.items():
        np.testing.assert_array_equal(in_memory._state[key].numpy(), value.numpy(), err_msg=key)


def test_held_rows_are_refused_to_ranks_in_other_processes(tmp_path):
    import pyarrow as pa

    from sparkae.data import held
    from sparkae.data.converter import list_units
    from sparkae.data.local_prepare import as_vectors

    col = as_vectors(pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    name = held.hold(col, 2)
    try:
        assert [(u.group, u.rows) for u in list_units([name])] == [(0, 2), (1, 1)]
        with pytest.raises(ValueError, match=r"held in the driver's memory; ranks in other "
                                             r"processes read materialized files"):
            held.check_files([name])
    finally:
        held.release(name)
    with pytest.raises(FileNotFoundError, match="is not held in this process"):
        list_units([name])


def test_validation_rows_are_prepared_on_the_driver_too(spark, mnist_sample, tmp_path, caplog):
    from sparkae.fitting import prepare_input

    train, valid = mnist_sample.limit(500), mnist_sample.limit(700).subtract(
        mnist_sample.limit(500))
    cache = tmp_path / "cache"
    ae = Autoencoder(hidden=[16], epochs=2, seed=5, stopping_rounds=0, data_loader="arrow",
                     cache_dir=str(cache))
    with caplog.at_level(logging.INFO, logger="sparkae"):
        held_fit = ae.fit(train, validation_df=valid)
    assert caplog.text.count("held in memory for the rank in this process") == 2
    assert "materialized to" not in caplog.text
    assert held_fit.summary.validation_rows == 200
    assert all(h["validation_mse"] is not None for h in held_fit.summary.history)
    written = prepare_input(train, ae.param_values(), valid, in_process=False)
    try:
        assert written.valid_rows == 200 and len(written.data.valid) == 1
        from_files = ae.fit_prepared(written)
    finally:
        written.data.release()
    assert not cache.exists() or os.listdir(cache) == []
    for key, value in from_files._state.items():
        np.testing.assert_array_equal(held_fit._state[key].numpy(), value.numpy(), err_msg=key)
    narrow = spark.createDataFrame([(Vectors.dense([1.0, 2.0]),)] * 3, ["features"])
    with pytest.raises(ValueError, match=r"validation_df: vectors have 2 features; the "
                                         r"training data has 784"):
        ae.fit(train, validation_df=narrow)
    assert not cache.exists() or os.listdir(cache) == []
