"""The combinations a grid tries: the full product, or seeded random draws from it."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from typing import Any, Dict, List, Optional

from sparkae.params import AutoencoderParams
from sparkae.validation import check_known

#: Params that take a list value: their grid candidates must be lists.
LIST_PARAMS = ("hidden", "hidden_dropout_ratios", "features_cols", "outputs")
#: Params a trial sets itself (a grid may not vary them; the trial key leaves them out).
OWNED = ("cache_dir", "keep_cache", "checkpoint_dir", "num_threads")


def expand_grid(param_grid: Dict[str, List[Any]], search: str = "grid",
                num_samples: Optional[int] = None, seed: Optional[int] = None
                ) -> List[Dict[str, Any]]:
    """The combinations to try.

    Parameters
    ----------
    param_grid : dict
        Autoencoder Param name -> non-empty list of candidates; list-valued Params
        (:data:`LIST_PARAMS`) take a list of lists.
    search : {"grid", "random"}
        The full product, or ``num_samples`` draws from it.
    num_samples : int, optional
        How many combinations ``search="random"`` draws (without repeats while
        combinations last); only with ``search="random"``.
    seed : int, optional
        Seeds the random draws.

    Returns
    -------
    list of dict
        One dict of Param values per trial, in the grid's order (or the draws' order).

    Raises
    ------
    ValueError
        Unknown Param names (with the closest), a value that is not a list of candidates,
        a list-valued Param whose candidates are not lists, a bad ``search``/``num_samples``.

    Examples
    --------
    >>> len(expand_grid({"hidden": [[4], [6, 3, 6]], "rate": [0.1, 0.01]}))
    4
    """
    if not isinstance(param_grid, dict) or not param_grid:
        raise ValueError(f"param_grid: got {param_grid!r}, expected a non-empty mapping of "
                         "Param name to a list of candidate values")
    known = [p.name for p in AutoencoderParams().params]
    check_known(list(param_grid), known, "param_grid")
    for name, values in param_grid.items():
        if name in OWNED:
            raise ValueError(f"param_grid: '{name}' is set by grid_search itself")
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"param_grid['{name}']: got {values!r}, expected a non-empty list "
                             "of candidate values")
        if name in LIST_PARAMS and not all(isinstance(v, (list, tuple)) or v is None
                                           for v in values):
            raise ValueError(f"param_grid['{name}']: got {values!r}; '{name}' takes a list, so "
                             f"give a list of lists, e.g. [[100], [300, 100, 300]]")
    names = list(param_grid)
    combos = [dict(zip(names, (list(v) if isinstance(v, tuple) else v for v in vals)))
              for vals in itertools.product(*(param_grid[n] for n in names))]
    if search == "grid":
        if num_samples is not None:
            raise ValueError("num_samples: only for search='random'")
        return combos
    if search != "random":
        raise ValueError(f"search: got {search!r}, expected 'grid' or 'random'")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: got {num_samples!r}, expected an integer >= 1 with "
                         "search='random'")
    rng = random.Random(seed)
    picked: List[Dict[str, Any]] = []
    while len(picked) < num_samples:
        pool = list(combos)
        rng.shuffle(pool)
        picked.extend(pool[:num_samples - len(picked)])
    return picked


def trial_key(values: Dict[str, Any]) -> str:
    """A stable key for a trial's full Param values (what the trial store is keyed by).

    Parameters
    ----------
    values : dict
        Every Param value of the trial; the Params a trial sets itself (:data:`OWNED`)
        are left out, so a trial keeps its key wherever it runs.

    Returns
    -------
    str
        16 hex digits of a SHA-256 of the values as sorted JSON.
    """
    text = json.dumps({k: v for k, v in sorted(values.items()) if k not in OWNED},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def varying_params(param_grid: Dict[str, List[Any]], combos: List[Dict[str, Any]]) -> List[str]:
    """The grid's Params that take more than one value among ``combos`` (the leaderboard's
    and the progress lines' columns); all of the grid's Params when none varies."""
    varying = [k for k in param_grid if len({json.dumps(c[k], default=str) for c in combos}) > 1]
    return varying or list(param_grid)
