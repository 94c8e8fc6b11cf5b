"""Score a DataFrame with a pandas UDF that rebuilds the network once per Python worker.

The model travels as bytes (architecture JSON + safetensors tensors): broadcast with
``sc.broadcast`` on classic Spark, captured in the UDF's closure where no SparkContext is
available (Spark Connect). One forward pass per row batch computes every requested output.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import torch
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sparkae.data.prepare import InputInfo, input_column
from sparkae.nn.models import AutoencoderNet, build_network

log = logging.getLogger("sparkae")

_SCORE_COL = "__sparkae_scores"
# Networks rebuilt in this Python worker, by model key; a worker scores many batches.
_NETS: Dict[str, AutoencoderNet] = {}
# Driver side: one broadcast per (model key, SparkContext).
_BROADCASTS: Dict[tuple, Any] = {}

_TYPES = {
    "deep_features": T.ArrayType(T.FloatType()),
    "reconstruction_mse": T.DoubleType(),
    "reconstruction": T.ArrayType(T.FloatType()),
    "feature_errors": T.ArrayType(T.FloatType()),
    "is_anomaly": T.BooleanType(),
}


def pack(spec: Dict[str, Any], state: Dict[str, torch.Tensor]) -> bytes:
    """Serialize a network as ``len(json) | json | safetensors`` bytes (no pickle)."""
    head = json.dumps(spec, sort_keys=True).encode()
    return len(head).to_bytes(8, "little") + head + st_save(
        {k: v.detach().contiguous().cpu() for k, v in state.items()})


def unpack(payload: bytes) -> AutoencoderNet:
    """Rebuild an evaluation-mode network from :func:`pack` bytes."""
    n = int.from_bytes(payload[:8], "little")
    net = build_network(json.loads(payload[8:8 + n]))
    net.load_state_dict(st_load(payload[8 + n:]))
    return net.eval()


def score_matrix(net: AutoencoderNet, x: np.ndarray, outputs: List[str], layer: int,
                 threshold: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Compute the requested outputs for raw feature rows ``x`` (rows x input width).

    Returns a dict of NumPy arrays keyed by output name; only requested outputs are
    computed, and the network runs once.
    """
    with torch.no_grad():
        z = net.scaler(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        needs_output = any(o != "deep_features" for o in outputs)
        acts = net.hidden_activations(z, upto=None if needs_output else layer)
        out: Dict[str, np.ndarray] = {}
        if "deep_features" in outputs:
            out["deep_features"] = acts[layer - 1].numpy()
        if needs_output:
            y = net.decode_from_last(acts[-1])
            err = (y - z) ** 2
            mse = err.mean(dim=1).double().numpy()
            if "reconstruction_mse" in outputs:
                out["reconstruction_mse"] = mse
            if "feature_errors" in outputs:
                out["feature_errors"] = err.numpy()
            if "reconstruction" in outputs:
                out["reconstruction"] = net.scaler.unscale(y).numpy()
            if "is_anomaly" in outputs:
                out["is_anomaly"] = mse > threshold
    return out


def _rows_to_matrix(series: pd.Series, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack a Series of 1-D arrays; return (matrix of the non-null rows, null mask)."""
    null = series.isna().to_numpy()
    rows = series[~null]
    if len(rows) == 0:
        return np.zeros((0, size), dtype=np.float32), null
    lengths = rows.map(len).to_numpy()
    if (lengths != size).any():
        bad = int(lengths[lengths != size][0])
        raise ValueError(f"a row has {bad} features where the model expects {size}")
    return np.stack(rows.to_numpy()).astype(np.float32, copy=False), null


def _make_udf(get_payload: Callable[[], bytes], key: str, size: int, outputs: List[str],
              layer: int, batch_size: int, threshold: Optional[float], threads: int):
    schema = T.StructType([T.StructField(o, _TYPES[o]) for o in outputs])

    @F.pandas_udf(schema)
    def _score(features: pd.Series) -> pd.DataFrame:
        net = _NETS.get(key)
        if net is None:
            torch.set_num_threads(threads)
            net = _NETS[key] = unpack(get_payload())
        x, null = _rows_to_matrix(features, size)
        parts = [score_matrix(net, x[i:i + batch_size], outputs, layer, threshold)
                 for i in range(0, len(x), batch_size)] or [None]
        result = pd.DataFrame(index=range(len(features)), columns=outputs, dtype=object)
        keep = np.flatnonzero(~null)
        for o in outputs:
            vals = (np.concatenate([p[o] for p in parts]) if parts[0] is not None
                    else np.zeros((0,)))
            col = np.empty(len(features), dtype=object)
            col[keep] = list(vals) if vals.ndim > 1 else vals.tolist()
            col[null] = None
            result[o] = col
        return result

    return _score


def _payload_getter(df: DataFrame, key: str, payload: bytes) -> Callable[[], bytes]:
    """Broadcast the model once per SparkContext; without one (Spark Connect) use a closure."""
    try:
        sc = df.sparkSession.sparkContext
    except Exception:  # Spark Connect has no SparkContext
        return lambda: payload
    bc = _BROADCASTS.get((key, id(sc)))
    if bc is None:
        bc = _BROADCASTS[(key, id(sc))] = sc.broadcast(payload)
    return lambda: bc.value


def score(df: DataFrame, payload: bytes, key: str, info: InputInfo, outputs: List[str],
          layer: int, batch_size: int = 1024, threshold: Optional[float] = None,
          threads: int = 1) -> DataFrame:
    """Add the requested score columns to ``df`` (existing columns of the same name are
    replaced).

    Parameters
    ----------
    df : DataFrame
        Table holding the model's input column(s).
    payload : bytes
        The model as :func:`pack` bytes.
    key : str
        Identifies the model in the per-worker network cache.
    info : InputInfo
        The model's input description; ``df`` is checked against it before any job.
    outputs : list of str
        Any of ``deep_features``, ``reconstruction_mse``, ``reconstruction``,
        ``feature_errors``, ``is_anomaly``.
    layer : int
        1-based hidden layer for ``deep_features``.
    batch_size : int
        Rows per forward pass.
    threshold : float, optional
        Required for ``is_anomaly``.
    threads : int
        Torch threads per Python worker.
    """
    if "is_anomaly" in outputs and threshold is None:
        raise ValueError("output 'is_anomaly' needs a threshold: the model has none; set "
                         "anomaly_threshold or train with anomaly_quantile")
    vec = input_column(df, info, "scoring input")
    get_payload = _payload_getter(df, key, payload)
    udf = _make_udf(get_payload, key, info.size, outputs, layer, batch_size, threshold, threads)
    scored = df.withColumn(_SCORE_COL, udf(vector_to_array(vec, "float32")))
    keep = [F.col(f"`{c}`") for c in df.columns if c not in outputs]
    return scored.select(*keep, *[F.col(f"{_SCORE_COL}.{o}").alias(o) for o in outputs])

