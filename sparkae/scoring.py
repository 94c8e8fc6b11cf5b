"""Score a DataFrame with the model rebuilt once per Python worker, one pass per batch.

The model travels as bytes (architecture JSON + safetensors tensors): broadcast with
``sc.broadcast`` on classic Spark, captured in the function's closure where no
SparkContext is available (Spark Connect). Each Python worker rebuilds the network once,
on its GPU when it has one, and caches it.

How rows reach the worker, without a Python object per row and without densifying in
Spark: the input column goes as is (a Spark vector travels as its SQL struct
``(type, size, indices, values)``, so a sparse vector stays sparse; an array column as an
Arrow list; ``features_cols`` packed into one dense vector) and
:func:`sparkae.data.arrow_rows.decode_rows` reads Arrow's flat buffers into NumPy. The
transport is ``mapInArrow`` (Spark >= 3.3): the carried columns cross to Python and are
handed back untouched. Where Spark has ``arrow_udf`` (>= 4.1) and the table holds no
user-defined-type column, a scalar ``arrow_udf`` is used instead, so only the input
column crosses; Spark 4.x Arrow UDFs (pandas ones too) fail on any table with a UDT
column (a vector) read by the vectorized Parquet reader ("Unsupported data type UDT"
from ``RowToColumnConverter`` in the columnar-input path), which ``mapInArrow`` avoids.

One forward pass per ``batch_size`` rows computes every requested output; unrequested
outputs are not computed. Sparse rows with few stored entries enter the first layer as a
CSR matrix (the input scaling is folded into that layer's weights), so a 1,000,000-wide
sparse row costs its stored entries; outputs of full width (``reconstruction_mse``,
``feature_errors``, ``reconstruction``, ``is_anomaly``) are computed in passes of at most
:data:`PASS_ELEMENTS` values, which bounds a worker's memory for any width.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import torch
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sparkae.data import arrow_rows
from sparkae.data.prepare import InputInfo, input_column
from sparkae.nn.models import AutoencoderNet, build_network

log = logging.getLogger("sparkae")

#: Every output ``score`` can add, with its Spark type.
OUTPUT_TYPES = {
    "deep_features": T.ArrayType(T.FloatType()),
    "reconstruction_mse": T.DoubleType(),
    "reconstruction": T.ArrayType(T.FloatType()),
    "feature_errors": T.ArrayType(T.FloatType()),
    "is_anomaly": T.BooleanType(),
}
#: Largest number of values one dense tensor of a forward pass may hold (64 MiB of
#: float32); wider rows are scored in passes of fewer rows.
PASS_ELEMENTS = 1 << 24
#: Sparse rows whose stored entries are below this share of the width use a CSR first layer.
SPARSE_DENSITY = 0.05
#: Spark conf ``"PARTITION:BATCH"``: raise in the worker scoring the BATCH-th Arrow batch
#: (1-based) of partition PARTITION. A fault-injection aid for tests of failed runs.
FAIL_CONF = "spark.sparkae.test.failOnBatch"
#: Test hook: seconds each Arrow batch waits before it is scored (lets fault tests kill an
#: executor or the driver while a job is surely mid-way). Off unless set.
DELAY_CONF = "spark.sparkae.test.delayPerBatchS"
ENGINES = ("arrow_udf", "map_in_arrow")

_TMP_COL = "__sparkae_scores"
_IN_COL = "__sparkae_input"
# Networks rebuilt in this Python worker, by model key; a worker scores many batches.
_SCORERS: Dict[str, "_Scorer"] = {}
# Arrow batches seen per task attempt (fault injection only).
_BATCHES: Dict[tuple, int] = {}
# Driver side: one broadcast per (model key, SparkContext).
_BROADCASTS: Dict[tuple, Any] = {}


def pack(spec: Dict[str, Any], state: Dict[str, torch.Tensor]) -> bytes:
    """Serialize a network as ``len(json) | json | safetensors`` bytes (no pickle)."""
    head = json.dumps(spec, sort_keys=True).encode()
    return len(head).to_bytes(8, "little") + head + st_save(
        {k: v.detach().contiguous().cpu() for k, v in state.items()})


def _spec(payload: bytes) -> Dict[str, Any]:
    n = int.from_bytes(payload[:8], "little")
    return json.loads(payload[8:8 + n])


def unpack(payload: bytes) -> AutoencoderNet:
    """Rebuild an evaluation-mode network from :func:`pack` bytes."""
    n = int.from_bytes(payload[:8], "little")
    net = build_network(json.loads(payload[8:8 + n]))
    net.load_state_dict(st_load(payload[8 + n:]))
    return net.eval()


# -- the forward pass ---------------------------------------------------------------------

def _hidden_from_first(net: AutoencoderNet, pre1: torch.Tensor,
                       upto: Optional[int]) -> List[torch.Tensor]:
    """Hidden activations when the first layer's pre-activation is already computed."""
    last = len(net.layers) if upto is None else upto
    drops = list(getattr(net, "dropouts", [None] * len(net.layers)))  # identity in eval mode
    acts = [net.acts[0](pre1)]
    for i in range(1, last):
        z = drops[i - 1](acts[-1]) if drops[i - 1] is not None else acts[-1]
        acts.append(net.acts[i](net.layers[i](z)))
    return acts


def _outputs(net: AutoencoderNet, acts: List[torch.Tensor], z: Callable[[], torch.Tensor],
             outputs: List[str], layer: int, threshold: Optional[float]) -> Dict[str, np.ndarray]:
    out: Dict[str, np.ndarray] = {}
    if "deep_features" in outputs:
        out["deep_features"] = acts[layer - 1].cpu().numpy()
    if any(o != "deep_features" for o in outputs):
        y = net.decode_from_last(acts[-1])
        err = (y - z()) ** 2
        mse = err.mean(dim=1).double().cpu().numpy()
        if "reconstruction_mse" in outputs:
            out["reconstruction_mse"] = mse
        if "feature_errors" in outputs:
            out["feature_errors"] = err.cpu().numpy()
        if "reconstruction" in outputs:
            out["reconstruction"] = net.scaler.unscale(y).cpu().numpy()
        if "is_anomaly" in outputs:
            out["is_anomaly"] = mse > threshold
    return out


def _needs_full_width(outputs: List[str]) -> bool:
    return any(o != "deep_features" for o in outputs)


def score_matrix(net: AutoencoderNet, x: np.ndarray, outputs: List[str], layer: int,
                 threshold: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Compute the requested outputs for raw feature rows ``x`` (rows x input width).

    Returns a dict of NumPy arrays keyed by output name; only requested outputs are
    computed, and the network runs once.
    """
    with torch.no_grad():
        z = net.scaler(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        upto = None if _needs_full_width(outputs) else layer
        return _outputs(net, net.hidden_activations(z, upto=upto), lambda: z, outputs, layer,
                        threshold)


class _Scorer:
    """A network on this worker's device, with what its sparse first layer needs."""

    def __init__(self, net: AutoencoderNet, device: torch.device) -> None:
        self.net, self.device = net.to(device), device
        sc = net.scaler
        self.size, self.kept = int(sc.input_size), int(sc.keep.numel())
        self.keep_pos: Optional[np.ndarray] = None
        if not sc.all_kept:
            self.keep_pos = np.full(self.size, -1, dtype=np.int64)
            self.keep_pos[sc.keep.cpu().numpy()] = np.arange(self.kept)
        self.shift, self.scale = sc.shift, sc.scale
        self._first: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        shift, scale = sc.shift.double(), sc.scale.double()
        self.z_zero = (-shift * scale).float()  # scaled value of a stored zero
        # a missing (NaN) entry in raw units: what the scaler's imputation maps it to
        self.raw_impute = (shift + sc.impute.double() / scale).float().cpu().numpy() \
            if hasattr(sc, "impute") else None

    def first_layer(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(W * scale)^T`` and ``b - W @ (shift * scale)``, built on first sparse use:
        ``layer1((x - shift) * scale) = x @ (W * scale)^T + (b - W @ (shift * scale))``."""
        if self._first is None:
            w, b = self.net.layers[0].weight, self.net.layers[0].bias
            offset = (self.shift.double() * self.scale.double())
            b_eff = b.double().clone()
            for i in range(0, w.shape[1], 1 << 16):  # float64 sums, a slice of W at a time
                b_eff -= w[:, i:i + (1 << 16)].double() @ offset[i:i + (1 << 16)]
            self._first = ((w * self.scale).t().contiguous(), b_eff.float())
        return self._first

    def rows_per_pass(self, batch_size: int, width: int) -> int:
        return max(1, min(batch_size, PASS_ELEMENTS // max(1, width)))

    def score(self, block: arrow_rows.RowBlock, outputs: List[str], layer: int,
              threshold: Optional[float], batch_size: int) -> Dict[str, np.ndarray]:
        """Outputs for the scored rows of ``block``, in passes of at most ``batch_size``."""
        full = _needs_full_width(outputs)
        # the CSR first layer is the dense network's; other families score densified rows
        sparse = (getattr(self.net, "supports_csr_scoring", True) and block.dense is None and
                  block.nnz < SPARSE_DENSITY * max(1, block.rows) * self.kept)
        parts: List[Dict[str, np.ndarray]] = []
        with torch.no_grad():
            if sparse:
                lengths, cols, vals = self._kept_entries(block)
                starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
                step = self.rows_per_pass(batch_size, self.kept) if full else batch_size
                for lo in range(0, block.rows, step):
                    hi = min(block.rows, lo + step)
                    parts.append(self._sparse_pass(starts, cols, vals, lo, hi, outputs, layer,
                                                   threshold, full))
            else:
                step = self.rows_per_pass(batch_size, self.size)
                for lo in range(0, block.rows, step):
                    x = torch.from_numpy(block.to_dense(lo, min(block.rows, lo + step)))
                    z = self.net.scaler(x.to(self.device))
                    acts = self.net.hidden_activations(z, upto=None if full else layer)
                    parts.append(_outputs(self.net, acts, lambda: z, outputs, layer, threshold))
        if not parts:
            return {}
        return {o: np.concatenate([p[o] for p in parts]) for o in parts[0]}

    def _kept_entries(self, block: arrow_rows.RowBlock):
        """Sparse components restricted to the modelled features, in network column order."""
        lengths, kc, vals = block.lengths, block.cols, block.vals
        if self.keep_pos is not None:
            kc = self.keep_pos[block.cols]
            m = kc >= 0
            if not m.all():
                rows = np.repeat(np.arange(block.rows), block.lengths)
                lengths, kc, vals = np.bincount(rows[m], minlength=block.rows), kc[m], vals[m]
        missing = np.isnan(vals)
        if missing.any():  # mean imputation, folded into the raw value
            vals = vals.copy()
            vals[missing] = (self.raw_impute[kc[missing]] if self.raw_impute is not None
                             else 0.0)
        return lengths, kc, vals

    def _sparse_pass(self, starts, cols, vals, lo, hi, outputs, layer, threshold, full):
        e0, e1 = int(starts[lo]), int(starts[hi])
        n, dev = hi - lo, self.device
        c = torch.from_numpy(cols[e0:e1]).to(dev)
        v = torch.from_numpy(vals[e0:e1]).to(dev)
        crow = torch.from_numpy(starts[lo:hi + 1] - e0).to(dev)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            x = torch.sparse_csr_tensor(crow, c, v, size=(n, self.kept))
            w_eff_t, b_eff = self.first_layer()
            pre1 = torch.sparse.mm(x, w_eff_t) + b_eff
        acts = _hidden_from_first(self.net, pre1, None if full else layer)

        def z() -> torch.Tensor:
            rows = torch.repeat_interleave(torch.arange(n, device=dev), crow.diff())
            dense = self.z_zero.expand(n, self.kept).clone()
            dense[rows, c] = (v - self.shift[c]) * self.scale[c]
            return dense
        return _outputs(self.net, acts, z, outputs, layer, threshold)


def _scorer(key: str, get_payload: Callable[[], bytes], threads: int) -> _Scorer:
    sc = _SCORERS.get(key)
    if sc is None:
        if torch.cuda.is_available():
            device = torch.device("cuda")
        else:
            device = torch.device("cpu")
            torch.set_num_threads(threads)
        sc = _SCORERS[key] = _Scorer(unpack(get_payload()), device)
    return sc


# -- Arrow in, Arrow out -------------------------------------------------------------------

def _score_column(col: pa.Array, scorer: _Scorer, outputs: List[str], layer: int,
                  threshold: Optional[float], batch_size: int, status: bool,
                  skip_missing: bool) -> Tuple[List[str], List[pa.Array]]:
    """Score one Arrow column of feature rows; return result names and Arrow columns."""
    block = arrow_rows.decode_rows(col, scorer.size, skip_missing)
    ok = block.status == arrow_rows.SCORED
    res = scorer.score(block, outputs, layer, threshold, batch_size)
    names, arrays = [], []
    for o in outputs:
        if o == "reconstruction_mse":
            arr = arrow_rows.encode_values(res.get(o, np.zeros(0)), ok, pa.float64())
        elif o == "is_anomaly":
            arr = arrow_rows.encode_values(res.get(o, np.zeros(0, bool)), ok, pa.bool_())
        else:
            width = {"deep_features": 0, "feature_errors": scorer.kept,
                     "reconstruction": scorer.size}[o]
            empty = np.zeros((0, width), np.float32)
            arr = arrow_rows.encode_list(res.get(o, empty), ok)
        names.append(o)
        arrays.append(arr)
    if status:
        names.append("status")
        arrays.append(pa.array(block.status, type=pa.int8()))
    return names, arrays


def _check_fault(fault: Optional[Tuple[Optional[Tuple[int, int]], float]]) -> None:
    if fault is None:
        return
    fail_at, delay = fault
    if delay > 0:
        time.sleep(delay)
    if fail_at is None:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return
    k = (ctx.stageId(), ctx.partitionId(), ctx.attemptNumber())
    _BATCHES[k] = _BATCHES.get(k, 0) + 1
    if (ctx.partitionId(), _BATCHES[k]) == fail_at:
        raise RuntimeError(f"sparkae: injected failure ({FAIL_CONF}={fail_at[0]}:{fail_at[1]}) "
                           f"in partition {fail_at[0]}, Arrow batch {fail_at[1]}")


# -- driver side ---------------------------------------------------------------------------

def _payload_getter(spark: Any, key: str, payload: bytes) -> Callable[[], bytes]:
    """Broadcast the model once per SparkContext; without one (Spark Connect) use a closure."""
    try:
        sc = spark.sparkContext
    except Exception:  # Spark Connect has no SparkContext
        return lambda: payload
    bc = _BROADCASTS.get((key, id(sc)))
    if bc is None:
        bc = _BROADCASTS[(key, id(sc))] = sc.broadcast(payload)
    return lambda: bc.value


def _conf(spark: Any, name: str) -> Optional[str]:
    try:
        return spark.conf.get(name, None)
    except Exception:  # noqa: BLE001 - no conf, no hook
        return None


def _fail_at(spark: Any) -> Optional[Tuple[Optional[Tuple[int, int]], float]]:
    """The test hooks set in the session (:data:`FAIL_CONF`, :data:`DELAY_CONF`), or None."""
    raw, delay = _conf(spark, FAIL_CONF), _conf(spark, DELAY_CONF)
    if not raw and not delay:
        return None
    fail_at = None
    if raw:
        try:
            part, batch = (int(p) for p in str(raw).split(":"))
        except ValueError:
            raise ValueError(f"{FAIL_CONF}: got {raw!r}, expected PARTITION:BATCH, e.g. "
                             "1:2") from None
        fail_at = (part, batch)
    try:
        seconds = float(delay) if delay else 0.0
    except ValueError:
        raise ValueError(f"{DELAY_CONF}: got {delay!r}, expected seconds, e.g. 0.5") from None
    return fail_at, seconds


def _input_expr(df: DataFrame, info: InputInfo, role: str) -> Tuple[Column, Optional[str]]:
    """The Column sent to the workers, and the plain column name when it is one.

    Vectors go as they are (their struct), arrays as arrays, ``features_cols`` packed
    into one ``array<double>``. Names and types are checked here, on the driver.
    """
    col = input_column(df, info, role)  # raises on a missing or mistyped column
    if info.kind == "columns":  # numbers, null -> NaN, strings one-hot: one dense vector
        return col, None
    field = df.schema[info.column]
    size = (field.metadata or {}).get("ml_attr", {}).get("num_attrs")
    if isinstance(size, int) and size != info.size:
        raise ValueError(f"{role}: column '{info.column}' holds vectors of {size} features "
                         f"(from its ML attribute metadata); the model expects {info.size}")
    return F.col(f"`{info.column}`"), info.column


def check_request(outputs: List[str], layer: int, n_hidden: int, batch_size: int,
                  threshold: Optional[float]) -> None:
    """Validate what is asked of :func:`score`; every message names the value and what is
    allowed."""
    if not isinstance(outputs, (list, tuple)) or not outputs:
        raise ValueError(f"outputs: got {outputs!r}, expected a non-empty list of "
                         f"{', '.join(OUTPUT_TYPES)}")
    for o in outputs:
        if o not in OUTPUT_TYPES:
            raise ValueError(f"outputs: got {o!r}, expected any of {', '.join(OUTPUT_TYPES)}")
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs: {list(outputs)} lists an output more than once")
    if not isinstance(layer, int) or not 1 <= layer <= n_hidden:
        raise ValueError(f"layer: got {layer!r}, expected a hidden layer number from 1 to "
                         f"{n_hidden}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"scoring_batch_size: got {batch_size!r}, expected an integer >= 1")
    if "is_anomaly" in outputs:
        if threshold is None:
            raise ValueError("output 'is_anomaly' needs a threshold: the model has none; set "
                             "anomaly_threshold, train with anomaly_quantile, or pass a "
                             "threshold when scoring")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or \
                not math.isfinite(threshold):
            raise ValueError(f"threshold: got {threshold!r}, expected a finite number")


def score(df: DataFrame, payload: bytes, key: str, info: InputInfo, outputs: List[str],
          layer: int, batch_size: int = 1024, threshold: Optional[float] = None,
          threads: int = 1, *, skip_missing: bool = False, status_col: Optional[str] = None,
          carry: Optional[List[str]] = None, engine: Optional[str] = None) -> DataFrame:
    """Add the requested score columns to ``df`` (existing columns of the same name are
    replaced).

    Rows whose features are null or hold an infinite value get null scores; missing
    values (NaN, or null in ``features_cols``) are imputed by the model (its training
    mean), or with ``skip_missing`` give the row null scores.

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
        Rows per forward pass (fewer for rows so wide that a pass would exceed
        :data:`PASS_ELEMENTS` values).
    threshold : float, optional
        Required for ``is_anomaly`` (``reconstruction_mse > threshold``).
    threads : int
        Torch threads per Python worker (CPU executors).
    skip_missing : bool
        Null scores for rows with missing values (the model's
        ``missing_values_handling="skip"``) instead of imputing them.
    status_col : str, optional
        Also add this ``tinyint`` column: 0 scored, else why not (1 null features, 2 an
        infinite value, 3 missing values with ``skip_missing``; see
        :data:`sparkae.data.arrow_rows.SKIP_REASONS`).
    carry : list of str, optional
        Columns of ``df`` kept in the result (default: all).
    engine : {"arrow_udf", "map_in_arrow"}, optional
        Force a transport; by default ``arrow_udf`` where Spark has it (>= 4.1) and ``df``
        has no user-defined-type column, else ``mapInArrow``.

    Returns
    -------
    DataFrame
        The ``carry`` columns (less replaced ones), then ``outputs`` (then ``status_col``).

    Raises
    ------
    ValueError
        On the driver, before any job: a missing or mistyped input column, a vector
        width known from the schema that differs from the model's, unknown outputs, a bad
        layer, batch size or threshold. In the tasks: a row of another width.
    """
    spec = _spec(payload)
    check_request(list(outputs), layer, len(spec["hidden"]), batch_size, threshold)
    engine = engine or ("arrow_udf" if hasattr(F, "arrow_udf") and not _has_udt(df.schema)
                        else "map_in_arrow")
    if engine not in ENGINES:
        raise ValueError(f"engine: got {engine!r}, expected one of {', '.join(ENGINES)}")
    expr, name = _input_expr(df, info, "scoring input")
    outputs = list(outputs)
    get_payload = _payload_getter(df.sparkSession, key, payload)
    fail_at = _fail_at(df.sparkSession)
    with_status = status_col is not None
    fields = [T.StructField(o, OUTPUT_TYPES[o]) for o in outputs]
    if with_status:
        fields.append(T.StructField("status", T.ByteType()))
    args = (key, get_payload, outputs, layer, threshold, batch_size, threads, with_status,
            bool(skip_missing), fail_at)
    log.debug("scoring %s with %s, batch %d", outputs, engine, batch_size)
    added = outputs + ([status_col] if with_status else [])
    if carry is not None:
        unknown = [c for c in carry if c not in df.columns]
        if unknown:
            raise ValueError(f"carry: column '{unknown[0]}' not found; the DataFrame has "
                             f"columns {sorted(df.columns)}")
    keep = [c for c in (df.columns if carry is None else carry) if c not in added]
    if engine == "arrow_udf":
        return _via_arrow_udf(df, expr, keep, outputs, status_col, T.StructType(fields), args)
    return _via_map_in_arrow(df, expr, name, keep, outputs, status_col, fields, args)


def _has_udt(dt: T.DataType) -> bool:
    """True when ``dt`` is or holds a user-defined type (a vector, say)."""
    if isinstance(dt, T.UserDefinedType):
        return True
    if isinstance(dt, T.StructType):
        return any(_has_udt(f.dataType) for f in dt.fields)
    if isinstance(dt, T.ArrayType):
        return _has_udt(dt.elementType)
    if isinstance(dt, T.MapType):
        return _has_udt(dt.keyType) or _has_udt(dt.valueType)
    return False


def _via_arrow_udf(df, expr, keep, outputs, status_col, schema, args) -> DataFrame:
    key, get_payload, outs, layer, threshold, batch_size, threads, with_status, skip, fail_at = \
        args

    def _score(col: pa.Array) -> pa.Array:
        _check_fault(fail_at)
        scorer = _scorer(key, get_payload, threads)
        names, arrays = _score_column(col, scorer, outs, layer, threshold, batch_size,
                                      with_status, skip)
        return pa.StructArray.from_arrays(arrays, names=names)

    udf = F.arrow_udf(_score, schema)
    scored = df.withColumn(_TMP_COL, udf(expr))
    cols = [F.col(f"`{c}`") for c in keep] + [F.col(f"{_TMP_COL}.{o}").alias(o) for o in outputs]
    if status_col is not None:
        cols.append(F.col(f"{_TMP_COL}.status").alias(status_col))
    return scored.select(*cols)


def _via_map_in_arrow(df, expr, name, keep, outputs, status_col, fields, args) -> DataFrame:
    key, get_payload, outs, layer, threshold, batch_size, threads, with_status, skip, fail_at = \
        args
    src = name if name in keep else _IN_COL
    cols = [F.col(f"`{c}`") for c in keep] + ([] if src == name else [expr.alias(_IN_COL)])
    feed = df.select(*cols)
    result_fields = [df.schema[c] for c in keep] + list(fields)
    if status_col is not None:
        result_fields[-1] = T.StructField(status_col, T.ByteType())
    out_names = keep + outputs + ([status_col] if status_col is not None else [])

    def _score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            _check_fault(fail_at)
            scorer = _scorer(key, get_payload, threads)
            col = batch.column(batch.schema.get_field_index(src))
            _, arrays = _score_column(col, scorer, outs, layer, threshold, batch_size,
                                      with_status, skip)
            carried = [batch.column(batch.schema.get_field_index(c)) for c in keep]
            yield pa.RecordBatch.from_arrays(carried + arrays, names=out_names)

    return feed.mapInArrow(_score, T.StructType(result_fields))


# -- direct Parquet reading ------------------------------------------------------------------

def parquet_pieces(path: str) -> List[Tuple[str, int, int]]:
    """``(file, row group, rows)`` of every Parquet file under the local ``path``, or ``[]``
    when ``path`` is not a plain local Parquet table (then the caller lets Spark read it):
    not local, Hive-partitioned (``col=value`` directories carry columns the files lack),
    or unreadable by pyarrow."""
    import os

    import pyarrow.parquet as pq

    from sparkae.partitions import is_local

    if not is_local(path):
        return []
    root = path[len("file:"):] if path.startswith("file:") else path
    files: List[str] = []
    if os.path.isfile(root):
        files = [root]
    else:
        for base, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            if base != root and "=" in os.path.basename(base):
                return []
            files += [os.path.join(base, n) for n in sorted(names)
                      if not n.startswith(("_", ".")) and n.endswith(".parquet")]
    pieces = []
    try:
        for f in files:
            meta = pq.ParquetFile(f).metadata
            pieces += [(f, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    except Exception:  # noqa: BLE001 - not something pyarrow reads: Spark will say why
        return []
    return pieces


def score_parquet(spark: Any, path: str, schema: T.StructType, payload: bytes, key: str,
                  info: InputInfo, outputs: List[str], layer: int, batch_size: int = 1024,
                  threshold: Optional[float] = None, threads: int = 1, *,
                  skip_missing: bool = False, status_col: Optional[str] = None,
                  carry: Optional[List[str]] = None,
                  pieces: Optional[List[Tuple[str, int, int]]] = None) -> DataFrame:
    """Like :func:`score` on ``spark.read.parquet(path)``, but the Python workers read the
    Parquet row groups themselves with pyarrow: the JVM only hands out the list of row
    groups, instead of decoding every row and converting it to Arrow (the cost that
    dominates scoring). ``path`` must be a plain local (or shared) Parquet table, see
    :func:`parquet_pieces`; ``schema`` is its Spark schema (for the carried columns).
    """
    if info.kind not in ("vector", "array"):
        raise ValueError("score_parquet: features_cols input is scored through Spark")
    pieces = pieces if pieces is not None else parquet_pieces(path)
    if not pieces:
        raise ValueError(f"score_parquet: '{path}' is not a plain local Parquet table")
    carry = list(carry or [])
    column = info.column
    get_payload = _payload_getter(spark, key, payload)
    fault = _fail_at(spark)
    fields = [schema[c] for c in carry] + [T.StructField(o, OUTPUT_TYPES[o]) for o in outputs]
    if status_col is not None:
        fields.append(T.StructField(status_col, T.ByteType()))
    names = carry + list(outputs) + ([status_col] if status_col is not None else [])
    outs, with_status, skip = list(outputs), status_col is not None, bool(skip_missing)
    try:   # rows per Arrow batch read, as Spark's own Arrow batches (bounded memory)
        read_rows = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch",
                                       "10000") or 10000)
    except Exception:  # noqa: BLE001
        read_rows = 10000
    read_rows = max(1, read_rows)

    def _score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        for batch in batches:
            for f, g in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                reader = pq.ParquetFile(f)
                for part in reader.iter_batches(batch_size=read_rows, row_groups=[g],
                                                columns=[column] + carry,
                                                use_pandas_metadata=False):
                    _check_fault(fault)
                    scorer = _scorer(key, get_payload, threads)
                    _, arrays = _score_column(part.column(0), scorer, outs, layer, threshold,
                                              batch_size, with_status, skip)
                    carried = [part.column(i + 1) for i in range(len(carry))]
                    yield pa.RecordBatch.from_arrays(carried + arrays, names=names)

    try:
        slots = int(spark.sparkContext.defaultParallelism)
    except Exception:  # noqa: BLE001 - Spark Connect: no SparkContext here
        slots = int(spark.conf.get("spark.default.parallelism", "2") or 2)
    tasks = max(1, min(len(pieces), slots * 4))
    listing = spark.createDataFrame([(f, g) for f, g, _ in pieces], "file string, row_group int")
    return listing.repartition(tasks).mapInArrow(_score, T.StructType(fields))
