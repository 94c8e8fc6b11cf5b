"""The Petastorm loader (``data_loader="petastorm"``), for PySpark 3.5-era runtimes.

Petastorm (0.12, numpy < 2, pyarrow < 15) materializes with ``make_spark_converter`` and
reads with its own reader. Two of its habits do not fit sparkae's data path, and are
worked around here:

- it converts vector columns to dense arrays; so the prepared vectors are handed to the
  converter as their four struct fields (``type``, ``size``, ``indices``, ``values``),
  read back from sparkae's own materialized copy, and stay sparse;
- its batch reader needs lists of one length per row group, and its ``cur_shard`` /
  ``shard_count`` sharding hands out whole row groups round-robin, which leaves ranks
  with different row counts (DistributedDataParallel then hangs at the end of an epoch).
  So a ``TransformSpec`` pads each row group's lists to its longest row (index -1 marks
  padding), and the shard plan of :mod:`sparkae.data.shards` chooses the row groups:
  each is read with ``cur_shard=group, shard_count=groups`` of its file.

Both loaders therefore produce the same batches for the same materialized files and
seed. :func:`available` says whether Petastorm imports here.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, List, Optional

import numpy as np

from sparkae.data.batches import CsrRows
from sparkae.data.converter import ROW_GROUP_BYTES, Unit, local_path
from sparkae.data.vectors import VECTOR_FIELDS

log = logging.getLogger("sparkae")

#: Spark conf where Petastorm's converter materializes (set to ``<cache>/petastorm``).
PARENT_CONF = "petastorm.spark.converter.parentCacheDirUrl"
#: Loader names accepted by the ``data_loader`` Param.
LOADERS = ("auto", "petastorm", "arrow")

_converters: List[Any] = []


def import_error() -> Optional[str]:
    """None when Petastorm imports, else why not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import petastorm  # noqa: F401
            from petastorm.spark import make_spark_converter  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return f"{type(exc).__name__}: {exc}"
    return None


def available() -> bool:
    """True when Petastorm and its Spark converter import."""
    return import_error() is None


def resolve_loader(name: str) -> str:
    """``"arrow"`` or ``"petastorm"`` for a ``data_loader`` value; logs the choice.

    Raises
    ------
    ValueError
        An unknown name, or ``"petastorm"`` where Petastorm does not import.
    """
    if name not in LOADERS:
        raise ValueError(f"Autoencoder param 'data_loader': got {name!r}, expected one of "
                         + ", ".join(repr(n) for n in LOADERS))
    if name == "arrow":
        log.info("data loader: arrow (sparkae's Parquet reader)")
        return "arrow"
    problem = import_error()
    if problem is None:
        log.info("data loader: petastorm%s", " (auto: petastorm imports)" if name == "auto" else "")
        return "petastorm"
    if name == "petastorm":
        raise ValueError("Autoencoder param 'data_loader': got 'petastorm', but Petastorm does "
                         f"not import here ({problem}); it needs a PySpark 3.5-era stack "
                         "(numpy < 2, pyarrow < 15). Use 'arrow' or 'auto'")
    log.info("data loader: arrow (auto: petastorm does not import: %s)", problem)
    return "arrow"


def materialize(spark: Any, vector_dir: str, cache_root: str) -> Any:
    """Materialize a sparkae vector directory with ``make_spark_converter``.

    Returns the ``SparkDatasetConverter`` (its ``file_urls`` are the files to read).
    """
    from petastorm.spark import make_spark_converter

    if not spark.conf.get(PARENT_CONF, None):
        from sparkae.io.uri import join, parse

        root = parse(cache_root, "cache_dir")   # Petastorm reaches URIs with its own clients
        spark.conf.set(PARENT_CONF, "file://" + os.path.join(root.path, "petastorm")
                       if root.is_local else join(root.text, "petastorm"))
    struct = "features struct<type:tinyint,size:int,indices:array<int>,values:array<double>>"
    # The files in name order (part-00000, ...), so that the converter's partitions, and the
    # row order of its output, are the same for every materialization of the same data.
    from sparkae.data.converter import parquet_files

    flat = spark.read.schema(struct).parquet(*parquet_files(vector_dir)).select("features.*")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converter = make_spark_converter(flat, parquet_row_group_size_bytes=ROW_GROUP_BYTES,
                                         dtype="float32")
    _converters.append(converter)
    log.info("petastorm: materialized %d rows to %s", len(converter), converter.cache_dir_url)
    return converter


def forget_converters() -> None:
    """Delete the data of every converter this process made (``clear_cache``)."""
    while _converters:
        try:
            _converters.pop().delete()
        except Exception as exc:  # noqa: BLE001 - best effort
            log.debug("petastorm: could not delete a converter: %s", exc)


def _pad_rows(df):
    """TransformSpec function: pad each row's ``indices``/``values`` to the row group's
    longest row (index -1 = padding); dense rows get their positions as indices."""
    import pandas as pd

    values = [np.asarray(v if v is not None else (), dtype=np.float32) for v in df["values"]]
    indices = [np.asarray(i, dtype=np.int32) if t == 0 and i is not None
               else np.arange(len(v), dtype=np.int32)
               for t, i, v in zip(df["type"], df["indices"], values)]
    width = max((len(v) for v in values), default=0)
    ell_i = np.full((len(values), width), -1, dtype=np.int32)
    ell_v = np.zeros((len(values), width), dtype=np.float32)
    for r, (i, v) in enumerate(zip(indices, values)):
        ell_i[r, :len(i)] = i
        ell_v[r, :len(v)] = v
    width_col = [int(s) if t == 0 else len(v)
                 for t, s, v in zip(df["type"], df["size"], values)]
    return pd.DataFrame({"size": np.asarray(width_col, dtype=np.int32),
                         "indices": list(ell_i), "values": list(ell_v)})


def _transform_spec():
    from petastorm import TransformSpec

    return TransformSpec(_pad_rows,
                         edit_fields=[("size", np.int32, (), False),
                                      ("indices", np.int32, (None,), False),
                                      ("values", np.float32, (None,), False)],
                         removed_fields=["type"])


def read_unit(unit: Unit, size: int, role: str) -> CsrRows:
    """Read one row group through Petastorm's batch reader and decode it."""
    from petastorm import make_batch_reader

    url = unit.path if "://" in unit.path else "file://" + os.path.abspath(unit.path)
    blocks: List[CsrRows] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = make_batch_reader(url, schema_fields=list(VECTOR_FIELDS), num_epochs=1,
                                   cur_shard=unit.group, shard_count=unit.groups,
                                   shuffle_row_groups=False, workers_count=1,
                                   reader_pool_type="dummy", transform_spec=_transform_spec())
        with reader:
            for part in reader:
                blocks.append(_decode_padded(part.indices, part.values, part.size, size, role))
    if not blocks:
        return CsrRows(np.zeros(1, dtype=np.int64), np.zeros(0, np.int32),
                       np.zeros(0, np.float32), size)
    return CsrRows.concat(blocks)


def _decode_padded(indices: np.ndarray, values: np.ndarray, widths: np.ndarray, size: int,
                   role: str) -> CsrRows:
    indices = np.asarray(indices).reshape(len(widths), -1)
    values = np.asarray(values).reshape(len(widths), -1)
    bad = np.flatnonzero(np.asarray(widths) != size)
    if len(bad):
        raise ValueError(f"{role}: a vector has {int(widths[bad[0]])} features where the model "
                         f"expects {size}; every row must have the same width")
    mask = indices >= 0
    cols = indices[mask]
    if len(cols) and int(cols.max()) >= size:
        raise ValueError(f"{role}: a sparse vector has an index outside [0, {size})")
    return CsrRows.from_lengths(mask.sum(axis=1), cols, values[mask], size)


def files_of(converter: Any) -> List[str]:
    """The Parquet files of a converter in name order (part-00000, ...), as URLs."""
    return sorted(u if not u.startswith("file:") else "file://" + local_path(u)
                  for u in converter.file_urls)
