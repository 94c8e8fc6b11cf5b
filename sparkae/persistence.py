"""The model directory: ``metadata.json`` plus ``weights.safetensors``. No pickle.

``metadata.json`` holds the format version, the class, the Params, the architecture, the
input description, the training summary, the anomaly threshold and the sha256 of every
other file; ``weights.safetensors`` holds every tensor of the network, input scaling
included. A directory is written beside its destination and renamed into place, so an
interrupted save never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from typing import Any, Dict, Tuple

import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
METADATA = "metadata.json"
WEIGHTS = "weights.safetensors"
MODEL_CLASS = "sparkae.AutoencoderModel"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(path: str, metadata: Dict[str, Any], state: Dict[str, torch.Tensor],
               overwrite: bool = False) -> None:
    """Write a model directory at ``path``.

    Parameters
    ----------
    path : str
        Destination directory (local or mounted file system).
    metadata : dict
        JSON-able description of the model (see the module docstring).
    state : dict of str to Tensor
        The network's tensors.
    overwrite : bool
        Replace an existing directory; otherwise an existing path is an error.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"model path '{path}' already exists; use "
                              "model.write().overwrite().save(path) to replace it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
                  os.path.join(tmp, WEIGHTS))
        meta = dict(metadata, format_version=FORMAT_VERSION, **{"class": MODEL_CLASS},
                    files={WEIGHTS: _sha256(os.path.join(tmp, WEIGHTS))})
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True, default=_json_default)
        _write_spark_ml_metadata(tmp, meta.get("uid"))
        old = None
        if os.path.exists(path):
            old = os.path.join(parent, f".{os.path.basename(path)}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_spark_ml_metadata(directory: str, uid: Any) -> None:
    """A ``metadata/part-00000`` in Spark ML's format naming the Python class, so that a
    ``PipelineModel`` holding the model saves and loads with Spark's own ``save``/``load``
    (Spark's reader then calls :meth:`AutoencoderModel.load` on the directory)."""
    os.makedirs(os.path.join(directory, "metadata"))
    line = json.dumps({"class": "sparkae.estimator.AutoencoderModel", "uid": uid,
                       "timestamp": 0, "sparkVersion": "", "paramMap": {},
                       "defaultParamMap": {}})
    with open(os.path.join(directory, "metadata", "part-00000"), "w") as f:
        f.write(line + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in model metadata")


def load_model(path: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Read and verify a model directory; return ``(metadata, state)``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is not a sparkae model directory, was written by a newer format, or a
        file's checksum does not match its metadata.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"model path '{path}' does not exist")
    meta_path = os.path.join(path, METADATA)
    if not os.path.isdir(path) or not os.path.isfile(meta_path):
        raise ValueError(f"'{path}' is not a sparkae model directory: it has no {METADATA}")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"'{meta_path}' is not valid model metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("class") != MODEL_CLASS:
        raise ValueError(f"'{path}' is not a sparkae model directory: {METADATA} does not "
                         f"describe a {MODEL_CLASS}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"model '{path}' has format version {version!r}; this sparkae reads "
                         f"versions up to {FORMAT_VERSION}: upgrade sparkae")
    files = meta.get("files") or {}
    for name in files if isinstance(files, dict) else ["files"]:
        if not isinstance(name, str) or name != os.path.basename(name) or name in ("", ".", ".."):
            raise ValueError(f"model '{path}': {METADATA} names the file {name!r}; a model's "
                             "files must be plain names inside its directory")
    weights = os.path.join(path, WEIGHTS)
    if not os.path.isfile(weights):
        raise ValueError(f"model '{path}' is incomplete: {WEIGHTS} is missing")
    expected = (meta.get("files") or {}).get(WEIGHTS)
    found = _sha256(weights)
    if expected != found:
        raise ValueError(f"model file '{weights}' is corrupt or was altered: sha256 {found} "
                         f"does not match {expected} recorded in {METADATA}")
    return meta, load_file(weights)
