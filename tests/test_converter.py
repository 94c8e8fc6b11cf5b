"""Materialize vectors to Parquet and stream them back (uses the session `spark` fixture)."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.ml.linalg import Vectors

from sparkae.data.converter import ParquetBatches, materialize
from sparkae.data.vectors import decode_vectors, to_dense
from tests.conftest import ROOT

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


def _struct_table(x: np.ndarray, sparse_rows: np.ndarray):
    """Spark's vector struct column written by pyarrow: rows in ``sparse_rows`` as sparse
    vectors (their nonzero entries), the others dense."""
    import pyarrow as pa

    types, sizes, indices, values = [], [], [], []
    for i, r in enumerate(x):
        if sparse_rows[i]:
            nz = np.flatnonzero(r)
            types.append(0), sizes.append(SIZE), indices.append(nz.tolist())
            values.append(r[nz].tolist())
        else:
            types.append(1), sizes.append(None), indices.append(None), values.append(r.tolist())
    col = pa.StructArray.from_arrays(
        [pa.array(types, pa.int8()), pa.array(sizes, pa.int32()),
         pa.array(indices, pa.list_(pa.int32())), pa.array(values, pa.list_(pa.float64()))],
        ["type", "size", "indices", "values"])
    return pa.table({"features": col})


@pytest.mark.parametrize("sparse", [False, True])
def test_dense_row_groups_batch_as_csr_blocks_do(tmp_path, sparse):
    """Row groups of dense vectors decode to DenseRows blocks (no column indices), mixed
    ones to CsrRows; every epoch's batches, shuffled, over 2 ranks and with NaN rows
    skipped (sparse batches; the loop drops them from dense ones), equal those of the same
    blocks all in CSR form."""
    from sparkae.data.batches import CsrRows, DenseRows
    from sparkae.data.converter import read_unit_arrow

    x = _matrix(120, seed=3)
    x[:, 0] = np.arange(120)
    x[[7, 70], 2] = np.nan
    sparse_rows = np.zeros(120, dtype=bool)
    sparse_rows[40:80:3] = True          # row groups 2 and 3 (of 20 rows) are mixed
    path = str(tmp_path / "t.parquet")
    pq.write_table(_struct_table(x, sparse_rows), path, row_group_size=20)
    kinds = [type(read_unit_arrow(u, SIZE, "t")) for u in ParquetBatches(path, SIZE, 8).units]
    assert kinds == [DenseRows, DenseRows, CsrRows, CsrRows, DenseRows, DenseRows]

    def as_csr(unit, size, role):
        block = read_unit_arrow(unit, size, role)
        return block.to_csr() if isinstance(block, DenseRows) else block

    for rank in (0, 1):
        kw = dict(batch_size=9, shuffle=True, seed=4, rank=rank, world_size=2,
                  sparse=sparse, skip_missing=True)
        fast, csr = ParquetBatches(path, SIZE, **kw), ParquetBatches(path, SIZE, reader=as_csr,
                                                                       **kw)
        for epoch in (0, 1):
            a, b = list(fast.epoch(epoch)), list(csr.epoch(epoch))
            assert len(a) == len(b) > 3
            for p, q in zip(a, b):
                if sparse:
                    p, q = p.to_dense().numpy(), q.to_dense().numpy()
                np.testing.assert_array_equal(p, q)
                if sparse:
                    assert not np.isnan(p).any()


def test_dense_matrix_only_for_dense_rows_of_one_width():
    from sparkae.data.vectors import dense_matrix

    x = _matrix(4)
    parts = _struct_table(x, np.zeros(4, dtype=bool)).column("features").combine_chunks().flatten()
    np.testing.assert_array_equal(dense_matrix(parts[0], parts[3], SIZE), x.astype(np.float32))
    assert dense_matrix(parts[0], parts[3], SIZE + 1) is None
    mixed = _struct_table(x, np.array([0, 1, 0, 0], bool)).column("features").combine_chunks()
    assert dense_matrix(mixed.flatten()[0], mixed.flatten()[3]) is None


def test_numpy_view_matches_pyarrow():
    """numpy_view reads plain numeric arrays from their buffer (sliced ones too) and leaves
    arrays with nulls and other types to pyarrow, with pyarrow's result."""
    import pyarrow as pa

    from sparkae.data.arrow_numpy import numpy_view

    cases = [pa.array(np.arange(10, dtype=np.int8)).slice(3, 4),
             pa.array([[1.5, 2.0], [3.0], [4.0, 5.0, 6.0]]).slice(1).flatten(),
             pa.array([1, None, 3], pa.int32()), pa.array([True, False]),
             pa.array([], pa.float32())]
    for arr in cases:
        got, want = numpy_view(arr), arr.to_numpy(zero_copy_only=False)
        assert got.dtype == want.dtype, arr
        np.testing.assert_array_equal(got, want)


def test_reading_batches_does_not_import_pandas(tmp_path):
    """A rank's reader (dense and mixed row groups, sparse and dense batches) never imports
    pandas: pyarrow's to_numpy and pa.scalar do, 0.4-0.5 s in a rank's first epoch."""
    import subprocess
    import sys

    x = _matrix(60, seed=5)
    sparse_rows = np.zeros(60, dtype=bool)
    sparse_rows[20:40:2] = True
    path = str(tmp_path / "t.parquet")
    pq.write_table(_struct_table(x, sparse_rows), path, row_group_size=20)
    code = ("import sys\n"
            "from sparkae.data.converter import ParquetBatches\n"
            "for sparse in (False, True):\n"
            f"    n = sum(int(b.shape[0]) for b in ParquetBatches({path!r}, {SIZE}, 8, "
            "shuffle=True, sparse=sparse).epoch(0))\n"
            "    assert n == 60, n\n"
            "print('pandas' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout


def test_units_read_by_several_threads_batch_as_one_thread_reads_them(tmp_path):
    """A GPU rank reads its units with several threads (each with its own open files);
    every epoch's batches equal those of one reading thread, over two files and ranks."""
    from sparkae.data import converter

    x = _matrix(200, seed=5)
    sparse_rows = np.zeros(200, dtype=bool)
    sparse_rows[::2] = True
    for i, part in enumerate((slice(0, 110), slice(110, 200))):
        pq.write_table(_struct_table(x[part], sparse_rows[part]),
                       str(tmp_path / f"part-{i}.parquet"), row_group_size=15)
    for rank in (0, 1):
        kw = dict(batch_size=11, shuffle=True, seed=2, rank=rank, world_size=2)
        one = ParquetBatches(str(tmp_path), SIZE, **kw)
        many = ParquetBatches(str(tmp_path), SIZE, read_threads=4, **kw)
        for epoch in (0, 1, 2):
            a, b = list(one.epoch(epoch)), list(many.epoch(epoch))
            assert len(a) == len(b) > 3
            for p, q in zip(a, b):
                np.testing.assert_array_equal(p, q)
    assert converter.read_threads("cpu", 16) == 1
    assert converter.read_threads("cuda", 16) == converter.GPU_READ_THREADS
    assert converter.read_threads("cuda", 2) == 1 and converter.read_threads("cuda", 1) == 1
