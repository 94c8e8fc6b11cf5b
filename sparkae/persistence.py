"""The model directory, committed through :mod:`sparkae.io.commit`. No pickle.

Layout (any location :mod:`sparkae.io` reaches: local, s3a://, hdfs://, dbfs:/, ...)::

    <model>/_manifest.json              written last: the generation and every file's sha256
    <model>/g-<time>-<id>/metadata.json format version, class, Params, architecture, input
                                        description, training summary, anomaly threshold
    <model>/g-<time>-<id>/weights.safetensors   every tensor of the network, scaling included
    <model>/metadata/part-00000         Spark ML's pointer to the Python class (Pipelines)

A save writes a new generation and then the manifest, so overwriting keeps the old model
loadable until the new one is complete, and a killed save leaves no loadable half-model.
Directories written by sparkae before the manifest (``metadata.json`` at the top, renamed
into place whole) are still read.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict, Tuple

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from pyspark.ml.util import MLReadable, MLReader, MLWritable, MLWriter

from sparkae.io import commit, fs
from sparkae.io.uri import join, parse

log = logging.getLogger("sparkae")

FORMAT_VERSION = 2
METADATA = "metadata.json"
WEIGHTS = "weights.safetensors"
MODEL_CLASS = "sparkae.AutoencoderModel"


def save_model(path: str, metadata: Dict[str, Any], state: Dict[str, torch.Tensor],
               overwrite: bool = False) -> None:
    """Write a model directory at ``path``.

    Parameters
    ----------
    path : str
        Destination directory: a local path or a URI (``s3a://``, ``hdfs://``, ...).
    metadata : dict
        JSON-able description of the model (see the module docstring).
    state : dict of str to Tensor
        The network's tensors.
    overwrite : bool
        Replace an existing model; otherwise an existing path is an error.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        ``path`` has a scheme sparkae cannot write.
    """
    path = parse(path, "model path").text
    if fs.exists(path, "model path") and not overwrite:
        raise FileExistsError(f"model path '{path}' already exists; use "
                              "model.write().overwrite().save(path) to replace it")
    weights = save_bytes({k: v.detach().contiguous().cpu() for k, v in state.items()})
    meta = dict(metadata, format_version=FORMAT_VERSION, **{"class": MODEL_CLASS})
    body = json.dumps(meta, indent=1, sort_keys=True, default=_json_default).encode()
    fs.write_bytes(join(path, "metadata", "part-00000"), _spark_ml_metadata(meta.get("uid")),
                   "model path")
    commit.commit(path, {METADATA: body, WEIGHTS: weights}, extra={"class": MODEL_CLASS},
                  generations=True, what="model path")
    log.info("saved model to %s", path)


def _spark_ml_metadata(uid: Any) -> bytes:
    """Spark ML's ``metadata/part-00000`` naming the Python class, so that a
    ``PipelineModel`` holding the model saves and loads with Spark's own ``save``/``load``
    (Spark's reader then calls :meth:`AutoencoderModel.load` on the directory); with the
    save time (ms since the epoch) and the PySpark version, as Spark ML writes them."""
    import pyspark

    line = json.dumps({"class": MODEL_CLASS, "uid": uid,
                       "timestamp": int(time.time() * 1000), "sparkVersion": pyspark.__version__,
                       "paramMap": {}, "defaultParamMap": {}})
    return (line + "\n").encode()


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
        ``path`` is not a complete sparkae model directory (no manifest: an interrupted
        save), was written by a newer format, or a file is missing, truncated or altered.
    """
    path = parse(path, "model path").text
    try:
        manifest = commit.read_manifest(path, "model path")
    except commit.IncompleteError as exc:
        if fs.isfile(join(path, METADATA), "model path"):
            return _load_legacy(path)
        raise ValueError(f"'{path}' is not a loadable sparkae model: {exc}") from None
    if manifest.get("class") != MODEL_CLASS:
        raise ValueError(f"'{path}' is not a sparkae model directory: its manifest does not "
                         f"describe a {MODEL_CLASS}")
    try:
        meta = json.loads(commit.read_file(path, manifest, METADATA, "model path"))
        weights = commit.read_file(path, manifest, WEIGHTS, "model path")
    except commit.IncompleteError as exc:
        raise ValueError(f"model '{path}' cannot be loaded: {exc}") from None
    _check_meta(path, meta)
    return meta, load_bytes(weights)


def _check_meta(path: str, meta: Any) -> None:
    if not isinstance(meta, dict) or meta.get("class") != MODEL_CLASS:
        raise ValueError(f"'{path}' is not a sparkae model directory: {METADATA} does not "
                         f"describe a {MODEL_CLASS}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"model '{path}' has format version {version!r}; this sparkae reads "
                         f"versions up to {FORMAT_VERSION}: upgrade sparkae")


def _load_legacy(path: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Format 1: ``metadata.json`` (with the weights' sha256) at the top of the directory."""
    try:
        meta = json.loads(fs.read_bytes(join(path, METADATA), "model path"))
    except ValueError as exc:
        raise ValueError(f"'{join(path, METADATA)}' is not valid model metadata: {exc}") from None
    _check_meta(path, meta)
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != {WEIGHTS}:
        raise ValueError(f"model '{path}': {METADATA} names the files {files!r}; a format-1 "
                         f"model lists exactly {WEIGHTS}")
    entry = {"sha256": files[WEIGHTS]}
    try:
        weights = commit.read_file(path, {"files": {WEIGHTS: entry}}, WEIGHTS, "model path")
    except commit.IncompleteError as exc:
        raise ValueError(f"model '{path}' cannot be loaded: {exc}") from None
    return meta, load_bytes(weights)


class DirectoryPersistence(MLReadable, MLWritable):
    """Spark ML's ``write()``/``read()`` of a model saved as a directory by a writer and
    read by a reader of its own (the class attributes ``writer_class``, ``reader_class``)."""

    writer_class: type
    reader_class: type

    def write(self) -> MLWriter:
        """An MLWriter; ``model.write().overwrite().save(path)`` replaces a directory."""
        return self.writer_class(self)

    @classmethod
    def read(cls) -> MLReader:
        """An MLReader; ``Model.load(path)`` calls it."""
        return cls.reader_class()
