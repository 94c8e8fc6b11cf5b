"""The leaderboard: one row per trial from the trial store, ranked the way H2O's grids are.

Best first by ascending validation MSE (training MSE without validation rows); failed and
not-run trials last, with their error. The best trial is the first finished one whose
model is in the store.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from sparkae.io import fs
from sparkae.tune.store import read_record

#: The row of a trial the store has no report of.
_NOT_RUN = {"status": "not run", "error": None, "train_mse": None, "validation_mse": None,
            "epochs": 0, "wall_s": None, "model": None}


def leaderboard(store: str, combos: List[Dict[str, Any]], keys: List[str],
                varying: List[str], has_valid: bool
                ) -> Tuple[pd.DataFrame, Optional[Dict[str, Any]]]:
    """The ranked leaderboard of a grid, and its best trial.

    Parameters
    ----------
    store : str
        The trial store.
    combos, keys : list
        The grid's combinations and their trial keys (a repeated key is one row: the first).
    varying : list of str
        The Params that are columns of the leaderboard.
    has_valid : bool
        Rank by ``validation_mse`` (else ``train_mse``).

    Returns
    -------
    (pandas.DataFrame, dict or None)
        Columns ``trial``, the varying Params, ``train_mse``, ``validation_mse``,
        ``epochs``, ``wall_s``, ``status``, ``error``; and ``{"model": path, "params":
        combination}`` of the best trial, None when no trial left a model.
    """
    rec = read_record(store)
    rows, seen = [], set()
    for index, (combo, key) in enumerate(zip(combos, keys)):
        if key in seen:
            continue
        seen.add(key)
        r = rec.get(key) or _NOT_RUN
        rows.append(dict({"trial": index}, **{k: combo[k] for k in varying},
                         train_mse=r.get("train_mse"), validation_mse=r.get("validation_mse"),
                         epochs=r.get("epochs"), wall_s=r.get("wall_s"), status=r["status"],
                         error=r.get("error"), _model=r.get("model"),
                         _params=combo))
    board = pd.DataFrame(rows)
    by = "validation_mse" if has_valid else "train_mse"
    board[by] = pd.to_numeric(board[by])
    board["_failed"] = board["status"].isin(["error", "not run"])
    board = board.sort_values(["_failed", by], na_position="last", kind="stable")
    best = None
    for _, r in board.iterrows():
        if not r["_failed"] and r["_model"] and fs.isdir(r["_model"], "storage_path"):
            best = {"model": r["_model"], "params": r["_params"]}
            break
    board = board.drop(columns=["_failed", "_model", "_params"]).reset_index(drop=True)
    return board, best
