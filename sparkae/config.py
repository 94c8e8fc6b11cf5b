"""YAML configs -> validated settings -> Autoencoder Params: the one source of truth for jobs/.

A config has five sections: ``spark``, ``input``, ``evaluation``, ``model`` (any
:class:`~sparkae.Autoencoder` Param) and ``output``. Missing keys take the defaults of
:data:`DEFAULTS`; unknown keys are errors with a "did you mean" suggestion. Overrides
come as ``section.key=value`` strings whose values are parsed as YAML
(``--set model.hidden=[300,100,300]``).
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional

import yaml

from sparkae.params import AutoencoderParams, check_known, validate
from sparkae.partitions import looks_like_table
from sparkae.tables import FORMATS, check_time_travel

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


def parse_override(item: str) -> tuple[List[str], Any]:
    if "=" not in item:
        raise ValueError(f"--set: got {item!r}, expected section.key=value, "
                         "e.g. model.epochs=1")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {key}: value {raw!r} is not valid YAML: {exc}") from None
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"--set: key {key!r} must name a section and a setting, "
                         "e.g. model.epochs")
    return parts, value


def read_sections(path: Optional[str], sections: Iterable[str]) -> tuple[Dict[str, Any], str]:
    """Read a YAML config of named ``sections`` safely; return ``(raw mapping, where)``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Bad YAML, a top level that is not a mapping, or an unknown section.
    """
    sections = list(sections)
    raw: Dict[str, Any] = {}
    if path is not None:
        from sparkae.io import fs

        if not fs.isfile(path, "--config"):
            raise FileNotFoundError(f"config file '{path}' does not exist")
        try:   # a local file, or one on cluster storage (s3a://, dbfs:/, ...)
            raw = yaml.safe_load(fs.read_bytes(path, "--config").decode()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file '{path}' is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"config file '{path}': expected a mapping of sections "
                             f"({', '.join(sections)}), got {type(raw).__name__}")
    where = f"config '{path}'" if path else "config"
    check_known(list(raw), sections, where)
    return raw, where


Merge = Callable[[Dict[str, Any], str, Dict[str, Any], str], None]


def apply_layers(settings: Dict[str, Any], raw: Dict[str, Any], where: str,
                 overrides: Iterable[str], merge: Merge) -> None:
    """Merge a config file's sections (``raw``, from :func:`read_sections`), then the
    ``--set section.key=value`` overrides, into ``settings`` with ``merge(settings,
    section, values, where)``. ``--set spark.conf.<name>=value`` sets one Spark setting.

    Raises
    ------
    ValueError
        A section that is not a mapping, an unknown section, or what ``merge`` refuses.
    """
    for section, values in raw.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{where}: section '{section}' must be a mapping, got {values!r}")
        merge(settings, section, values, where)
    for item in overrides:
        parts, value = parse_override(item)
        check_known([parts[0]], list(settings), "--set")
        if parts[0] == "spark" and parts[1] == "conf" and len(parts) > 2:
            settings["spark"]["conf"][".".join(parts[2:])] = value
            continue
        merge(settings, parts[0], {".".join(parts[1:]): value}, "--set")


def setup_logging(level: str, quiet: Iterable[str] = ("py4j", "pyspark")) -> None:
    """A job's logging: ``level`` on stderr with timestamps; the ``quiet`` loggers at
    WARNING."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)


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
        Complete settings; ``settings["model"]`` holds only Params that differ from
        nothing (every Param, defaults filled in).

    Raises
    ------
    FileNotFoundError
        The config file does not exist.
    ValueError
        Unknown sections or keys, bad YAML, or invalid values (naming the key).
    """
    raw, where = read_sections(path, DEFAULTS)
    settings = copy.deepcopy(DEFAULTS)
    settings["model"] = model_defaults()
    apply_layers(settings, raw, where, overrides, _merge)
    _validate(settings)
    return settings


def _merge(settings: Dict[str, Any], section: str, values: Dict[str, Any], where: str) -> None:
    known = list(settings[section])
    check_known(list(values), known, f"{where}, section '{section}'")
    for key, value in values.items():
        if section == "spark" and key == "conf":
            if not isinstance(value, dict):
                raise ValueError(f"{where}: spark.conf must be a mapping of Spark settings")
            settings["spark"]["conf"].update(value)
        else:
            settings[section][key] = value


def _validate(settings: Dict[str, Any]) -> None:
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
    validate(ae.param_values())


def describe_defaults() -> str:
    """Every setting with its default, one per line (for ``--help``)."""
    lines: List[str] = []
    defaults = copy.deepcopy(DEFAULTS)
    defaults["model"] = model_defaults()
    for section, values in defaults.items():
        for key, value in values.items():
            lines.append(f"  {section}.{key} = {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    return "\n".join(lines)
