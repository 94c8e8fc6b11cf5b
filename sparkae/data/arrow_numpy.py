"""Arrow arrays as NumPy without pyarrow's ``to_numpy``.

``pyarrow.Array.to_numpy`` imports ``pyarrow.pandas_compat``, and with it pandas, on its
first call (pyarrow 26, even with ``zero_copy_only=True``): 0.4-0.5 s of a process that has
not imported pandas, such as a training rank, paid inside its first epoch (measured on 2
cores: a 1-epoch sampled sparse fit of 2,000 rows took 0.8-1.0 s instead of 0.4-0.5 s).
:func:`numpy_view` reads a primitive array's data buffer directly, as pyarrow's zero-copy
path does, and leaves every other array (nulls, booleans, strings, chunked arrays) to
``to_numpy``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: The Arrow types read from their data buffer, and their NumPy dtypes.
_DTYPES = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32,
           pa.int64(): np.int64, pa.uint8(): np.uint8, pa.uint16(): np.uint16,
           pa.uint32(): np.uint32, pa.uint64(): np.uint64, pa.float16(): np.float16,
           pa.float32(): np.float32, pa.float64(): np.float64}


def numpy_view(arr: pa.Array, nulls_undefined: bool = False) -> np.ndarray:
    """``arr`` as a NumPy array: a read-only view of its data buffer when it is a plain
    numeric array without nulls (what ``arr.to_numpy(zero_copy_only=False)`` returns for
    it, without importing pandas), else ``arr.to_numpy(zero_copy_only=False)``.

    Parameters
    ----------
    arr : pyarrow.Array
        Any array (a ChunkedArray falls back to pyarrow too).
    nulls_undefined : bool
        Read a numeric array's buffer even where it has nulls: the caller never reads the
        null slots (their values are undefined).
    """
    dtype = _DTYPES.get(arr.type) if isinstance(arr, pa.Array) else None
    if dtype is None or (arr.null_count and not nulls_undefined):
        return arr.to_numpy(zero_copy_only=False)
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=dtype)
    item = np.dtype(dtype).itemsize
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=n, offset=arr.offset * item)
