"""The training data of one fit: materialized (or reused) training and validation tables,
the loader that reads them, and whether batches stay sparse.

Batches are CSR (sparse into the first layer, :mod:`sparkae.nn.sparse`) when the input is
wide and sparse: at least :data:`SPARSE_MIN_WIDTH` features and at most
:data:`SPARSE_MAX_DENSITY` of the entries stored (read from the Parquet footers), and
no input noise is configured (noise is applied to dense batches). The Spark conf
``spark.sparkae.sparseBatches`` = ``true`` | ``false`` overrides the choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, List, Optional

from pyspark.sql import DataFrame

from sparkae.data import cache, petastorm
from sparkae.data.converter import parquet_files, table_layout

log = logging.getLogger("sparkae")

SPARSE_MIN_WIDTH = 1000
SPARSE_MAX_DENSITY = 0.1
#: Spark conf forcing sparse (``true``) or dense (``false``) batches.
SPARSE_CONF = "spark.sparkae.sparseBatches"


@dataclass
class TrainingData:
    """Where a fit's ranks read their data, and how."""

    train: List[str]
    valid: Optional[List[str]]
    loader: str
    sparse: bool
    density: float
    key: Optional[str]
    fingerprint: str
    handles: List[cache.Materialized] = field(default_factory=list)

    def release(self) -> None:
        """Delete what this fit materialized for itself (kept entries stay)."""
        for h in self.handles:
            h.release()


def choose_sparse(size: int, density: float, noisy: bool, setting: Optional[str]) -> bool:
    """Sparse CSR batches or dense ones (see the module docstring).

    Raises
    ------
    ValueError
        ``spark.sparkae.sparseBatches`` is not true/false/auto, or is true with input noise.
    """
    setting = (setting or "auto").strip().lower()
    if setting not in ("auto", "true", "false"):
        raise ValueError(f"Spark conf {SPARSE_CONF}: got {setting!r}, expected 'true', "
                         "'false' or 'auto'")
    if setting == "true":
        if noisy:
            raise ValueError(f"Spark conf {SPARSE_CONF}=true: sparse batches do not support "
                             "input noise (noise, input_dropout_ratio); unset one of them")
        return True
    if setting == "false":
        return False
    return size >= SPARSE_MIN_WIDTH and density <= SPARSE_MAX_DENSITY and not noisy


def _one(spark: Any, df: DataFrame, stats: Any, root: str, keep: bool, loader: str,
         role: str, handles: List[cache.Materialized]) -> tuple:
    key = cache.plan_key(df, stats)
    entry = cache.materialize_cached(df, root, key, keep, role)
    handles.append(entry)
    files = parquet_files(entry.path)
    if loader == "petastorm":
        converter = petastorm.materialize(spark, entry.path, root)
        if not keep:  # Petastorm's copy goes at the end of the fit too
            handles.append(cache.Materialized(local_dir(converter), None, owned=True,
                                              cleanup=[converter.delete]))
        files = petastorm.files_of(converter)
    return key, files


def local_dir(converter: Any) -> str:
    """The converter's directory: a local path for ``file:`` URLs, else the URL."""
    from sparkae.data.converter import local_path

    url = converter.cache_dir_url
    return local_path(url) if url.startswith("file:") else url


def materialize_for_training(spark: Any, vectors: DataFrame, stats: Any,
                             valid_vectors: Optional[DataFrame], valid_stats: Any, size: int, *,
                             cache_dir: Optional[str], keep: bool, loader: str,
                             noisy: bool, cache_fallback: Optional[str] = None) -> TrainingData:
    """Materialize (or reuse) the prepared training and validation features.

    Parameters
    ----------
    spark : SparkSession
    vectors, valid_vectors : DataFrame
        Prepared ``features`` columns (validation optional).
    stats, valid_stats : FeatureStats
        Their statistics (part of the cache key).
    size : int
        Input width.
    cache_dir, keep : see the ``cache_dir`` and ``keep_cache`` Params.
    loader : {"arrow", "petastorm"}
        The resolved ``data_loader`` (:func:`sparkae.data.petastorm.resolve_loader`).
    noisy : bool
        Input noise is configured (forces dense batches).
    cache_fallback : str, optional
        Where to materialize when neither ``cache_dir`` nor ``spark.sparkae.cacheDir`` is
        set (the fit's ``checkpoint_dir/_cache``).
    """
    root = cache.cache_root(spark, cache_dir, cache_fallback)
    handles: List[cache.Materialized] = []
    try:
        key, train = _one(spark, vectors, stats, root, keep, loader, "training data", handles)
        valid = None
        if valid_vectors is not None:
            _, valid = _one(spark, valid_vectors, valid_stats, root, keep, loader,
                            "validation_df", handles)
        sparse, density = _layout(spark, handles[0].path, size, noisy, loader)
    except BaseException:
        for h in handles:
            h.release()
        raise
    return TrainingData(train, valid, loader, sparse, density, key, cache.fingerprint(stats),
                        handles)


def _layout(spark: Any, path: str, size: int, noisy: bool, loader: str) -> tuple:
    """``(sparse batches?, density)`` of the materialized training table at ``path``."""
    rows, nnz, density = table_layout(parquet_files(path), size)
    try:
        setting = spark.conf.get(SPARSE_CONF, None)
    except Exception:  # noqa: BLE001
        setting = None
    sparse = choose_sparse(size, density, noisy, setting)
    log.info("training data: %d rows x %d features, %.3g%% stored, %s batches, %s loader",
             rows, size, 100 * density, "sparse CSR" if sparse else "dense", loader)
    return sparse, density


def training_data_from(entry: cache.Materialized, stats: Any, size: int, noisy: bool,
                       spark: Any, valid: Optional[cache.Materialized] = None) -> TrainingData:
    """The training data of a table already materialized (or held in memory) for the Arrow
    loader by :mod:`sparkae.data.local_prepare`, with the validation rows of ``valid``
    when given; releases both when the layout cannot be read."""
    handles = [entry] + ([valid] if valid is not None else [])
    try:
        sparse, density = _layout(spark, entry.path, size, noisy, "arrow")
    except BaseException:
        for h in handles:
            h.release()
        raise
    return TrainingData(parquet_files(entry.path),
                        parquet_files(valid.path) if valid is not None else None, "arrow",
                        sparse, density, None, cache.fingerprint(stats), handles)
