"""The one settings loader of the jobs: YAML file, then ``--set`` overrides, then checks.

A job's settings are sections of keys (``spark.master``, ``model.hidden``, ...) with the
defaults of the job's ``DEFAULTS``. :func:`load` reads a YAML config (local or on cluster
storage), merges its sections and the ``section.key=value`` overrides (values parsed as
YAML: ``--set model.hidden=[300,100,300]``) and hands the result to the job's validator.
Unknown sections and keys are errors with a "did you mean" suggestion;
``spark.conf`` is a mapping of Spark settings merged key by key
(``--set spark.conf.spark.sql.shuffle.partitions=4`` sets one).
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml

from sparkae.validation import check_known

Settings = Dict[str, Dict[str, Any]]


def parse_override(item: str) -> Tuple[List[str], Any]:
    """Split ``section.key=value`` into the key's parts and the value parsed as YAML.

    Raises
    ------
    ValueError
        No ``=``, a key without a section, or a value that is not valid YAML.
    """
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


def read_sections(path: Optional[str], sections: Iterable[str]) -> Tuple[Dict[str, Any], str]:
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


def merge(settings: Settings, section: str, values: Dict[str, Any], where: str,
          free: Sequence[str] = ()) -> None:
    """Merge ``values`` into ``settings[section]``; keys of a section not in ``free`` must
    already exist there; ``spark.conf`` is merged key by key."""
    if section not in free:
        check_known(list(values), list(settings[section]), f"{where}, section '{section}'")
    for key, value in values.items():
        if section == "spark" and key == "conf":
            if not isinstance(value, dict):
                raise ValueError(f"{where}: spark.conf must be a mapping of Spark settings")
            settings["spark"]["conf"].update(value)
        else:
            settings[section][key] = value


def apply_layers(settings: Settings, raw: Dict[str, Any], where: str,
                 overrides: Iterable[str], free: Sequence[str] = ()) -> None:
    """Merge a config file's sections (``raw``, from :func:`read_sections`), then the
    ``--set section.key=value`` overrides, into ``settings``. Sections named in ``free``
    take any key (the tuning grid); ``--set spark.conf.<name>=value`` sets one Spark
    setting.

    Raises
    ------
    ValueError
        A section that is not a mapping, an unknown section or key.
    """
    for section, values in raw.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{where}: section '{section}' must be a mapping, got {values!r}")
        merge(settings, section, values, where, free)
    for item in overrides:
        parts, value = parse_override(item)
        check_known([parts[0]], list(settings), "--set")
        if parts[0] == "spark" and parts[1] == "conf" and len(parts) > 2:
            settings["spark"]["conf"][".".join(parts[2:])] = value
            continue
        merge(settings, parts[0], {".".join(parts[1:]): value}, "--set", free)


def load(path: Optional[str], overrides: Iterable[str], defaults: Settings,
         validate: Callable[[Settings], None], free: Sequence[str] = (),
         after: Optional[Callable[[Settings], None]] = None) -> Settings:
    """A job's settings: ``defaults`` (deep-copied), the YAML file at ``path`` (None: no
    file), the overrides, then ``after`` (the job's direct flags), then ``validate``.

    Raises
    ------
    FileNotFoundError
        The config file does not exist.
    ValueError
        Unknown sections or keys, bad YAML, or what ``validate`` refuses.
    """
    raw, where = read_sections(path, defaults)
    settings = copy.deepcopy(defaults)
    apply_layers(settings, raw, where, overrides, free)
    if after is not None:
        after(settings)
    validate(settings)
    return settings


def yaml_text(value: Any) -> str:
    """``value`` as one line of flow-style YAML."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def describe(defaults: Settings, notes: Optional[Dict[str, str]] = None) -> str:
    """Every setting with its default, one per line (for ``--help``); a section named in
    ``notes`` is one line of that text instead."""
    lines: List[str] = []
    for section, values in defaults.items():
        if notes and section in notes:
            lines.append(f"  {section}.{notes[section]}")
            continue
        for key, value in values.items():
            lines.append(f"  {section}.{key} = {yaml_text(value)}")
    return "\n".join(lines)


def setup_logging(level: str, quiet: Iterable[str] = ("py4j", "pyspark")) -> None:
    """A job's logging: ``level`` on stderr with timestamps; the ``quiet`` loggers at
    WARNING."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
