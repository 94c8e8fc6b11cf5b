"""The trial store: every report of a trial as one small JSON object, and what a resume reads.

A report is written as ``<store>/record/<key>-<time>-<id>.json`` (key: :func:`trial_key`
of the trial's Param values). One object per report, since object stores cannot append;
the store is any location :mod:`sparkae.io` reaches (``s3a://`` included). The last report
of a key is its trial's state; a final one (:data:`FINAL`) means a resume skips the trial.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any, Dict

from sparkae.io import fs
from sparkae.io.uri import join

#: The store's folder of report objects.
RECORD = "record"
#: A trial whose last report has one of these states is finished (a resume skips it).
FINAL = ("ok", "error", "stopped")

# orders the reports one process writes within the same clock tick
_SEQ = itertools.count()


def read_record(store: str) -> Dict[str, Dict[str, Any]]:
    """The last report of each trial key in ``store``.

    Parameters
    ----------
    store : str
        The store's location (any URI :mod:`sparkae.io` reaches).

    Returns
    -------
    dict
        Trial key -> its last report (empty when the store has no record yet). Objects
        that are not JSON, or that disappear while being read, are skipped.
    """
    folder = join(store, RECORD)
    rows = []
    for name in fs.listdir(folder, "storage_path"):
        if not name.endswith(".json"):
            continue
        try:
            rows.append(json.loads(fs.read_bytes(join(folder, name), "storage_path")))
        except (ValueError, FileNotFoundError):  # removed meanwhile, or not ours
            continue
    out: Dict[str, Dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r.get("written", 0.0), r.get("seq", 0))):
        out[row["key"]] = row
    return out


def append_record(store: str, row: Dict[str, Any]) -> None:
    """Write one report of a trial (``row`` has its ``key``) as a new object in ``store``,
    stamped with the time it was written and a per-process sequence number."""
    stamped = dict(row, written=time.time(), seq=next(_SEQ))
    name = f"{row['key']}-{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
    fs.write_bytes(join(store, RECORD, name), json.dumps(stamped, default=str).encode(),
                   "storage_path")


def failed_row(key: str, index: int, params: Dict[str, Any], error: str) -> Dict[str, Any]:
    """The report of a trial that failed before it trained (no metrics, no model)."""
    return {"key": key, "trial": index, "params": params, "status": "error",
            "error": error[:2000], "wall_s": None, "train_mse": None, "validation_mse": None,
            "epochs": 0, "model": None}
