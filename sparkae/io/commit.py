"""Write-then-manifest commits: a directory is complete once its manifest is.

Object stores have no atomic rename, so a directory (a model, a checkpoint) is committed
by writing its files first and ``_manifest.json`` last; the manifest lists every file
with its size and sha256, and a single object write is atomic. A reader trusts only
what the manifest lists and verifies each file against it.

With ``generations=True`` (models) the files go under a fresh ``g-<time>-<id>/``
subdirectory and the manifest names it, so overwriting a model rewrites nothing the old
manifest points at: until the new manifest lands, readers get the old model whole; a save
killed before that leaves the old model loadable and its own files unreferenced (removed
by the next save). The previous generation is kept one save longer for readers in flight.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any, Dict, Mapping, Optional, Tuple

from sparkae.io import fs
from sparkae.io.uri import join

__all__ = ["MANIFEST", "IncompleteError", "commit", "read_manifest", "read_file", "generations"]

MANIFEST = "_manifest.json"
FORMAT = 1
_GEN = "g-"


class IncompleteError(ValueError):
    """A directory without a complete manifest, or a file that does not match it."""


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def commit(directory: str, files: Mapping[str, bytes], extra: Optional[Dict[str, Any]] = None,
           generations: bool = False, what: str = "path") -> Dict[str, Any]:
    """Write ``files`` (name -> content) under ``directory``, then the manifest.

    Parameters
    ----------
    directory : str
        Location (any scheme of :mod:`sparkae.io.uri`).
    files : mapping of str to bytes
        Plain file names (``a/b`` allowed for subfolders) and their contents.
    extra : dict, optional
        JSON stored in the manifest beside the file list.
    generations : bool
        Put the files in a fresh generation folder (see the module docstring).
    what : str
        Names the location in errors.

    Returns
    -------
    dict
        The manifest written.
    """
    previous = _try_manifest(directory, what) if generations else None
    gen = f"{_GEN}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}" if generations else ""
    listed: Dict[str, Dict[str, Any]] = {}
    for name, data in files.items():
        _check_name(name, directory)
        fs.write_bytes(join(directory, gen, name) if gen else join(directory, name), data, what)
        listed[name] = {"sha256": sha256(data), "size": len(data)}
    manifest = {"format": FORMAT, "generation": gen or None, "files": listed,
                "committed": time.time(), **(extra or {})}
    fs.write_bytes(join(directory, MANIFEST),
                   json.dumps(manifest, indent=1, sort_keys=True).encode(), what)
    if generations:
        keep = {gen, (previous or {}).get("generation")}
        for name in fs.listdir(directory, what):
            if name.startswith(_GEN) and name not in keep:
                fs.delete(join(directory, name), what)
    return manifest


def _check_name(name: str, directory: str) -> None:
    parts = name.split("/")
    if not name or name == MANIFEST or any(p in ("", ".", "..") for p in parts):
        raise IncompleteError(f"'{directory}': the manifest names the file {name!r}; files "
                              "must be plain names inside the directory")


def _try_manifest(directory: str, what: str) -> Optional[Dict[str, Any]]:
    try:
        return read_manifest(directory, what)
    except (FileNotFoundError, IncompleteError):
        return None


def read_manifest(directory: str, what: str = "path") -> Dict[str, Any]:
    """The manifest of ``directory``.

    Raises
    ------
    FileNotFoundError
        Nothing is at ``directory``.
    IncompleteError
        The directory has no (valid) manifest: an interrupted write, or not one of ours.
    """
    path = join(directory, MANIFEST)
    try:
        raw = fs.read_bytes(path, what)
    except FileNotFoundError:
        if not fs.exists(directory, what):
            raise FileNotFoundError(f"{what}: '{directory}' does not exist") from None
        raise IncompleteError(f"{what}: '{directory}' has no {MANIFEST}: it is not a complete "
                              "sparkae directory (an interrupted save leaves exactly this; "
                              "save again)") from None
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        assert isinstance(files, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise IncompleteError(f"{what}: '{path}' is not a valid manifest") from None
    if not isinstance(manifest.get("format"), int) or manifest["format"] > FORMAT:
        raise IncompleteError(f"{what}: '{path}' has manifest format "
                              f"{manifest.get('format')!r}; this sparkae reads up to {FORMAT}: "
                              "upgrade sparkae")
    for name in files:
        _check_name(name, directory)
    return manifest


def read_file(directory: str, manifest: Mapping[str, Any], name: str,
              what: str = "path") -> bytes:
    """The content of ``name`` as the manifest lists it, verified (size and sha256).

    Raises
    ------
    IncompleteError
        The manifest does not list ``name``, or the file is missing, truncated or altered.
    """
    entry = manifest["files"].get(name)
    if entry is None:
        raise IncompleteError(f"{what}: '{directory}' lists no {name} in its {MANIFEST}")
    gen = manifest.get("generation")
    path = join(directory, gen, name) if gen else join(directory, name)
    try:
        data = fs.read_bytes(path, what)
    except FileNotFoundError:
        raise IncompleteError(f"{what}: '{path}' is missing although {MANIFEST} lists it") \
            from None
    if len(data) != entry.get("size", len(data)):
        raise IncompleteError(f"{what}: '{path}' is truncated or altered: {len(data)} bytes, "
                              f"the manifest says {entry['size']}")
    found = sha256(data)
    if found != entry.get("sha256"):
        raise IncompleteError(f"{what}: '{path}' is corrupt or was altered: sha256 {found} "
                              f"does not match {entry.get('sha256')} in {MANIFEST}")
    return data


def read_all(directory: str, what: str = "path") -> Tuple[Dict[str, Any], Dict[str, bytes]]:
    """``(manifest, {name: verified content})`` of a committed directory."""
    manifest = read_manifest(directory, what)
    return manifest, {n: read_file(directory, manifest, n, what) for n in manifest["files"]}


def generations(directory: str, what: str = "path") -> list:
    """Generation folders under ``directory`` (for tests and tidying)."""
    return [n for n in fs.listdir(directory, what) if n.startswith(_GEN)]
