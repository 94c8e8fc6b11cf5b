"""Prepared training rows held in this process's memory instead of a private Parquet file.

A small fit prepared on the driver (:mod:`sparkae.data.local_prepare`) whose only rank
trains in the same process (``num_workers=1``) does not need its rows written as Parquet
and read back: the driver already holds them as one Arrow column of Spark's vector struct.
:func:`hold` keeps that column under a name (``held:<id>``) that stands for the
materialized table wherever the reader takes a path
(:func:`sparkae.data.converter.parquet_files`, ``list_units``, ``read_unit_arrow``,
``table_layout``): the table is cut into the row groups that :func:`split` gives, the
same ones the Parquet file would have had, and each one is decoded exactly as read from
the file (:func:`sparkae.data.vectors.decode_table`), so a fit's batches, and its model,
are the same either way. Measured on 60,000 MNIST-like rows: the write took 0.43-0.59 s
and the rank's read of it 0.3-0.5 s.

Only paths of this process: a rank in another process (``num_workers > 1``, tuning
trials) reads files, and :func:`check_files` refuses a held name there.
"""

from __future__ import annotations

import threading
import uuid
from typing import Dict, List, Tuple

import pyarrow as pa

from sparkae.data.vectors import FEATURES

PREFIX = "held:"

_LOCK = threading.Lock()
#: name -> (the vector column, rows per row group)
_TABLES: Dict[str, Tuple[pa.StructArray, int]] = {}


def is_held(path: object) -> bool:
    """Whether ``path`` names a table held in memory."""
    return isinstance(path, str) and path.startswith(PREFIX)


def hold(col: pa.StructArray, group_rows: int) -> str:
    """Keep ``col`` (Spark's vector struct, one row per training row) in memory, cut into
    row groups of ``group_rows`` rows; return its name."""
    name = f"{PREFIX}{uuid.uuid4().hex}"
    with _LOCK:
        _TABLES[name] = (col, max(1, int(group_rows)))
    return name


def release(name: str) -> None:
    """Forget the table ``name`` (nothing when it is not held)."""
    with _LOCK:
        _TABLES.pop(name, None)


def _table(name: str) -> Tuple[pa.StructArray, int]:
    with _LOCK:
        found = _TABLES.get(name)
    if found is None:
        raise FileNotFoundError(f"training data: {name} is not held in this process (it was "
                                "released, or this is another process; a rank outside the "
                                "driver reads materialized files)")
    return found


def split(rows: int, group_rows: int) -> List[Tuple[int, int]]:
    """``(first row, rows)`` of each row group of a table of ``rows`` rows."""
    step = max(1, int(group_rows))
    return [(a, min(step, rows - a)) for a in range(0, rows, step)]


def groups(name: str) -> List[Tuple[int, int]]:
    """The row groups of the held table ``name``, as :func:`split` gives them."""
    col, group_rows = _table(name)
    return split(len(col), group_rows)


def read_group(name: str, group: int) -> pa.Table:
    """Row group ``group`` of the held table ``name`` as a one-column (``features``)
    table, as pyarrow reads it from the Parquet file."""
    col, group_rows = _table(name)
    first, rows = split(len(col), group_rows)[group]
    return pa.table({FEATURES: col.slice(first, rows)})


def stored_values(name: str) -> int:
    """Stored vector entries of the held table ``name``."""
    col, _ = _table(name)
    return len(col.flatten()[3].flatten())


def check_files(paths: List[str]) -> None:
    """Refuse held names where a rank in another process will read ``paths``.

    Raises
    ------
    ValueError
        One of ``paths`` is held in memory.
    """
    for p in paths or []:
        if is_held(p):
            raise ValueError(f"training data: {p} is held in the driver's memory; ranks in "
                             "other processes read materialized files (prepare the input "
                             "with in_process=False)")
