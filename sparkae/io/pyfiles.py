"""Jars that Spark puts on the Python path although they hold no Python.

For a Python application, ``spark-submit`` adds every jar that ``--packages`` (or
``spark.jars.packages``) resolves to ``spark.submit.pyFiles`` too, in case a jar carries
Python code: the driver puts each on ``sys.path`` (after copying it into its SparkFiles
folder) and ships it to every Python worker. S3A's AWS SDK bundle is a 686 MB jar of
398,307 entries. Every ``importlib.metadata`` lookup (Torch's optimizer, matplotlib and
Ray make many on their first use) opens each ``sys.path`` zip and lists its entries, so
with the bundle on the path those lookups took 55 s of a 57 s one-epoch fit of the
bundled sample through ``./spark-submit.sh`` (2 s without it), and slowed scoring and the
report alike.

:func:`python_free` tells which jars hold no Python file (a scan of each jar's entries,
remembered per jar name and size in ``~/.cache/sparkae``), and
:func:`prune_python_path` takes those off ``sys.path`` and ``PYTHONPATH``. The JVM's
class path is not touched. Jars that do carry Python (Delta Lake's holds its Python API)
stay.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import zipfile
from typing import Dict, Iterable, List, Set, Tuple

log = logging.getLogger("sparkae")

#: Where the scans are remembered (``SPARKAE_CACHE_HOME`` overrides ``~/.cache/sparkae``).
_CACHE = os.path.join(os.environ.get("SPARKAE_CACHE_HOME") or
                      os.path.join(os.path.expanduser("~"), ".cache", "sparkae"),
                      "jar-python.json")
_SUFFIXES = (".py", ".pyc")   # zipimport loads no extension module from a zip


def _key(path: str) -> str:
    """A jar's name and size: Ivy's names carry the version, and the copy the driver makes
    in its SparkFiles folder (a new one per session) keeps both."""
    return f"{os.path.basename(path)}:{os.stat(path).st_size}"


def _load() -> Dict[str, bool]:
    try:
        with open(_CACHE, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(known: Dict[str, bool]) -> None:
    try:
        os.makedirs(os.path.dirname(_CACHE), exist_ok=True)
        tmp = f"{_CACHE}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(known, f)
        os.replace(tmp, _CACHE)
    except OSError as exc:   # a read-only home: scan again next time
        log.debug("could not remember the jar scans in %s: %s", _CACHE, exc)


def holds_python(path: str) -> bool:
    """Whether the jar (zip) at ``path`` holds a Python module (``.py`` or ``.pyc``);
    True when it cannot be read (it stays on the path, as Spark put it)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith(_SUFFIXES) for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return True


def python_free(paths: Iterable[str]) -> Set[str]:
    """The entries of ``paths`` that are jars holding no Python (see :func:`holds_python`),
    as given."""
    known = _load()
    out, changed = set(), False
    for path in paths:
        if not path.lower().endswith(".jar") or not os.path.isfile(path):
            continue
        try:
            key = _key(path)
        except OSError:
            continue
        if key not in known:
            known[key] = holds_python(path)
            changed = True
        if not known[key]:
            out.add(path)
    if changed:
        _save(known)
    return out


def prune_python_path() -> List[str]:
    """Take the jars that hold no Python off ``sys.path`` and ``PYTHONPATH`` (so processes
    this one starts do not get them either).

    Returns
    -------
    list of str
        The base names of the jars taken off.
    """
    env = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    drop = python_free(list(sys.path) + env)
    if not drop:
        return []
    sys.path[:] = [p for p in sys.path if p not in drop]
    if env:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in env if p not in drop)
    names = sorted({os.path.basename(p) for p in drop})
    log.debug("took %d jars without Python off the Python path: %s", len(names), names)
    return names


def prune_submitted(py_files: str, files: str) -> Tuple[str, str]:
    """``spark.submit.pyFiles`` and ``spark.files`` (comma-separated) without the jars of
    ``py_files`` that hold no Python: spark-submit copies a Python app's ``--py-files``
    into ``spark.files``, so only those copies leave ``files``; a jar the user gave as a
    plain file stays."""
    items = [p for p in (py_files or "").split(",") if p]
    drop = python_free(items)
    kept = [p for p in (files or "").split(",") if p and p not in drop]
    return ",".join(p for p in items if p not in drop), ",".join(kept)
