"""Materialize vectors to Parquet and stream them back (uses the session `spark` fixture)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.ml.linalg import Vectors

from sparkae.data.converter import ParquetBatches, decode_vectors, materialize, to_dense

SIZE = 6


def _matrix(n: int, seed: int = 0) -> np.ndarray:
    """n x SIZE float32-exact values with many zeros."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-40, 40, size=(n, SIZE)) / 8.0
    x[rng.random((n, SIZE)) < 0.5] = 0.0
    return x


def _vectors(x: np.ndarray):
    """Alternate sparse and dense vectors; an all-zero sparse row now and then."""
    out = []
    for i, r in enumerate(x):
        if i % 2 == 0:
            nz = np.flatnonzero(r)
            out.append(Vectors.sparse(SIZE, nz.tolist(), r[nz].tolist()))
        else:
            out.append(Vectors.dense(r.tolist()))
    return out


def _write(spark, x, path, partitions=None, coalesce=True):
    df = spark.createDataFrame([(i, v) for i, v in enumerate(_vectors(x))], ["id", "features"])
    if partitions:
        df = df.repartition(partitions)
    elif coalesce:
        df = df.orderBy("id").coalesce(1)
    return materialize(df.select("features"), str(path))


def _all(reader, epoch=0):
    batches = list(reader.epoch(epoch))
    assert all(len(b) == reader.batch_size for b in batches[:-1])
    assert 0 < len(batches[-1]) <= reader.batch_size
    assert all(b.dtype == np.float32 and b.shape[1] == SIZE for b in batches)
    return np.concatenate(batches)


def _rows(m: np.ndarray):
    return sorted(map(tuple, m.tolist()))


def test_round_trip_exact_order(spark, tmp_path):
    x = _matrix(11)
    x[4] = 0.0  # an empty sparse vector
    path = _write(spark, x, tmp_path / "m")
    assert path == str(tmp_path / "m")
    reader = ParquetBatches(path, SIZE, batch_size=3, shuffle=False)
    assert reader.num_rows == 11
    got = _all(reader)
    np.testing.assert_array_equal(got, x.astype(np.float32))
    assert [len(b) for b in reader.epoch(0)] == [3, 3, 3, 2]
    # no temporary sibling directory is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_sparse_values_exact(spark, tmp_path):
    vecs = [Vectors.sparse(SIZE, [0, 5], [1e-7, 123456.5]),
            Vectors.sparse(SIZE, [2], [-3.25]),
            Vectors.dense([0.1, 0.0, 0.0, 2.5, 0.0, -1.0])]
    df = spark.createDataFrame([(v,) for v in vecs], ["features"]).coalesce(1)
    path = materialize(df, str(tmp_path / "s"))
    got = _all(ParquetBatches(path, SIZE, batch_size=8, shuffle=False))
    expected = np.array([v.toArray() for v in vecs], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    files = [f for f in os.listdir(path) if f.endswith(".parquet")]
    table = pq.read_table(os.path.join(path, files[0]))
    lengths, cols, vals = decode_vectors(table.column("features"), SIZE)
    assert lengths.tolist() == [2, 1, 6]
    assert cols.tolist() == [0, 5, 2, 0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(vals, np.float32([1e-7, 123456.5, -3.25, 0.1, 0, 0, 2.5, 0, -1]))
    np.testing.assert_array_equal(to_dense(lengths, cols, vals, SIZE), expected)


def test_shuffle_covers_every_row_once(spark, tmp_path):
    x = _matrix(200, seed=1)
    x[:, 0] = np.arange(200)  # a row id, so every row is distinct
    path = _write(spark, x, tmp_path / "m", partitions=3)
    plain = _all(ParquetBatches(path, SIZE, batch_size=16, shuffle=False))
    assert _rows(plain) == _rows(x)
    a = ParquetBatches(path, SIZE, batch_size=16, shuffle=True, seed=9)
    b = ParquetBatches(path, SIZE, batch_size=16, shuffle=True, seed=9)
    e0, e0b, e1 = _all(a, 0), _all(b, 0), _all(a, 1)
    assert _rows(e0) == _rows(x) and _rows(e1) == _rows(x)
    np.testing.assert_array_equal(e0, e0b)
    assert not np.array_equal(e0[:, 0], e1[:, 0])
    assert not np.array_equal(e0[:, 0], plain[:, 0])
    other = _all(ParquetBatches(path, SIZE, batch_size=16, shuffle=True, seed=10), 0)
    assert not np.array_equal(e0[:, 0], other[:, 0])


@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_partition_rows(spark, tmp_path, shuffle):
    x = _matrix(200, seed=2)
    x[:, 0] = np.arange(200)
    path = _write(spark, x, tmp_path / "m", partitions=4)
    r0 = ParquetBatches(path, SIZE, batch_size=7, shuffle=shuffle, rank=0, world_size=2)
    r1 = ParquetBatches(path, SIZE, batch_size=7, shuffle=shuffle, rank=1, world_size=2)
    assert len(r0.units) >= 2 and len(r1.units) >= 2
    assert r0.num_rows + r1.num_rows == 200
    a, b = _all(r0), _all(r1)
    assert len(a) == r0.num_rows and len(b) == r1.num_rows
    assert not set(a[:, 0].tolist()) & set(b[:, 0].tolist())
    assert _rows(np.concatenate([a, b])) == _rows(x)


def test_width_mismatch_raises(spark, tmp_path):
    vecs = [Vectors.dense([1.0, 2, 3, 4, 5]), Vectors.sparse(5, [1], [2.0])]
    df = spark.createDataFrame([(v,) for v in vecs], ["features"]).coalesce(1)
    path = materialize(df, str(tmp_path / "w"))
    reader = ParquetBatches(path, SIZE, batch_size=4, shuffle=False, role="training data")
    with pytest.raises(ValueError, match="expects 6") as err:
        list(reader.epoch(0))
    assert "training data" in str(err.value) and "5 features" in str(err.value)


def test_sparse_width_mismatch_raises(spark, tmp_path):
    vecs = [Vectors.dense([1.0, 2, 3, 4, 5, 6]), Vectors.sparse(7, [6], [2.0])]
    df = spark.createDataFrame([(v,) for v in vecs], ["features"]).coalesce(1)
    path = materialize(df, str(tmp_path / "w"))
    with pytest.raises(ValueError, match="expects 6"):
        list(ParquetBatches(path, SIZE, batch_size=4, shuffle=False).epoch(0))
