"""The input of a grid, prepared once on the driver for all of its trials.

The driver checks the features, computes the statistics and materializes the input as
Parquet once per distinct preparation (:func:`sparkae.fitting.prepare_input`): trials
that vary only training Params share one. Each trial then trains from it without a Spark
job; no trial re-reads the source table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from pyspark.sql import DataFrame

from sparkae.estimator import Autoencoder
from sparkae.fitting import prepare_input, preparation_key


def prepare_once(train_df: DataFrame, validation_df: Optional[DataFrame],
                 base: Dict[str, Any], combos: List[Dict[str, Any]], todo: List[int],
                 cache_dir: str) -> Tuple[List[Any], Dict[int, int]]:
    """Prepare and materialize the input of trials ``todo`` once per distinct preparation.

    Parameters
    ----------
    train_df, validation_df : DataFrame
        The grid's rows.
    base : dict
        The estimator's Param values; each trial's are ``base`` updated with its combination.
    combos : list of dict
        The grid's combinations.
    todo : list of int
        Indices of the trials to run.
    cache_dir : str
        Where the prepared inputs are materialized.

    Returns
    -------
    (list, dict)
        The prepared inputs (a ``PreparedInput``, or the error text when preparing failed:
        the trials that train from it report that error), and, per trial index, the index
        of the one it trains from.
    """
    prepared: List[Any] = []
    by_key: Dict[str, int] = {}
    prep_of: Dict[int, int] = {}
    for i in todo:
        try:
            values = Autoencoder(**dict(base, **combos[i], cache_dir=cache_dir,
                                        keep_cache=True)).param_values()
            pkey = preparation_key(values)
        except Exception as exc:  # noqa: BLE001 - a bad value: the trial reports it
            prep_of[i] = len(prepared)
            prepared.append(f"{type(exc).__name__}: {exc}"[:2000])
            continue
        if pkey not in by_key:
            by_key[pkey] = len(prepared)
            try:
                prepared.append(prepare_input(train_df, values, validation_df))
            except Exception as exc:  # noqa: BLE001 - e.g. a missing features_col
                prepared.append(f"{type(exc).__name__}: {exc}"[:2000])
        prep_of[i] = by_key[pkey]
    return prepared, prep_of
