"""Settings of the tuning job (``jobs/tune.py``): defaults and checks.

Sections: ``spark``, ``input`` and ``evaluation`` (as in
:mod:`sparkae.jobs.train_settings`), ``model``
(the base Autoencoder Params every trial starts from), ``grid`` (Param name -> list of
candidates; list-valued Params such as ``hidden`` take a list of lists), ``tune`` (how
trials run) and ``output``. Missing keys take the defaults of :data:`DEFAULTS`;
:mod:`sparkae.jobs.settings` reads the file and the ``--set`` overrides
(``--set 'grid.hidden=[[50],[100]]'``); grid keys are checked against the Params here.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, Optional

from sparkae.jobs import settings as loader
from sparkae.jobs import train_settings

#: Defaults of every setting of the tuning job (``model`` defaults: the Autoencoder's).
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "spark": {"master": "local[2]", "app_name": "sparkae-tune", "conf": {}},
    "input": copy.deepcopy(train_settings.DEFAULTS["input"]),
    "evaluation": copy.deepcopy(train_settings.DEFAULTS["evaluation"]),
    "model": {},
    "grid": {},
    "tune": {
        "search": "grid",            # grid | random
        "num_samples": None,         # random: how many combinations to draw
        "scheduler": None,           # None | asha (stop poor trials early, per epoch)
        "max_concurrent_trials": None,   # None: as many as the CPUs allow
        "cpus_per_trial": 1,         # each trial's Spark cores and Torch threads
        "seed": None,                # random search (and fits without model.seed)
        "storage_path": None,        # trial record + models; None: <output.dir>/trials
        "resume": True,              # skip trials already finished in storage_path
        "dashboard": False,          # start Ray's dashboard
    },
    "output": {
        "dir": "out/tune",           # leaderboard.{csv,md,png}, best_params.json, best_model/
        "overwrite": True,           # replace a previous run's results in dir
    },
}


def load(path: Optional[str] = None, overrides: Iterable[str] = ()) -> Dict[str, Dict[str, Any]]:
    """Read a YAML tuning config (or the defaults), apply overrides and validate.

    Raises
    ------
    FileNotFoundError
        The config file does not exist.
    ValueError
        Unknown sections or keys, bad YAML, an empty or malformed grid, bad values.
    """
    defaults = copy.deepcopy(DEFAULTS)
    defaults["model"] = train_settings.model_defaults()
    return loader.load(path, overrides, defaults, validate, free=("grid",))


def validate(settings: Dict[str, Any]) -> None:
    """Check every section (the ``model`` and ``input``/``evaluation`` sections with the
    training job's rules, the grid with :func:`sparkae.tune.expand_grid`)."""
    from sparkae.tune import expand_grid

    probe = copy.deepcopy(train_settings.DEFAULTS)
    for section in ("spark", "input", "evaluation", "model"):
        probe[section] = settings[section]
    train_settings.validate(probe)
    t = settings["tune"]
    if not settings["grid"]:
        raise ValueError("grid: empty; give at least one Param with a list of candidates, "
                         "e.g. grid: {hidden: [[50], [100]]}")
    if t["scheduler"] not in (None, "asha"):
        raise ValueError(f"tune.scheduler: got {t['scheduler']!r}, expected null or 'asha'")
    for key in ("max_concurrent_trials", "num_samples"):
        v = t[key]
        if v is not None and not (isinstance(v, int) and v >= 1):
            raise ValueError(f"tune.{key}: got {v!r}, expected null or an integer >= 1")
    cpus = t["cpus_per_trial"]
    if not (isinstance(cpus, int) and cpus >= 1):
        raise ValueError(f"tune.cpus_per_trial: got {cpus!r}, expected an integer >= 1")
    try:
        expand_grid(settings["grid"], t["search"], t["num_samples"], t["seed"])
    except ValueError as exc:
        raise ValueError(f"grid: {exc}" if not str(exc).startswith(("param_grid", "grid"))
                         else str(exc).replace("param_grid", "grid", 1)) from None


def describe_defaults() -> str:
    """Every setting with its default, one per line (for ``--help``)."""
    defaults = copy.deepcopy(DEFAULTS)
    defaults["model"] = train_settings.model_defaults()
    return loader.describe(defaults, notes={
        "grid": "<Autoencoder Param> = [candidates] (list-valued Params: a list of lists)"})
