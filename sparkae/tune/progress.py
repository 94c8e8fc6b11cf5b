"""Progress of a grid: one log line per finished trial (Ray Tune's own output is off)."""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, List

log = logging.getLogger("sparkae")


def progress_callback(combos: List[Dict[str, Any]], varying: List[str], total: int,
                      already: int) -> Any:
    """A Ray Tune callback that logs ``[done/total] <varying Params> mse=... epochs=...
    <status> <error>`` at INFO on the ``sparkae`` logger when a trial ends.

    Parameters
    ----------
    combos : list of dict
        The grid's combinations (a trial's config indexes them).
    varying : list of str
        The Params a line shows.
    total : int
        Distinct trials of the grid.
    already : int
        Trials finished before this run (a resume): the count starts there.

    Returns
    -------
    ray.tune.Callback
    """
    from ray.tune import Callback

    class Progress(Callback):
        """One line per finished trial (Ray's own output is off)."""

        def __init__(self) -> None:
            self.done = already
            self.seen: set = set()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trial, trial.last_result or {})

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, {"status": "error", "error": "the Ray worker failed"})

        def _line(self, trial, res):
            if trial.trial_id in self.seen:
                return
            self.seen.add(trial.trial_id)
            self.done += 1
            combo = combos[trial.config["trial"]]
            what = " ".join(f"{k}={combo[k]}" for k in varying)
            status = res.get("status", "?")
            if status == "running":   # its last report was not final: ASHA stopped it
                status = "stopped"
            mse = res.get("mse")
            score = f"mse={mse:.6g}" if isinstance(mse, float) and math.isfinite(mse) else ""
            tail = res.get("error") or ""
            log.info("[%d/%d] %-40s %-16s epochs=%s %s %s", self.done, total, what, score,
                     res.get("epochs", "?"), status, tail[:120])

    return Progress()
