"""Hyperparameter grids with Ray Tune: ``grid_search`` fits one Autoencoder per combination.

- **Data once.** The driver prepares the input (feature checks, statistics) and
  materializes it as Parquet once per distinct preparation (:mod:`.prepare`): trials that
  vary only training Params share one. Each trial trains from it with
  :meth:`Autoencoder.fit_prepared` (:mod:`.trial`): no Spark job and no JVM in the trial (a
  trial with ``num_workers`` > 1 opens a local SparkSession only to start its ranks).
- **Ray** (:mod:`.ray_cluster`). On a local Spark master: a local Ray instance on
  127.0.0.1 sized from the master, dashboard off. On a cluster master: Ray on Spark sized
  from the cluster; then the work directory must be a path every worker sees
  (``storage_path``, else the cache root: the ``cache_dir`` Param or
  ``spark.sparkae.cacheDir``). Ray is always torn down at the end, also on errors and
  Ctrl-C; a Ray already running in the process is used as is and left running.
- **Record** (:mod:`.store`). Every report of a trial is one small JSON object in the
  store; with ``storage_path``, a later call with the same grid skips every trial whose
  last report is final (ok, error, stopped): that is the resume.
- **ASHA.** With ``scheduler="asha"`` a trial trains epoch by epoch and reports the MSE of
  every epoch, so ASHA can stop it at a rung; without a scheduler a trial is one fit that
  reports once.
- **Results.** One log line per finished trial (:mod:`.progress`); the leaderboard ranks
  the trials as H2O's grids do (:mod:`.leaderboard`).

Modules: :mod:`.grid` (the combinations, trial keys), :mod:`.store`, :mod:`.prepare`,
:mod:`.trial`, :mod:`.ray_cluster`, :mod:`.progress`, :mod:`.leaderboard`, :mod:`.search`
(``grid_search``, the entry point).
"""

from sparkae.tune.grid import LIST_PARAMS, expand_grid, trial_key
from sparkae.tune.ray_cluster import ray_for
from sparkae.tune.search import TuneResult, grid_search
from sparkae.tune.store import FINAL, RECORD, read_record

__all__ = ["FINAL", "LIST_PARAMS", "RECORD", "TuneResult", "expand_grid", "grid_search",
           "ray_for", "read_record", "trial_key"]
