"""The work behind ``jobs/score.py``: load a model, score a table, write one date partition.

:func:`run_score` reads the input through :func:`sparkae.tables.read_table` (a Parquet
path, a Delta path or catalog table at a pinned version, or another catalog table),
checks it against the model on the driver, scores it with :mod:`sparkae.scoring` and
writes ``id_cols`` + the score columns as the ``run_date`` partition of the output through
:mod:`sparkae.jobs.partitions` (a Parquet folder, a catalog table or a Delta table: re-running
a date replaces exactly that partition; a failed run leaves every partition as it was).
Counts (rows in, scored, skipped and why, anomalies) are observed during the write
itself, so the table is read once. A plain local Parquet input is read by the Python
workers (:mod:`sparkae.scoring.parquet`), and with a local Parquet output they write the
score files too (:mod:`sparkae.scoring.parquet_files`), returning the counts. A run summary JSON is written beside the output, with
the Delta versions read and written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from typing import Any, Dict, List, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

import sparkae.scoring as scoring
import sparkae.tables as tables
from sparkae.io import checks as paths
from sparkae.io import fs
from sparkae.io.uri import join, parse
from sparkae.data.arrow_rows import SCORED, SKIP_REASONS
from sparkae.estimator import AutoencoderModel
from sparkae.jobs import score_settings
from sparkae.jobs.partitions import PathPartitions, make_output
from sparkae.data.parquet_scan import DIRECT_CONF
from sparkae.tables import looks_like_table

log = logging.getLogger("sparkae")

_STATUS = "__sparkae_status"


def _plain_path(path: str) -> bool:
    """A path pyarrow opens as is in every worker (no ``scheme://``, no ``file:``)."""
    return "://" not in path and not path.startswith("file:")


def read_input(spark: SparkSession, path: str, fmt: str = "auto",
               version: Optional[int] = None, timestamp: Optional[str] = None) -> DataFrame:
    """Read the table to score: :func:`sparkae.tables.read_table` with the ``input``
    section's settings (a Parquet path, a Delta path or catalog table with optional time
    travel, or another catalog table)."""
    return tables.read_table(spark, path, fmt, version, timestamp, "input")


_SIMPLE = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
           T.StringType, T.BooleanType, T.DateType)


def direct_pieces(spark: SparkSession, path: str, df: DataFrame, model: AutoencoderModel,
                  ids: List[str]) -> list:
    """The row groups for :func:`sparkae.scoring.score_parquet` when the input allows it (a
    plain local Parquet table, not Delta nor a catalog table, with a vector or array
    feature column and id columns of simple types), else ``[]`` (Spark reads the input)."""
    read = tables.table_info(df)
    if read is not None and read.format != "parquet":
        return []
    try:
        if str(spark.conf.get(DIRECT_CONF, "true")).lower() == "false":
            return []
    except Exception:  # noqa: BLE001 - no conf access: keep the default
        pass
    local = path[len("file:"):] if path.startswith("file:") else path
    if (model.input_info.kind not in ("vector", "array") or not _plain_path(path)
            or os.path.isdir(os.path.join(local, "_delta_log"))
            or any(not isinstance(df.schema[c].dataType, _SIMPLE) for c in ids)):
        return []
    return scoring.parquet_pieces(path)


def load_model(path: str) -> AutoencoderModel:
    """Load the model at ``path``; errors name the setting."""
    try:
        return AutoencoderModel.load(path)
    except (FileNotFoundError, ValueError) as exc:
        raise type(exc)(f"model.path: {exc}") from None


def resolve_outputs(model: AutoencoderModel, outputs: Optional[List[str]],
                    threshold: Optional[float]) -> List[str]:
    """The requested outputs, or the model's transform outputs (with ``is_anomaly`` when a
    threshold is known)."""
    if outputs is not None:
        return list(outputs)
    outs = list(model.getOrDefault("outputs"))
    if (threshold is not None or model.threshold is not None) and "is_anomaly" not in outs:
        outs.append("is_anomaly")
    return outs


def run_score(spark: SparkSession, settings: Dict[str, Any],
              model: Optional[AutoencoderModel] = None) -> Dict[str, Any]:
    """Score ``settings["input"]`` with ``settings["model"]`` into one date partition.

    Parameters
    ----------
    spark : SparkSession
    settings : dict
        From :func:`sparkae.score_settings.load`.
    model : AutoencoderModel, optional
        The model at ``model.path``, when the caller loaded it already.

    Returns
    -------
    dict
        The run summary, also written as JSON (``output.summary``).

    Raises
    ------
    FileNotFoundError
        The model or the input does not exist.
    ValueError
        Bad input schema for the model, unknown id columns, bad outputs; raised before any
        Spark job. Failures of the scoring job itself propagate as Spark raises them.
    """
    t0 = time.perf_counter()
    date = score_settings.run_date(settings)
    model = model if model is not None else load_model(settings["model"]["path"])
    src = settings["input"]
    df = read_input(spark, src["path"], src["format"], src["version"], src["timestamp"])
    read = tables.table_info(df)
    target_path = settings["output"]["path"]
    if not _named_output(settings["output"]):
        paths.check_not_input(target_path, [src["path"], settings["model"]["path"]],
                              "output.path")
        paths.check_writable(target_path, "output.path")
    ids = list(src["id_cols"])
    missing = [c for c in ids if c not in df.columns]
    if missing:
        raise ValueError(f"input.id_cols: column '{missing[0]}' not found in input "
                         f"'{src['path']}'; it has columns {sorted(df.columns)}")
    sc = settings["scoring"]
    threshold = sc["threshold"] if sc["threshold"] is not None else model.threshold
    outputs = resolve_outputs(model, sc["outputs"], threshold)
    clash = sorted(set(ids) & set(outputs))
    if clash:
        raise ValueError(f"input.id_cols: {clash} would clash with the score columns; "
                         "rename them or leave them out")
    if sc["batch_size"] is not None:
        model.set(model.scoring_batch_size, sc["batch_size"])
    col = settings["output"]["partition_col"]
    # built first in any case: it checks the input against the model on the driver
    clip = (sc["clip_to_training_range"] if sc["clip_to_training_range"] is not None
            else model.getOrDefault(model.clip_to_training_range))
    scored = model.score(df, outputs, sc["layer"], threshold, clip, status_col=_STATUS,
                         carry=ids, direct=False)   # the job chooses the reader below, once
    pieces = direct_pieces(spark, src["path"], df, model, ids)
    o = settings["output"]
    target = make_output(spark, o["path"], o["format"], col, o["schema_mode"], o["optimize"])
    codec = scoring.parquet_codec(spark)
    # the workers write the files too when the output is a local Parquet folder
    write_direct = (bool(pieces) and isinstance(target, PathPartitions) and target.local
                    and codec is not None)
    log.info("reading the input with %s; writing with %s",
             "pyarrow in the Python workers (%d row groups)" % len(pieces) if pieces
             else "Spark", "pyarrow in the Python workers" if write_direct else "Spark")
    log.info("scoring %s with %s into %s", src["path"], settings["model"]["path"],
             target.location(date))
    t1 = time.perf_counter()
    if write_direct:
        replaced, m = target.write_with(
            lambda staged: model.score_parquet_files(
                spark, staged, codec, src["path"], df.schema, outputs, sc["layer"],
                threshold, clip, carry=ids, pieces=pieces), date)
    else:
        if pieces:
            scored = model.score_parquet(spark, src["path"], df.schema, outputs, sc["layer"],
                                         threshold, clip, status_col=_STATUS, carry=ids,
                                         pieces=pieces)
        observation, observed = _observe(scored, outputs, threshold)
        replaced = target.write(observed.select(*[F.col(f"`{c}`") for c in ids + outputs]),
                                date)
        m = observation.get
    score_s = time.perf_counter() - t1
    skipped = {SKIP_REASONS[k]: int(m.get(f"s{k}") or 0) for k in SKIP_REASONS}
    rows_in = int(m.get("rows") or 0)
    summary = {
        "status": "succeeded", "run_date": date,
        "model": settings["model"]["path"], "input": src["path"],
        "input_format": read.format if read else None,
        "input_version": read.version if read else None,
        "output": target.location(date), "replaced_previous": bool(replaced),
        "output_version": getattr(target, "version", None),
        "outputs": outputs, "id_cols": ids, "threshold": threshold,
        "clip_to_training_range": clip,
        "reader": "pyarrow row groups" if pieces else "spark",
        "writer": "pyarrow in the workers" if write_direct else "spark",
        "rows": {"in": rows_in, "scored": int(m.get(f"s{SCORED}") or 0),
                 "skipped": sum(skipped.values())},
        "skipped": {k: v for k, v in skipped.items() if v},
        "anomalies": None if m.get("anomalies") is None else int(m["anomalies"]),
        "score_time_s": score_s, "rows_per_s": rows_in / max(score_s, 1e-9),
        "wall_time_s": time.perf_counter() - t0,
    }
    path = summary_path(settings, date)
    summary["summary"] = path
    write_json(summary, path)
    return summary


def _observe(scored: DataFrame, outputs: List[str], threshold: Optional[float]):
    """Count rows, statuses and anomalies while the write runs (no second pass)."""
    from pyspark.sql import Observation

    exprs = [F.count(F.lit(1)).alias("rows")]
    exprs += [F.sum((F.col(_STATUS) == k).cast("long")).alias(f"s{k}")
              for k in [SCORED] + list(SKIP_REASONS)]
    if "is_anomaly" in outputs:
        exprs.append(F.sum(F.col("is_anomaly").cast("long")).alias("anomalies"))
    elif "reconstruction_mse" in outputs and threshold is not None:
        exprs.append(F.sum((F.col("reconstruction_mse") > float(threshold)).cast("long"))
                     .alias("anomalies"))
    observation = Observation(f"sparkae_score_{uuid.uuid4().hex[:8]}")
    return observation, scored.observe(observation, *exprs)


def summary_path(settings: Dict[str, Any], date: str) -> str:
    """Where the run summary goes: ``output.summary``, else beside the output."""
    out = settings["output"]
    if out["summary"]:
        return out["summary"]
    name = f"{out['partition_col']}={date}.json"
    target = out["path"]
    if _named_output(out):
        return os.path.join("score-runs", re.sub(r"[^A-Za-z0-9_.-]", "_", target), name)
    return join(parse(target, "output.path").text, "_runs", name)


def _named_output(out: Dict[str, Any]) -> bool:
    """Whether ``output.path`` names a catalog table (not a folder)."""
    return out["format"] == "table" or (out["format"] in ("auto", "delta")
                                        and looks_like_table(out["path"]))


def write_json(obj: Dict[str, Any], path: str) -> None:
    """Write JSON to ``path`` (any location) atomically."""
    fs.write_bytes(path, json.dumps(obj, indent=2, default=float).encode(), "output.summary")


_PY_ERROR = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception)): (.+)$")


def describe_error(exc: BaseException) -> str:
    """One line for stderr: a Python error raised in a Spark task is dug out of the JVM's
    message (its last ``SomeError: ...`` line); other errors are their first line."""
    text = str(exc)
    found = [m for line in text.splitlines() if (m := _PY_ERROR.match(line.strip()))]
    if found and not isinstance(exc, (ValueError, FileNotFoundError, FileExistsError)):
        return f"{found[-1].group(1).split('.')[-1]}: {found[-1].group(2)}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first


def format_summary(summary: Dict[str, Any]) -> str:
    """A short human summary of :func:`run_score`'s result."""
    r = summary["rows"]
    lines = [f"sparkae: scored {r['scored']} of {r['in']} rows for {summary['run_date']} in "
             f"{summary['score_time_s']:.1f} s ({summary['rows_per_s']:.0f} rows/s)",
             f"  output:  {summary['output']}" +
             (" (replaced the previous run)" if summary["replaced_previous"] else "")]
    for reason, n in summary["skipped"].items():
        lines.append(f"  skipped {n} rows: {reason}")
    if summary["anomalies"] is not None:
        lines.append(f"  anomalies: {summary['anomalies']} (threshold {summary['threshold']:.6g})")
    lines.append(f"  summary: {summary['summary']}")
    return "\n".join(lines)


__all__ = ["run_score", "read_input", "load_model", "describe_error", "format_summary",
           "summary_path", "write_json"]
