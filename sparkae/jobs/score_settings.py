"""Settings of the nightly scoring job (``jobs/score.py``): YAML -> validated dict.

Sections: ``spark`` (as in :mod:`sparkae.jobs.train_settings`), ``model``, ``input``,
``scoring``, ``output`` and ``run``. Missing keys take the defaults of :data:`DEFAULTS`;
:mod:`sparkae.jobs.settings` reads the file and the ``--set`` overrides. The job's direct
flags (``--model``, ``--input``, ...) are applied last, through :data:`FLAGS`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Dict, Iterable, List, Optional

from sparkae.jobs import settings as loader
from sparkae.scoring import OUTPUT_TYPES
from sparkae.tables import FORMATS, check_time_travel

#: Defaults of every setting of the scoring job.
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "spark": {
        "master": "local[2]",        # used when the job is not launched by spark-submit
        "app_name": "sparkae-score",
        "conf": {},                  # extra Spark conf
    },
    "model": {
        "path": None,                # a directory written by AutoencoderModel.save
    },
    "input": {
        "path": None,                # Parquet path, Delta path, or catalog table name
        "format": "auto",            # auto | parquet | delta | table
        "version": None,             # Delta: read this version (versionAsOf)
        "timestamp": None,           # Delta: read the version current at this time
        "id_cols": [],               # columns carried into the output
    },
    "scoring": {
        "outputs": None,             # None: the model's transform outputs
        "layer": None,               # hidden layer of deep_features; None: the model's
        "threshold": None,           # for is_anomaly; None: the model's
        "batch_size": None,          # rows per forward pass; None: the model's
        "clip_to_training_range": None,  # clamp scaled inputs to the training range
                                         # (true | false); None: the model's
    },
    "output": {
        "path": None,                # directory (Parquet, partitioned) or catalog table
        "format": "auto",            # auto | parquet | delta | table (auto: a name without '/'
                                     # is a table, a folder with _delta_log is Delta)
        "partition_col": "run_date",
        "schema_mode": "strict",     # Delta: strict (a schema change fails) | merge
        "optimize": False,           # Delta: OPTIMIZE the written date after the write
        "summary": None,             # run summary JSON; None: <path>/_runs/<col>=<date>.json
    },
    "run": {
        "date": None,                # YYYY-MM-DD; None: today
    },
}

INPUT_FORMATS = FORMATS
OUTPUT_FORMATS = FORMATS
SCHEMA_MODES = ("strict", "merge")
#: Direct flags of jobs/score.py -> the setting each one sets.
FLAGS = {"model": "model.path", "input": "input.path", "output": "output.path",
         "id_cols": "input.id_cols", "outputs": "scoring.outputs", "run_date": "run.date"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load(path: Optional[str] = None, overrides: Iterable[str] = (),
         flags: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Read a YAML config (or the defaults), apply ``--set`` overrides then direct flags,
    and validate.

    Parameters
    ----------
    path : str, optional
        A YAML file; None uses :data:`DEFAULTS` alone.
    overrides : iterable of str
        ``section.key=value`` strings.
    flags : dict, optional
        Values of the direct flags by :data:`FLAGS` key; None values are ignored.
        ``id_cols`` and ``outputs`` may be comma-separated strings.

    Raises
    ------
    FileNotFoundError
        The config file does not exist.
    ValueError
        Unknown sections or keys, bad YAML, or invalid values (naming the setting).
    """
    def apply_flags(settings: Dict[str, Any]) -> None:
        for flag, value in (flags or {}).items():
            if value is None:
                continue
            section, key = FLAGS[flag].split(".")
            if key in ("id_cols", "outputs") and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            settings[section][key] = value

    return loader.load(path, overrides, DEFAULTS, validate, after=apply_flags)


def _require(settings: Dict[str, Any], key: str, flag: str) -> None:
    section, name = key.split(".")
    value = settings[section][name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: got {value!r}, expected a non-empty string (give {flag} or "
                         f"--set {key}=...)")


def _str_list(value: Any, key: str) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key}: got {value!r}, expected a list of column names")
    return value


def validate(settings: Dict[str, Any]) -> None:
    """Check every setting; messages name the setting, the value and what is allowed."""
    _require(settings, "model.path", "--model")
    _require(settings, "input.path", "--input")
    _require(settings, "output.path", "--output")
    for key, value, allowed in (("input.format", settings["input"]["format"], INPUT_FORMATS),
                                ("output.format", settings["output"]["format"],
                                 OUTPUT_FORMATS)):
        if value not in allowed:
            raise ValueError(f"{key}: got {value!r}, expected one of {', '.join(allowed)}")
    check_time_travel(settings["input"]["version"], settings["input"]["timestamp"], "input")
    out = settings["output"]
    if out["schema_mode"] not in SCHEMA_MODES:
        raise ValueError(f"output.schema_mode: got {out['schema_mode']!r}, expected one of "
                         f"{', '.join(SCHEMA_MODES)}")
    if not isinstance(out["optimize"], bool):
        raise ValueError(f"output.optimize: got {out['optimize']!r}, expected true or false")
    ids = _str_list(settings["input"]["id_cols"], "input.id_cols")
    dupes = sorted({c for c in ids if ids.count(c) > 1})
    if dupes:
        raise ValueError(f"input.id_cols: columns {dupes} are listed more than once")
    sc = settings["scoring"]
    if sc["outputs"] is not None:
        outs = sc["outputs"]
        if not isinstance(outs, list) or not outs:
            raise ValueError(f"scoring.outputs: got {outs!r}, expected a non-empty list of "
                             f"{', '.join(OUTPUT_TYPES)}")
        for o in outs:
            if o not in OUTPUT_TYPES:
                raise ValueError(f"scoring.outputs: got {o!r}, expected any of "
                                 f"{', '.join(OUTPUT_TYPES)}")
    for key, low in (("layer", 1), ("batch_size", 1)):
        v = sc[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ValueError(f"scoring.{key}: got {v!r}, expected an integer >= {low} or null")
    thr = sc["threshold"]
    if thr is not None and (isinstance(thr, bool) or not isinstance(thr, (int, float))
                            or thr != thr or thr in (float("inf"), float("-inf"))):
        raise ValueError(f"scoring.threshold: got {thr!r}, expected a finite number or null")
    clip = sc["clip_to_training_range"]
    if clip is not None and not isinstance(clip, bool):
        raise ValueError(f"scoring.clip_to_training_range: got {clip!r}, expected true, false "
                         "or null")
    col = settings["output"]["partition_col"]
    if not isinstance(col, str) or not _IDENT.match(col):
        raise ValueError(f"output.partition_col: got {col!r}, expected a column name "
                         "(letters, digits, _)")
    if col in ids:
        raise ValueError(f"output.partition_col: '{col}' is also in input.id_cols; rename one")
    run_date(settings)


def run_date(settings: Dict[str, Any]) -> str:
    """The run date as ``YYYY-MM-DD`` (today when unset)."""
    value = settings["run"]["date"]
    if value is None:
        return dt.date.today().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ValueError(f"run.date: got {value!r}, expected a date YYYY-MM-DD") from None


def describe_defaults() -> str:
    """Every setting with its default, one per line (for ``--help``)."""
    return loader.describe(DEFAULTS)
