"""Arrow columns <-> NumPy row blocks for scoring, without a Python object per row.

A scoring worker receives its input as one Arrow column per batch: a Spark vector as its
SQL struct ``(type: int8, size: int32, indices: list<int32>, values: list<double>)``
(type 0 is sparse, 1 dense), or a list of numbers (an ``array<float|double>`` column, or
``features_cols`` packed into one array). :func:`decode_rows` turns either into a
:class:`RowBlock` by reading Arrow's flat buffers; :func:`encode_list` and
:func:`encode_values` build the result columns the same way. Pure pyarrow + NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparkae.data.arrow_numpy import numpy_view
from sparkae.data.vectors import entry_columns

#: Row status codes (the nightly job counts them). NaN (missing) values are scored with
#: the model's mean imputation unless the model skips rows with missing values.
SCORED, NULL_ROW, INFINITE, MISSING = 0, 1, 2, 3
#: Why a row with a status other than SCORED got null scores.
SKIP_REASONS = {NULL_ROW: "null features", INFINITE: "infinite feature values",
                MISSING: "missing (NaN or null) feature values, and the model skips such rows"}


@dataclass
class RowBlock:
    """The rows of one Arrow batch.

    Attributes
    ----------
    status : ndarray of int8, one per row
        :data:`SCORED`, :data:`NULL_ROW`, :data:`INFINITE` or :data:`MISSING`; only
        SCORED rows are held in ``dense`` / the sparse components (NaN values included,
        when missing rows are scored).
    dense : ndarray of float32 (scored rows x size), or None
        Set for list input and dense vectors. In a block decoded without the finite
        check (``checked`` false) it holds every non-null row as the input gave it
        (float32, or float64 for dense vectors and lists of doubles).
    lengths, cols, vals : ndarray, or None
        Sparse components of the scored rows (stored entries per row, int64; column
        index, int32, and value, float32, of every entry, rows in order), set for vector
        input.
    checked : bool
        Whether the rows holding NaN or infinite values have their status; false only for
        dense rows decoded with ``check_finite=False``, until :meth:`mark_nonfinite`.
    skip_missing : bool
        Rows with missing values get :data:`MISSING` (the ``skip_missing`` of the decode).
    """

    status: np.ndarray
    size: int
    dense: Optional[np.ndarray] = None
    lengths: Optional[np.ndarray] = None
    cols: Optional[np.ndarray] = None
    vals: Optional[np.ndarray] = None
    checked: bool = True
    skip_missing: bool = False
    _starts: Optional[np.ndarray] = field(default=None, init=False, repr=False)

    @property
    def rows(self) -> int:
        """Number of rows to score."""
        return int(len(self.dense) if self.dense is not None else len(self.lengths))

    @property
    def nnz(self) -> int:
        """Stored entries (rows x size for dense input)."""
        return int(self.dense.size if self.dense is not None else len(self.vals))

    def to_dense(self, lo: int = 0, hi: Optional[int] = None) -> np.ndarray:
        """Dense float32 rows ``lo:hi`` of the scored rows."""
        hi = self.rows if hi is None else hi
        if self.dense is not None:
            return self.dense[lo:hi]
        starts = self.starts
        e0, e1 = int(starts[lo]), int(starts[hi])
        out = np.zeros((hi - lo) * self.size, dtype=np.float32)
        rows = np.repeat(np.arange(hi - lo, dtype=np.int64), self.lengths[lo:hi])
        out[rows * self.size + self.cols[e0:e1]] = self.vals[e0:e1]
        return out.reshape(hi - lo, self.size)

    def mark_nonfinite(self, nan: np.ndarray, inf: np.ndarray) -> np.ndarray:
        """Complete a block decoded with ``check_finite=False`` once the caller knows which
        held rows hold NaN (``nan``) and infinite (``inf``) values (one flag per row of
        ``dense``): their status becomes what :func:`decode_rows` would have given them,
        and ``dense`` keeps only the scored rows. Returns the mask of the held rows that
        are scored (results computed for every held row are cut down with it)."""
        if self.checked:
            raise ValueError("mark_nonfinite: this block's rows were checked when decoded")
        nan, inf = np.asarray(nan, dtype=bool), np.asarray(inf, dtype=bool)
        if len(nan) != self.rows or len(inf) != self.rows:
            raise ValueError(f"mark_nonfinite: {len(nan)} and {len(inf)} flags for "
                             f"{self.rows} held rows")
        null = self.status == NULL_ROW
        present = np.flatnonzero(~null)
        self.status = _row_status(null, present[inf], present[nan], self.skip_missing)
        keep = self.status[present] == SCORED
        if not keep.all():
            self.dense = self.dense[keep]
        self.checked = True
        return keep

    @property
    def starts(self) -> np.ndarray:
        """Offsets of every scored row's entries (length rows + 1), for CSR batches."""
        if self._starts is None:
            self._starts = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        return self._starts


def _numpy(arr: pa.Array, dtype) -> np.ndarray:
    return np.asarray(numpy_view(arr), dtype=dtype)


def _width_error(role: str, found: int, size: int) -> ValueError:
    return ValueError(f"{role}: a row has {found} features where the model expects {size}; "
                      "every row must have the same width")


def decode_rows(col: pa.Array, size: int, skip_missing: bool = False,
                role: str = "scoring input", check_finite: bool = True) -> RowBlock:
    """Decode one Arrow column of feature rows into a :class:`RowBlock`.

    Parameters
    ----------
    col : pyarrow.Array or ChunkedArray
        A struct column of Spark vectors, or a list column of numbers.
    size : int
        The model's input width.
    skip_missing : bool
        Give rows holding NaN (or null values) the status :data:`MISSING` instead of
        scoring them (with the model's imputation).
    role : str
        Prefix of error messages.
    check_finite : bool, default True
        Find the rows holding NaN or infinite values here (NumPy, on this CPU). False
        leaves that to the caller for dense rows without null values (lists of floats or
        doubles, dense vectors): the block holds every non-null row as given, uncast and
        uncopied where Arrow's buffer allows, and the caller calls
        :meth:`RowBlock.mark_nonfinite` (a GPU worker finds those rows on the GPU while it
        scores; :class:`sparkae.scoring.forward.Scorer`). Sparse vectors are always
        checked here.

    Raises
    ------
    ValueError
        A row's width differs from ``size``, or a sparse index is outside ``[0, size)``.
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    null = ~_numpy(col.is_valid(), bool)
    if pa.types.is_struct(col.type):
        return _decode_vectors(col, null, size, skip_missing, role, check_finite)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        return _decode_lists(col, null, size, skip_missing, role, check_finite)
    raise TypeError(f"{role}: cannot score an Arrow column of type {col.type}; expected a "
                    "Spark vector struct or a list of numbers")


def _row_status(null: np.ndarray, inf_rows: np.ndarray, nan_rows: np.ndarray,
                skip_missing: bool) -> np.ndarray:
    status = np.where(null, NULL_ROW, SCORED).astype(np.int8)
    if skip_missing:
        status[nan_rows] = MISSING
    status[inf_rows] = INFINITE
    return status


def _unchecked(flat: pa.Array, null: np.ndarray, size: int,
               skip_missing: bool) -> Optional[RowBlock]:
    """The block of :func:`decode_rows`'s ``check_finite=False``: the non-null rows' values
    ``flat`` as they are, when they are floats without nulls (else None: decode as usual)."""
    if flat.null_count or flat.type not in (pa.float32(), pa.float64()):
        return None
    return RowBlock(status=_row_status(null, null[:0], null[:0], False), size=size,
                    dense=numpy_view(flat).reshape(-1, size), checked=False,
                    skip_missing=skip_missing)


def _decode_lists(col: pa.Array, null: np.ndarray, size: int, skip_missing: bool,
                  role: str, check_finite: bool = True) -> RowBlock:
    lengths = _numpy(pc.list_value_length(col).fill_null(size), np.int64)
    bad = np.flatnonzero(lengths != size)
    if len(bad):
        raise _width_error(role, int(lengths[bad[0]]), size)
    flat = col.flatten()  # values of the non-null rows, slicing offsets applied
    if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
        raise TypeError(f"{role}: cannot score a list of {flat.type}; expected numbers")
    block = None if check_finite else _unchecked(flat, null, size, skip_missing)
    if block is not None:
        return block
    x = _numpy(flat.cast(pa.float32()), np.float32).reshape(-1, size)  # nulls -> NaN
    return _dense_block(x, null, size, skip_missing)


def _dense_block(x: np.ndarray, null: np.ndarray, size: int,
                 skip_missing: bool) -> RowBlock:
    """The block of the non-null rows ``x`` (in order), with the status of every row."""
    present = np.flatnonzero(~null)
    bad = ~np.isfinite(x)
    if not bad.any():
        return RowBlock(status=_row_status(null, present[:0], present[:0], False), size=size,
                        dense=np.ascontiguousarray(x), skip_missing=skip_missing)
    inf_rows = present[np.isinf(x).any(axis=1)]
    nan_rows = present[np.isnan(x).any(axis=1)]
    status = _row_status(null, inf_rows, nan_rows, skip_missing)
    return RowBlock(status=status, size=size,
                    dense=np.ascontiguousarray(x[status[present] == SCORED]),
                    skip_missing=skip_missing)


def _decode_vectors(col: pa.Array, null: np.ndarray, size: int, skip_missing: bool,
                    role: str, check_finite: bool = True) -> RowBlock:
    types, sizes, indices, values = col.flatten()  # parent nulls merged into the children
    lengths = _numpy(pc.list_value_length(values).fill_null(0), np.int64)
    flat = values.flatten()
    sparse = _numpy(types.fill_null(1), np.int8) == 0
    widths = np.where(null, size, lengths)
    if sparse.any():
        widths[sparse] = _numpy(sizes.filter(pa.array(sparse)).fill_null(-1), np.int64)
    bad = np.flatnonzero(widths != size)
    if len(bad):
        raise _width_error(role, int(widths[bad[0]]), size)
    if not sparse.any():        # dense vectors only: their values are the rows, in order
        block = None if check_finite else _unchecked(flat, null, size, skip_missing)
        return block if block is not None else _dense_block(
            _numpy(flat, np.float32).reshape(-1, size), null, size, skip_missing)
    vals = _numpy(flat, np.float32)
    cols = entry_columns(sparse, lengths, indices, role, np.int32)
    if len(cols) and (cols.min() < 0 or cols.max() >= size):
        raise ValueError(f"{role}: a sparse vector has an index outside [0, {size})")
    nonfinite = ~np.isfinite(vals)
    if nonfinite.any():
        rows = np.repeat(np.arange(len(lengths)), lengths)
        status = _row_status(null, np.unique(rows[np.isinf(vals)]),
                             np.unique(rows[np.isnan(vals)]), skip_missing)
    else:
        status = _row_status(null, lengths[:0], lengths[:0], False)
    keep = status == SCORED
    if not keep.all():
        entry_keep = np.repeat(keep, lengths)
        lengths, cols, vals = lengths[keep], cols[entry_keep], vals[entry_keep]
    return RowBlock(status=status, size=size, lengths=lengths, cols=cols, vals=vals,
                    skip_missing=skip_missing)


def encode_values(values: np.ndarray, ok: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """An Arrow column with ``values`` (one per scored row) at the rows where ``ok`` is
    true and null elsewhere."""
    full = np.zeros(len(ok), dtype=values.dtype)
    full[ok] = values
    return pa.array(full, type=arrow_type, mask=~ok)


def encode_list(values: np.ndarray, ok: np.ndarray,
                value_type: pa.DataType = pa.float32()) -> pa.Array:
    """A ``list<value_type>`` Arrow column (default ``list<float>``) from a (scored rows x k)
    matrix; null where not ``ok``."""
    k = values.shape[1] if values.ndim == 2 else 0
    offsets = np.concatenate([[0], np.cumsum(ok.astype(np.int64) * k)])
    if offsets[-1] >= 2**31:
        raise ValueError(f"a score batch holds {offsets[-1]} list values, more than an Arrow "
                         "list can; lower spark.sql.execution.arrow.maxRecordsPerBatch")
    flat = pa.array(np.ascontiguousarray(values, dtype=value_type.to_pandas_dtype())
                    .reshape(-1), type=value_type)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), flat,
                                    mask=pa.array(~ok))
