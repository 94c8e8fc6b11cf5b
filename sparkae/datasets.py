"""MNIST-style data: IDX file reading, the bundled 5,000-image sample, Spark DataFrames.

The DataFrames built here have the columns ``id`` (long, 0-based row index in the
source), ``features`` (a :class:`pyspark.ml.linalg.SparseVector` of ``rows * cols``
pixel values 0.0-255.0, only the non-zero pixels stored) and ``label`` (int).
"""

from __future__ import annotations

import gzip
import logging
import os
import time
import zlib
from importlib.resources import files
from typing import TYPE_CHECKING, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
_SLICE_ROWS = 10_000  # rows per pandas -> Arrow -> Spark slice
SAMPLE_IMAGES = "mnist_5k-images-idx3-ubyte.gz"
SAMPLE_LABELS = "mnist_5k-labels-idx1-ubyte.gz"


def read_idx(path: PathLike) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzip-compressed or not) into a numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip is detected by its magic bytes ``1f 8b``, not by the name.

    Returns
    -------
    numpy.ndarray
        Writable ``uint8`` array shaped by the header's dimensions.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the gzip stream is corrupt, the magic number is not that of an
        unsigned-byte IDX file, or the data length does not match the dimensions.
    """
    from sparkae.io import fs

    path = os.fspath(path)
    if not fs.isfile(path, "IDX file"):
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = fs.read_bytes(path, "IDX file")   # local, s3a://, hdfs://, ... (sparkae.io)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an IDX header (4 bytes)")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or ndim == 0:
        raise ValueError(
            f"{path}: bad IDX magic 0x{magic:08x} ({magic}); allowed: 0x000008NN, i.e. two zero "
            "bytes, type code 0x08 (unsigned byte) and NN >= 1 dimensions "
            "(2049 = 0x00000801 for labels, 2051 = 0x00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header: expected {header} bytes, found {len(raw)}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected, found = int(np.prod(dims, dtype=np.int64)), len(raw) - header
    if found != expected:
        raise ValueError(
            f"{path}: data length mismatch for dims {dims}: "
            f"expected {expected} bytes, found {found}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_mnist_arrays(images_path: PathLike,
                      labels_path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read a pair of MNIST-style IDX files into flat numpy arrays.

    Parameters
    ----------
    images_path, labels_path : str or os.PathLike
        3-D IDX file of ``n`` images (``rows x cols``) and 1-D IDX file of ``n`` labels.

    Returns
    -------
    images, labels : numpy.ndarray
        ``uint8`` of shape ``(n, rows * cols)`` and ``int64`` of shape ``(n,)``.

    Raises
    ------
    ValueError
        If the dimensions are wrong or the counts differ; see also :func:`read_idx`.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{os.fspath(images_path)}: expected 3-D images (n, rows, cols), "
                         f"found shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{os.fspath(labels_path)}: expected 1-D labels, "
                         f"found shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"image/label count mismatch: {os.fspath(images_path)} has {images.shape[0]} images "
            f"but {os.fspath(labels_path)} has {labels.shape[0]} labels"
        )
    return images.reshape(images.shape[0], -1), labels.astype(np.int64)


def _default_partitions(spark: "SparkSession") -> int:
    try:  # Spark Connect sessions have no SparkContext: the attribute access raises
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - whatever the failure, there is no default to use
        return 2


def _slice_frame(images: np.ndarray, labels: np.ndarray, start: int) -> "pd.DataFrame":
    """pandas DataFrame (id, features, label) for one slice of rows; vectorized nonzero scan."""
    import pandas as pd
    from pyspark.ml.linalg import SparseVector

    size = images.shape[1]
    rows, cols = np.nonzero(images)
    ends = np.cumsum(np.bincount(rows, minlength=len(images))).tolist()
    index_bytes = cols.astype(np.int32).tobytes()
    value_bytes = images[rows, cols].astype(np.float64).tobytes()
    # The bytes form of the constructor skips SparseVector's per-element Python checks.
    vectors, lo = [], 0
    for hi in ends:
        vectors.append(SparseVector(size, index_bytes[4 * lo:4 * hi], value_bytes[8 * lo:8 * hi]))
        lo = hi
    ids = np.arange(start, start + len(images), dtype=np.int64)
    return pd.DataFrame({"id": ids, "features": vectors, "label": labels.astype(np.int32)})


def images_to_dataframe(spark: "SparkSession", images: np.ndarray, labels: np.ndarray,
                        num_partitions: Optional[int] = None) -> "DataFrame":
    """Spark DataFrame (``id``, ``features``, ``label``) from flat image and label arrays.

    Rows go to Spark in slices of at most 10,000 through pandas and Arrow; each of
    the ``num_partitions`` partitions holds a contiguous range of ids.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        Classic or Spark Connect session.
    images, labels : numpy.ndarray
        Shapes ``(n, size)`` (pixel values 0-255) and ``(n,)`` (integer labels).
    num_partitions : int, optional
        Defaults to ``spark.sparkContext.defaultParallelism``, or 2 where there is none.

    Returns
    -------
    pyspark.sql.DataFrame
    """
    from functools import reduce

    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import IntegerType, LongType, StructField, StructType

    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 2 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"expected images (n, size) and labels (n,), got {images.shape} "
                         f"and {labels.shape}")
    parts = _default_partitions(spark) if num_partitions is None else int(num_partitions)
    if parts < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    schema = StructType([StructField("id", LongType(), False),
                         StructField("features", VectorUDT(), False),
                         StructField("label", IntegerType(), False)])
    n, frames = len(images), []
    bounds = np.linspace(0, n, min(parts, max(n, 1)) + 1).astype(np.int64).tolist()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for start in range(lo, hi, _SLICE_ROWS):
            stop = min(hi, start + _SLICE_ROWS)
            pdf = _slice_frame(images[start:stop], labels[start:stop], start)
            frames.append(spark.createDataFrame(pdf, schema=schema))
    if not frames:
        return spark.createDataFrame([], schema=schema)
    # Adjacent slices merge without a shuffle, so partitions keep contiguous id ranges.
    return reduce(lambda a, b: a.unionAll(b), frames).coalesce(parts)


def read_mnist_idx(spark: "SparkSession", images_path: PathLike, labels_path: PathLike,
                   num_partitions: Optional[int] = None) -> "DataFrame":
    """Read MNIST-style IDX image and label files into a Spark DataFrame.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        Classic or Spark Connect session.
    images_path, labels_path : str or os.PathLike
        IDX files on the driver, gzip-compressed or not (see :func:`load_mnist_arrays`).
    num_partitions : int, optional
        See :func:`images_to_dataframe`.

    Returns
    -------
    pyspark.sql.DataFrame
        ``id`` (long), ``features`` (SparseVector, ``rows * cols`` floats 0-255), ``label`` (int).
    """
    t0 = time.perf_counter()
    images, labels = load_mnist_arrays(images_path, labels_path)
    df = images_to_dataframe(spark, images, labels, num_partitions)
    logger.info("read %d images of %d pixels from %s in %.2f s", len(images), images.shape[1],
                os.fspath(images_path), time.perf_counter() - t0)
    return df


def mnist_sample_paths() -> Tuple[str, str]:
    """Paths of the bundled 5,000-image MNIST sample (IDX, gzip): ``(images, labels)``."""
    resources = files("sparkae") / "resources"
    return str(resources / SAMPLE_IMAGES), str(resources / SAMPLE_LABELS)


def load_mnist_sample(spark: "SparkSession", num_partitions: Optional[int] = None) -> "DataFrame":
    """The bundled 5,000-image MNIST sample as a DataFrame; see :func:`read_mnist_idx`.

    Its rows are ordered by label (500 of each digit): shuffle before splitting
    it into batches by position.
    """
    return read_mnist_idx(spark, *mnist_sample_paths(), num_partitions=num_partitions)


def shifted_digits(images: np.ndarray, n: int, max_shift: int = 2, seed: int = 0,
                   return_index: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Draw ``n`` images with random integer x/y shifts of up to ``max_shift`` pixels.

    Pixels shifted out of the frame are dropped and the gap is filled with zeros.
    The draw depends only on ``seed`` (not on the chunking used internally).

    Parameters
    ----------
    images : numpy.ndarray
        Source images, shape ``(m, side * side)`` or ``(m, rows, cols)``.
    n : int
        Number of images to produce.
    max_shift, seed : int
        Largest shift in pixels along each axis; seed of :func:`numpy.random.default_rng`.
    return_index : bool, default False
        Also return the source row of each output image (to look up its label).

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        ``uint8`` images of shape ``(n, rows * cols)``; with ``return_index`` also
        the ``int64`` source indices of shape ``(n,)``.
    """
    src = np.asarray(images)
    if src.ndim == 2:
        side = int(round(src.shape[1] ** 0.5))
        if side * side != src.shape[1]:
            raise ValueError(f"flat images need a square pixel count, got {src.shape[1]}")
        src = src.reshape(len(src), side, side)
    if src.ndim != 3 or len(src) == 0:
        raise ValueError("expected a non-empty (m, rows, cols) or (m, pixels) array, "
                         f"got {src.shape}")
    m, h, w = src.shape
    if n < 0 or not 0 <= max_shift < min(h, w):
        raise ValueError(f"need n >= 0 and 0 <= max_shift < {min(h, w)}, got n={n}, "
                         f"max_shift={max_shift}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, m, size=n)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))  # (dy, dx)
    out = np.zeros((n, h, w), dtype=np.uint8)
    for lo in range(0, n, 65_536):
        hi = min(n, lo + 65_536)
        chunk, dy, dx = src[index[lo:hi]], shifts[lo:hi, 0], shifts[lo:hi, 1]
        for sy in range(-max_shift, max_shift + 1):
            for sx in range(-max_shift, max_shift + 1):
                sel = np.flatnonzero((dy == sy) & (dx == sx))
                if sel.size:
                    out[lo + sel, max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
                        chunk[sel, max(-sy, 0):h + min(-sy, 0), max(-sx, 0):w + min(-sx, 0)]
    out = out.reshape(n, h * w)
    return (out, index.astype(np.int64)) if return_index else out
