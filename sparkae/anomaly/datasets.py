"""Development data sets for anomaly detection, rebuilt from data that ships in packages.

Every builder is deterministic given ``seed`` and returns an :class:`AnomalySet`: a dense
``float64`` matrix ``x``, a boolean ``y`` (True = planted or rare-class anomaly) and a name.
The recipes follow ODDS (http://odds.cs.stonybrook.edu) where ODDS has one:

- ``wdbc``: scikit-learn's breast cancer, all 357 benign rows plus 10 sampled malignant;
- ``wine``: scikit-learn's wine, classes 1 and 2 as inliers plus 10 sampled rows of class 0;
- ``digits``: scikit-learn's 8x8 digits, one class downsampled to a small share;
- ``mnist``: the bundled 5,000-image MNIST sample (or the official test set), nine digits
  as inliers and a few rows of the held-out digit;
- ``synthetic``: correlated Gaussian inliers with planted anomalies off their subspace;
- :func:`sparse_set`: a wide sparse set (topics of co-occurring features; anomalies mix
  features from random topics), built in chunks as SciPy CSR and, for the scale benchmark,
  written to Parquet chunk by chunk by :func:`write_sparse_parquet`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class AnomalySet:
    """One labelled anomaly-detection data set (labels are used only for evaluation)."""

    name: str
    x: np.ndarray
    y: np.ndarray

    @property
    def share(self) -> float:
        """Share of anomalies."""
        return float(np.mean(self.y))


def _rare(x: np.ndarray, is_rare: np.ndarray, n_rare: int, seed: int, name: str) -> AnomalySet:
    rng = np.random.default_rng(seed)
    rare = np.flatnonzero(is_rare)
    keep = np.concatenate([np.flatnonzero(~is_rare),
                           np.sort(rng.choice(rare, size=min(n_rare, len(rare)),
                                              replace=False))])
    order = rng.permutation(len(keep))
    idx = keep[order]
    return AnomalySet(name, np.asarray(x, dtype=np.float64)[idx], np.asarray(is_rare)[idx])


def wdbc(seed: int = 0) -> AnomalySet:
    """Breast cancer, ODDS's WDBC recipe: 357 benign plus 10 sampled malignant (367 x 30)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return _rare(data.data, data.target == 0, 10, seed, "wdbc")   # target 0 = malignant


def wine(seed: int = 0) -> AnomalySet:
    """Wine, ODDS's recipe: classes 1 and 2 plus 10 sampled rows of class 0 (129 x 13)."""
    from sklearn.datasets import load_wine

    data = load_wine()
    return _rare(data.data, data.target == 0, 10, seed, "wine")


def digits(rare_class: int = 0, share: float = 0.03, seed: int = 0) -> AnomalySet:
    """8x8 digits: the other nine classes plus ``share`` (of the inliers) rows of
    ``rare_class`` (about 1,620 + 49 rows x 64)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    rare = data.target == rare_class
    return _rare(data.data, rare, int(round(share * np.sum(~rare))), seed,
                 f"digits-{rare_class}")


def mnist(held_out: int = 0, share: float = 0.02, seed: int = 0,
          images_path: Optional[str] = None, labels_path: Optional[str] = None) -> AnomalySet:
    """MNIST with one digit held out: the other nine digits plus ``share`` (of the inliers)
    rows of ``held_out``. Default source: the bundled 5,000-image sample (4,500 + 90 rows x
    784, pixels 0-255); ``images_path``/``labels_path`` select IDX files instead."""
    from sparkae.datasets import load_mnist_arrays, mnist_sample_paths

    if images_path is None:
        images_path, labels_path = mnist_sample_paths()
    images, labels = load_mnist_arrays(images_path, labels_path)
    images = images.reshape(len(images), -1)
    rare = labels == held_out
    return _rare(images, rare, int(round(share * np.sum(~rare))), seed, f"mnist-{held_out}")


def synthetic(n: int = 2_000, d: int = 20, rank: int = 4, share: float = 0.03,
              seed: int = 0) -> AnomalySet:
    """Correlated Gaussian inliers (``rank``-dimensional structure, heavy-tailed scales per
    feature) and anomalies that break the correlations while keeping each feature's range."""
    rng = np.random.default_rng(seed)
    n_out = int(round(share * n))
    z = rng.normal(size=(n, rank))
    w = rng.normal(size=(rank, d))
    x = z @ w + 0.3 * rng.normal(size=(n, d))
    out = rng.choice(n, size=n_out, replace=False)
    # anomalies: each feature drawn independently from the inliers' marginal (shuffled
    # columns), so that no single feature is out of range
    donors = rng.integers(0, n, size=(n_out, d))
    x[out] = x[donors, np.arange(d)]
    scale = np.exp(rng.normal(scale=1.5, size=d))
    x = x * scale + rng.normal(scale=5, size=d)
    y = np.zeros(n, dtype=bool)
    y[out] = True
    return AnomalySet("synthetic", x, y)


def sparse_chunks(n_rows: int, n_cols: int, nnz: int = 20, topics: int = 50,
                  share: float = 0.01, seed: int = 0, chunk: int = 100_000
                  ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Generate a sparse set chunk by chunk: ``(indptr, indices, values, y)`` per chunk
    (the CSR arrays of the chunk's rows and their anomaly labels).

    Each inlier row picks one topic (a fixed random set of ``4 * nnz`` columns) and draws
    ``nnz`` of its columns with log-normal values; an anomaly draws its ``nnz`` columns from
    two random topics plus uniformly random columns, so it breaks co-occurrence only. A
    chunk depends on ``seed`` and its position only, never on the chunk size's history.
    """
    master = np.random.default_rng(seed)
    width = min(n_cols, 4 * nnz)
    topic_cols = np.stack([np.sort(master.choice(n_cols, size=width, replace=False))
                           for _ in range(topics)])
    for c, lo in enumerate(range(0, n_rows, chunk)):
        m = min(chunk, n_rows - lo)
        rng = np.random.default_rng([seed, c])
        y = rng.random(m) < share
        topic = rng.integers(0, topics, size=m)
        pick = np.argsort(rng.random((m, width)), axis=1)[:, :nnz]
        cols = topic_cols[topic[:, None], pick]
        na = int(y.sum())
        if na:
            half = nnz // 2
            t2 = rng.integers(0, topics, size=na)
            cols[y, half:] = topic_cols[t2[:, None], pick[y, half:]]
            cols[y, : nnz // 4] = rng.integers(0, n_cols, size=(na, nnz // 4))
        cols.sort(axis=1)
        # dedupe within a row (random columns may repeat): keep the first, zero the rest
        dup = np.zeros_like(cols, dtype=bool)
        dup[:, 1:] = cols[:, 1:] == cols[:, :-1]
        vals = np.exp(rng.normal(scale=0.5, size=(m, nnz)))
        vals[dup] = 0.0
        counts = (~dup).sum(axis=1)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        yield indptr, cols[~dup].astype(np.int32), vals[~dup], y


def sparse_set(n_rows: int = 20_000, n_cols: int = 2_000, seed: int = 0,
               **kwargs) -> Tuple["object", np.ndarray]:
    """A whole sparse set in memory: ``(scipy.sparse.csr_matrix, y)`` (small sizes only)."""
    import scipy.sparse as sp

    mats, ys = [], []
    for indptr, indices, values, y in sparse_chunks(n_rows, n_cols, seed=seed, **kwargs):
        mats.append(sp.csr_matrix((values, indices, indptr), shape=(len(y), n_cols)))
        ys.append(y)
    return sp.vstack(mats).tocsr(), np.concatenate(ys)


def write_sparse_parquet(path: str, n_rows: int, n_cols: int, seed: int = 0,
                         chunk: int = 100_000, **kwargs) -> str:
    """Write :func:`sparse_chunks` to a local Parquet directory, one file per chunk, with
    columns ``id`` (long), ``features`` (Spark ML's vector layout: struct of type, size,
    indices, values; read it with :func:`read_sparse_parquet`) and ``label`` (boolean)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(path, exist_ok=True)
    start = 0
    for c, (indptr, indices, values, y) in enumerate(
            sparse_chunks(n_rows, n_cols, seed=seed, chunk=chunk, **kwargs)):
        m = len(y)
        ind = pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), pa.array(indices))
        val = pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)),
                                       pa.array(values, pa.float64()))
        vec = pa.StructArray.from_arrays(
            [pa.array(np.zeros(m, np.int8)), pa.array(np.full(m, n_cols, np.int32)), ind, val],
            names=["type", "size", "indices", "values"])
        table = pa.table({"id": pa.array(np.arange(start, start + m, dtype=np.int64)),
                          "features": vec, "label": pa.array(y)})
        pq.write_table(table, os.path.join(path, f"part-{c:05d}.parquet"))
        start += m
    logger.info("wrote %d x %d sparse rows to %s", n_rows, n_cols, path)
    return path


def read_sparse_parquet(spark, path: str):
    """Read :func:`write_sparse_parquet`'s output with ``features`` as a Spark ML vector."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import BooleanType, LongType, StructField, StructType

    schema = StructType([StructField("id", LongType()), StructField("features", VectorUDT()),
                         StructField("label", BooleanType())])
    return spark.read.schema(schema).parquet(path)


#: The development sets by name (each a no-argument builder with its default seed).
DEVELOPMENT_SETS: Dict[str, Callable[[], AnomalySet]] = {
    "wdbc": wdbc,
    "wine": wine,
    "digits-0": lambda: digits(0),
    "digits-8": lambda: digits(8),
    "mnist-0": lambda: mnist(0),
    "mnist-7": lambda: mnist(7),
    "synthetic": synthetic,
}


def sparse_dense_set(n_rows: int = 5_000, n_cols: int = 500, seed: int = 0) -> AnomalySet:
    """A small :func:`sparse_set` as a dense matrix (for methods that need dense input)."""
    x, y = sparse_set(n_rows, n_cols, seed=seed, nnz=10, topics=20, share=0.02)
    return AnomalySet("sparse", np.asarray(x.todense()), y)


def topics_set(n_rows: int = 10_000, n_cols: int = 1_000, seed: int = 0) -> AnomalySet:
    """The scale run's clustered sparse layout (:func:`sparse_chunks`' defaults: 50 topics,
    20 non-zeros a row, 1 % anomalies) at a size small enough to hold dense."""
    x, y = sparse_set(n_rows, n_cols, seed=seed)
    return AnomalySet("topics", np.asarray(x.todense()), y)


DEVELOPMENT_SETS["sparse"] = sparse_dense_set
DEVELOPMENT_SETS["topics"] = topics_set
