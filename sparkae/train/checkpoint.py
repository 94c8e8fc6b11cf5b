"""Training checkpoints: safetensors for tensors, JSON for everything else. No pickle.

A checkpoint is a directory ``<checkpoint_dir>/epoch-000N`` with ``tensors.safetensors``
and ``state.json`` (the loop's state: optimizer settings, history, early-stopping state,
and where each tensor goes; plus the fit's metadata), committed by a ``_manifest.json``
written last (:mod:`sparkae.io.commit`), so it works on object stores (``s3a://``) as on
local disks. Only ``epoch-*`` directories with a manifest count; the newest one is what
``fit(..., resume=True)`` continues from, its files verified against the manifest. The
two newest are kept.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Dict, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from sparkae.io import commit, fs
from sparkae.io.uri import join

log = logging.getLogger("sparkae")

STATE = "state.json"
TENSORS = "tensors.safetensors"
KEEP = 2
_NAME = re.compile(r"^epoch-(\d+)$")


class CheckpointError(OSError):
    """A checkpoint could not be written (disk full, unwritable directory)."""


def _encode(obj: Any, tensors: Dict[str, torch.Tensor], path: str) -> Any:
    """JSON-able form of nested dicts/lists/scalars; tensors go to ``tensors`` by path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {"__items__": [[k, _encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} at {path}")


def _decode(obj: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__items__"]}
        if "__list__" in obj:
            items = [_decode(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def save(directory: str, epoch: int, state: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """Write the checkpoint of ``epoch`` under ``directory``; return its location."""
    tensors: Dict[str, torch.Tensor] = {}
    body = {"epoch": epoch, "meta": meta, "state": _encode(state, tensors, "s")}
    final = join(directory, f"epoch-{epoch:04d}")
    try:
        fs.delete(join(final, commit.MANIFEST), "checkpoint_dir")  # a rerun of this epoch
        commit.commit(final, {TENSORS: save_bytes(tensors), STATE: json.dumps(body).encode()},
                      what="checkpoint_dir")
    except (OSError, SafetensorError) as exc:
        try:
            fs.delete(final, "checkpoint_dir")   # no manifest: never loaded, so tidy it away
            last = latest(directory)
        except OSError:
            last = None
        raise CheckpointError(
            f"checkpoint_dir: could not write the checkpoint of epoch {epoch} to "
            f"'{directory}': {getattr(exc, 'strerror', None) or exc}; training stopped so that no progress is "
            f"lost silently. The last complete checkpoint is "
            f"{repr(last) if last else 'none'}: free space or fix the directory, then fit "
            "with resume=True") from exc
    for old in sorted(_epochs(directory))[:-KEEP]:
        fs.delete(join(directory, f"epoch-{old:04d}"), "checkpoint_dir")
    log.info("checkpoint: epoch %d -> %s", epoch, final)
    return final


def _epochs(directory: str):
    """Epochs with a committed checkpoint (a manifest) under ``directory``."""
    found = []
    for name in fs.listdir(directory, "checkpoint_dir"):
        m = _NAME.match(name)
        if m and fs.isfile(join(directory, name, commit.MANIFEST), "checkpoint_dir"):
            found.append(int(m.group(1)))
    return found


def latest(directory: Optional[str]) -> Optional[str]:
    """The newest complete checkpoint under ``directory``, or None."""
    if not directory:
        return None
    epochs = _epochs(directory)
    return join(directory, f"epoch-{max(epochs):04d}") if epochs else None


def _read(path: str, names) -> Dict[str, bytes]:
    try:
        manifest = commit.read_manifest(path, "checkpoint")
        return {n: commit.read_file(path, manifest, n, "checkpoint") for n in names}
    except (OSError, ValueError) as exc:
        raise ValueError(f"checkpoint '{path}' cannot be read: {exc}") from None


def load(path: str) -> Tuple[int, Dict[str, Any], Dict[str, Any]]:
    """Read a checkpoint: ``(epoch, loop state, metadata)``.

    Raises
    ------
    ValueError
        The directory is not a complete checkpoint, or a file does not match its manifest.
    """
    files = _read(path, (STATE, TENSORS))
    try:
        body = json.loads(files[STATE])
        tensors = load_bytes(files[TENSORS])
    except (ValueError, SafetensorError) as exc:
        raise ValueError(f"checkpoint '{path}' cannot be read: {exc}") from None
    return int(body["epoch"]), _decode(body["state"], tensors), body.get("meta", {})


def read_meta(path: str) -> Dict[str, Any]:
    """Only the metadata of a checkpoint (no tensors)."""
    return json.loads(_read(path, (STATE,))[STATE]).get("meta", {})


def clear(directory: Optional[str]) -> None:
    """Remove the checkpoints under ``directory`` (a fresh fit starts a new series)."""
    names = [n for n in fs.listdir(directory, "checkpoint_dir") if _NAME.match(n)] \
        if directory else []
    for name in names:
        fs.delete(join(directory, name), "checkpoint_dir")
    if names:
        log.info("checkpoint_dir %s: removed %d checkpoints of an earlier fit", directory,
                 len(names))


def resume_point(directory: Optional[str], resume: bool, meta: Dict[str, Any],
                 seed_param: Optional[int]) -> Tuple[Optional[str], Optional[int]]:
    """Where ``fit(..., resume=resume)`` starts: ``(checkpoint path or None, its seed)``.

    A fresh fit (``resume=False``) clears old checkpoints in ``directory``. A resumed fit
    takes the newest complete checkpoint, which must have been written for the same
    network and training data (``meta`` keys ``spec`` and ``data``) and seed.

    Raises
    ------
    ValueError
        ``resume`` without a ``checkpoint_dir``, or a checkpoint of another model, data or
        seed.
    """
    if not resume:
        clear(directory)
        return None, None
    if not directory:
        raise ValueError("fit(resume=True) needs the checkpoint_dir Param: the directory the "
                         "interrupted fit wrote its checkpoints to")
    path = latest(directory)
    if path is None:
        log.warning("fit(resume=True): no checkpoint under %s yet; training from the start",
                    directory)
        return None, None
    found = read_meta(path)
    expected = json.loads(json.dumps(meta))
    for key, what in (("spec", "network"), ("data", "training data")):
        if found.get(key) is not None and expected.get(key) is not None and \
                found[key] != expected[key]:
            raise ValueError(f"fit(resume=True): the checkpoint {path} was written for another "
                             f"{what} ({key}: {found[key]!r}, this fit: {expected[key]!r}); use "
                             "another checkpoint_dir or resume=False")
    seed = found.get("seed")
    if seed_param is not None and seed is not None and seed_param != seed:
        raise ValueError(f"fit(resume=True): the checkpoint {path} was written with seed {seed}, "
                         f"this fit has seed={seed_param}")
    log.info("resuming from checkpoint %s", path)
    return path, seed
