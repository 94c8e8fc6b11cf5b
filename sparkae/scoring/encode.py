"""The scores as columns: their Spark types, and one Arrow batch in -> Arrow columns out.

:func:`score_column` is the whole per-batch work of a scoring worker: decode the Arrow
input column into NumPy rows (:func:`sparkae.data.arrow_rows.decode_rows`, no Python
object per row), run the forward pass over the rows that can be scored, and encode each
output as an Arrow column with nulls at the rows that were not scored.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from sparkae.data import arrow_rows
from sparkae.scoring.forward import Scorer

#: Every output ``score`` can add, with its Spark type.
OUTPUT_TYPES = {
    "deep_features": T.ArrayType(T.FloatType()),
    "reconstruction_mse": T.DoubleType(),
    "reconstruction": T.ArrayType(T.FloatType()),
    "feature_errors": T.ArrayType(T.FloatType()),
    "is_anomaly": T.BooleanType(),
}


def output_fields(outputs: Sequence[str], status_name: Optional[str]) -> List[T.StructField]:
    """Spark fields of ``outputs`` in order, then a ``tinyint`` ``status_name`` field when
    one is given (the row status codes of :mod:`sparkae.data.arrow_rows`)."""
    fields = [T.StructField(o, OUTPUT_TYPES[o]) for o in outputs]
    if status_name is not None:
        fields.append(T.StructField(status_name, T.ByteType()))
    return fields


def score_column(col: pa.Array, scorer: Scorer, outputs: Sequence[str], layer: int,
                 threshold: Optional[float], batch_size: int, status: bool,
                 skip_missing: bool, clip: bool = False) -> Tuple[List[str], List[pa.Array]]:
    """Score one Arrow column of feature rows.

    Parameters
    ----------
    col : pyarrow.Array or ChunkedArray
        Spark vectors (their struct) or lists of numbers, one row each.
    scorer : Scorer
        The network of this worker.
    outputs, layer, threshold, batch_size
        As for :meth:`Scorer.score`.
    status : bool
        Also return the ``status`` column (int8 row status codes).
    skip_missing : bool
        Null scores for rows with missing values instead of imputing them.
    clip : bool, default False
        Clamp the scaled inputs into the scaled training range (``clip_to_training_range``).

    Returns
    -------
    names : list of str
        ``outputs``, then ``status`` when asked for.
    arrays : list of pyarrow.Array
        One column per name, as long as ``col``.

    Raises
    ------
    ValueError
        A row whose width is not the model's, or a sparse index outside it.
    """
    outputs = list(outputs)
    block = arrow_rows.decode_rows(col, scorer.size, skip_missing,
                                   check_finite=not scorer.check_on_device)
    res = scorer.score(block, outputs, layer, threshold, batch_size, clip)
    ok = block.status == arrow_rows.SCORED      # (complete once scored: check_on_device)
    names, arrays = [], []
    for o in outputs:
        if o == "reconstruction_mse":
            arr = arrow_rows.encode_values(res.get(o, np.zeros(0)), ok, pa.float64())
        elif o == "is_anomaly":
            arr = arrow_rows.encode_values(res.get(o, np.zeros(0, bool)), ok, pa.bool_())
        else:
            width = {"deep_features": 0, "feature_errors": scorer.kept,
                     "reconstruction": scorer.size}[o]
            empty = np.zeros((0, width), np.float32)
            arr = arrow_rows.encode_list(res.get(o, empty), ok)
        names.append(o)
        arrays.append(arr)
    if status:
        names.append("status")
        arrays.append(pa.array(block.status, type=pa.int8()))
    return names, arrays
