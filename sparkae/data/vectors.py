"""Spark ``ml.linalg`` vectors in Arrow, decoded to NumPy without a Python object per row.

Spark writes vectors to Parquet (and sends them through Arrow) as their SQL struct
``(type: int8, size: int, indices: list<int>, values: list<double>)``; type 0 is sparse,
1 is dense. :func:`decode_vectors` turns such a column into flat (row, column, value)
components; :func:`decode_table` turns a table of them into a row block (a dense matrix
when every row is dense). The same four fields may also be top-level columns (the layout
the Petastorm loader reads).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparkae.data.arrow_numpy import numpy_view
from sparkae.data.batches import Block, CsrRows, DenseRows, scatter_rows

#: Name of the single feature column of a prepared DataFrame and of the materialized
#: Parquet (sparkae.data.prepare builds it; kept here so that a rank reading the Parquet
#: does not import Spark ML).
FEATURES = "features"
#: Names of the vector struct's fields (also the flat layout's columns).
VECTOR_FIELDS = ("type", "size", "indices", "values")


def entry_columns(sparse: np.ndarray, lengths: np.ndarray, indices: pa.Array,
                  role: str = "features", dtype: Any = np.int64) -> np.ndarray:
    """The column (``dtype``, default int64) of every stored entry of Spark vectors, rows
    in order: a sparse row's indices, ``0 .. n-1`` for a dense row's ``n`` values.
    ``sparse`` marks the sparse rows, ``lengths`` counts each row's values, ``indices`` is
    the struct's indices field. With ``np.int32`` (Spark's own index type) the indices of
    an all-sparse batch are a view of Arrow's buffer, not a copy.

    Raises
    ------
    ValueError
        The sparse rows hold another number of indices than of values.
    """
    total = int(lengths.sum())
    if len(sparse) and sparse.all():   # every row sparse (Spark's usual choice): no mask
        cols = numpy_view(indices.flatten()).astype(dtype, copy=False)
        _one_index_per_value(len(cols), total, role)
        return cols
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    if sparse.any():
        at = np.repeat(sparse, lengths)
        idx = numpy_view(indices.flatten())
        _one_index_per_value(len(idx), int(np.count_nonzero(at)), role)
        cols[at] = idx
    return cols.astype(dtype, copy=False)


def _one_index_per_value(indices: int, values: int, role: str) -> None:
    if indices != values:
        raise ValueError(f"{role}: sparse vectors hold {indices} indices for {values} values; "
                         "each index needs one value")


def vector_arrays(types: pa.Array, sizes: pa.Array, indices: pa.Array, values: pa.Array,
                  dtype: Any = np.float32, col_dtype: Any = np.int64
                  ) -> Tuple[np.ndarray, ...]:
    """The fields of Spark vectors (``VectorUDT``'s struct) as flat NumPy arrays, unchecked
    but for one index per sparse value (:func:`entry_columns`):
    ``(lengths, cols, vals, widths)`` = stored entries per row, the column of every stored
    entry (as ``col_dtype``), its value (as ``dtype``) and each row's vector size."""
    lengths = pc.list_value_length(values)
    # (fill_null builds a pyarrow scalar, which imports pandas: only where there are nulls)
    lengths = numpy_view(lengths.fill_null(0) if lengths.null_count else lengths)
    lengths = lengths.astype(np.int64)
    vals = numpy_view(values.flatten()).astype(dtype, copy=False)
    sparse = numpy_view(types) == 0
    cols = entry_columns(sparse, lengths, indices, dtype=col_dtype)
    if len(sparse) and sparse.all():
        widths = numpy_view(sizes).astype(np.int64)
    else:
        widths = lengths.copy()
        if sparse.any():
            # (the sparse rows' sizes are set; a filter's pa.array(mask) imports pandas)
            widths[sparse] = numpy_view(sizes, nulls_undefined=True)[sparse]
    return lengths, cols, vals, widths


def dense_matrix(types: pa.Array, values: pa.Array, size: Optional[int] = None,
                 dtype: Any = np.float32) -> Optional[np.ndarray]:
    """The rows as one ``dtype`` matrix (rows x width) when every row is a dense vector
    (type 1, no null) of one width (``size`` when given), else None: the common layout of
    dense features, decoded without the column index of every value that
    :func:`vector_arrays` builds."""
    n = len(types)
    if n == 0 or types.null_count or values.null_count:
        return None
    if not (numpy_view(types) == 1).all():
        return None
    lengths = numpy_view(pc.list_value_length(values))
    width = int(lengths[0])
    if (size is not None and width != size) or width < 1 or (lengths != width).any():
        return None
    flat = values.flatten()
    if flat.null_count:
        return None
    return numpy_view(flat).astype(dtype, copy=False).reshape(n, width)


def _decode_parts(types: pa.Array, sizes: pa.Array, indices: pa.Array, values: pa.Array,
                  size: int, role: str, col_dtype: Any = np.int64):
    lengths, cols, vals, widths = vector_arrays(types, sizes, indices, values,
                                                col_dtype=col_dtype)
    bad = np.flatnonzero(widths != size)
    if len(bad):
        raise ValueError(f"{role}: a vector has {int(widths[bad[0]])} features where the model "
                         f"expects {size}; every row must have the same width")
    if len(cols) and (cols.min() < 0 or cols.max() >= size):
        raise ValueError(f"{role}: a sparse vector has an index outside [0, {size})")
    return lengths, cols, vals


def decode_vectors(col: pa.Array, size: int, role: str = "features"):
    """Decode an Arrow column of Spark vectors into flat components.

    Parameters
    ----------
    col : pyarrow.Array or ChunkedArray
        Struct column as Spark writes ``VectorUDT``.
    size : int
        Expected width of every vector.
    role : str
        Name used in error messages.

    Returns
    -------
    lengths : ndarray of int64, one per row (stored entries per row)
    cols : ndarray of int64, column index of every stored entry
    vals : ndarray of float32, every stored value

    Raises
    ------
    ValueError
        When a vector's width differs from ``size``.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return _decode_parts(*col.flatten(), size, role)


def decode_table(table: pa.Table, size: int, role: str = "features") -> Block:
    """A row block from a table in either layout (struct ``features`` column, or the flat
    ``type``/``size``/``indices``/``values`` columns): a :class:`DenseRows` block when
    every row is a dense vector of width ``size`` (:func:`dense_matrix`), else a
    :class:`CsrRows` block (its int32 columns taken from the indices without a copy when
    every row is sparse)."""
    if FEATURES in table.column_names:
        col = table.column(FEATURES)
        parts = (col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col).flatten()
    else:
        parts = [table.column(f).combine_chunks() for f in VECTOR_FIELDS]
    x = dense_matrix(parts[0], parts[3], size)
    if x is not None:
        return DenseRows(x)
    return CsrRows.from_lengths(*_decode_parts(*parts, size, role, np.int32), size)


def to_dense(lengths: np.ndarray, cols: np.ndarray, vals: np.ndarray, size: int) -> np.ndarray:
    """Dense float32 matrix (rows x size) from :func:`decode_vectors` components."""
    return scatter_rows(lengths, cols, vals, size)
