"""Settings of the training job (``jobs/train.py``): defaults and checks.

A config has five sections: ``spark``, ``input``, ``evaluation``, ``model`` (any
:class:`~sparkae.Autoencoder` Param) and ``output``. Missing keys take the defaults of
:data:`DEFAULTS`; :mod:`sparkae.jobs.settings` reads the file and the ``--set``
overrides.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterable, Optional

from sparkae.jobs import settings as loader
from sparkae.params import AutoencoderParams
from sparkae.validation import check_known, validate as validate_params
from sparkae.tables import FORMATS, check_time_travel, looks_like_table

#: Defaults of every job setting (``model`` defaults come from the Autoencoder Params).
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "spark": {
        "master": "local[2]",        # used when the job is not launched by spark-submit
        "app_name": "sparkae",
        "conf": {},                  # extra Spark conf, e.g. {spark.sql.shuffle.partitions: 4}
    },
    "input": {
        "source": "sample",          # sample | mnist_idx | parquet | table
        "path": None,                # parquet | table: a path or catalog table name
        "format": "auto",            # how path is read: auto (a folder with _delta_log is
                                     # Delta) | parquet | delta | table
        "version": None,             # Delta: read this version (versionAsOf)
        "timestamp": None,           # Delta: read the version current at this time
        "images": None,              # mnist_idx: images file
        "labels": None,              # mnist_idx: labels file
        "id_col": "id",              # carried into the scored output (None: none)
        "label_col": "label",        # carried into the scored output (None: none)
        "corrupt": None,             # {kind: gaussian|masking|salt_pepper, level, seed}: train
                                     # on a corrupted copy, evaluate on the clean rows
    },
    "evaluation": {
        "source": "split",           # split | mnist_idx | parquet | table | none
        "fraction": 0.2,             # split: share of the input held out for validation
        "path": None,
        "format": "auto",            # as input.format
        "version": None,
        "timestamp": None,
        "images": None,
        "labels": None,
    },
    "model": {},
    "output": {
        "dir": "out",                # model/, scored/, summary.json
        "format": "parquet",         # the scored rows: parquet | delta
        "table": None,               # write the scored rows to this catalog table instead
        "overwrite": True,           # replace a previous run's results in dir
        "top_n": 5,                  # rows with the largest error in the printed summary
        "report": True,              # write report.html (the chapter's plots)
        "image_shape": None,         # e.g. [28, 28]: show rows as images in the report
    },
}

INPUT_SOURCES = ("sample", "mnist_idx", "parquet", "table")
EVAL_SOURCES = ("split", "mnist_idx", "parquet", "table", "none")


def model_defaults() -> Dict[str, Any]:
    """Every Autoencoder Param with its default value."""
    p = AutoencoderParams()
    return {param.name: p.getOrDefault(param) for param in p.params}


def defaults() -> Dict[str, Dict[str, Any]]:
    """:data:`DEFAULTS` with the ``model`` section filled with every Param's default."""
    out = copy.deepcopy(DEFAULTS)
    out["model"] = model_defaults()
    return out


def load(path: Optional[str] = None, overrides: Iterable[str] = ()) -> Dict[str, Dict[str, Any]]:
    """Read a YAML config (or the defaults), apply overrides and validate.

    Parameters
    ----------
    path : str, optional
        A YAML file; None uses :data:`DEFAULTS` alone.
    overrides : iterable of str
        ``section.key=value`` strings applied after the file.

    Returns
    -------
    dict
        Complete settings; ``settings["model"]`` holds every Param, defaults filled in.

    Raises
    ------
    FileNotFoundError
        The config file does not exist.
    ValueError
        Unknown sections or keys, bad YAML, or invalid values (naming the key).
    """
    return loader.load(path, overrides, defaults(), validate)


def validate(settings: Dict[str, Any]) -> None:
    """Check every setting; messages name the setting, the value and what is allowed."""
    from sparkae.estimator import Autoencoder

    src = settings["input"]["source"]
    if src not in INPUT_SOURCES:
        raise ValueError(f"input.source: got {src!r}, expected one of {', '.join(INPUT_SOURCES)}")
    ev = settings["evaluation"]["source"]
    if ev not in EVAL_SOURCES:
        raise ValueError(f"evaluation.source: got {ev!r}, expected one of "
                         f"{', '.join(EVAL_SOURCES)}")
    frac = settings["evaluation"]["fraction"]
    if ev == "split" and not (isinstance(frac, (int, float)) and 0 < frac < 1):
        raise ValueError(f"evaluation.fraction: got {frac!r}, expected a number in (0, 1)")
    for section, needs in (("input", src), ("evaluation", ev)):
        s = settings[section]
        if s["format"] not in FORMATS:
            raise ValueError(f"{section}.format: got {s['format']!r}, expected one of "
                             f"{', '.join(FORMATS)}")
        check_time_travel(s["version"], s["timestamp"], section)
        if needs not in ("parquet", "table") and (s["version"] is not None
                                                  or s["timestamp"] is not None):
            raise ValueError(f"{section}.version / {section}.timestamp: time travel reads a "
                             f"Delta table; {section}.source is {needs}, expected parquet or "
                             "table")
        if needs == "mnist_idx" and not (s["images"] and s["labels"]):
            raise ValueError(f"{section}: source mnist_idx needs {section}.images and "
                             f"{section}.labels (IDX file paths)")
        if needs in ("parquet", "table") and not s["path"]:
            raise ValueError(f"{section}: source {needs} needs {section}.path")
    noisy = settings["input"]["corrupt"]
    if noisy is not None:
        if not isinstance(noisy, dict):
            raise ValueError(f"input.corrupt: got {noisy!r}, expected a mapping with kind, level "
                             "and optionally seed")
        check_known(list(noisy), ["kind", "level", "seed"], "input.corrupt")
        if "kind" not in noisy or "level" not in noisy:
            raise ValueError("input.corrupt: needs kind (gaussian, masking, salt_pepper) and "
                             "level")
    fmt, table = settings["output"]["format"], settings["output"]["table"]
    if fmt not in ("parquet", "delta"):
        raise ValueError(f"output.format: got {fmt!r}, expected parquet or delta")
    if table is not None and not (isinstance(table, str) and looks_like_table(table)):
        raise ValueError(f"output.table: got {table!r}, expected a catalog table name such as "
                         "db.scores, or null")
    top = settings["output"]["top_n"]
    if not isinstance(top, int) or top < 0:
        raise ValueError(f"output.top_n: got {top!r}, expected an integer >= 0")
    try:
        ae = Autoencoder(**settings["model"])
    except TypeError as exc:
        raise ValueError(f"model: {exc}") from None
    validate_params(ae.param_values())


def describe_defaults() -> str:
    """Every setting with its default, one per line (for ``--help``)."""
    return loader.describe(defaults())
