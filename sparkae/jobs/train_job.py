"""The work behind ``jobs/train.py``: read, train, evaluate, score, write results.

Results land under ``output.dir``, any location :mod:`sparkae.io` reaches (a local path,
``s3a://``, ``hdfs://``, ``dbfs:/``, ...): ``model/`` (committed by its manifest, see
:mod:`sparkae.persistence`), ``scored/`` (Parquet: the id and label columns,
``reconstruction_mse``, ``deep_features``; written beside its destination and moved into
place; or a Delta table there, or the catalog table ``output.table``, replaced by one
overwrite), ``report.html`` and ``summary.json``, written last as the run's record. A failed
run never leaves a half-written result in place of a previous one.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import sparkae.datasets as datasets
import sparkae.delta as delta
import sparkae.tables as tables
from sparkae.data.cache import CACHE_DIR_CONF
from sparkae.io import checks as paths
from sparkae.io import fs
from sparkae.io.dirs import swap_dir
from sparkae.io.uri import join, parse
from sparkae.estimator import Autoencoder

log = logging.getLogger("sparkae")


def _check_file(path: str, what: str) -> str:
    if not fs.exists(path, what):
        raise FileNotFoundError(f"{what}: '{path}' does not exist")
    return path


def read_source(spark: SparkSession, section: Dict[str, Any], what: str) -> DataFrame:
    """Read the table a config section names (``source``: sample, mnist_idx, or parquet and
    table: ``path`` read by :func:`sparkae.tables.read_table` as ``format`` says, with
    Delta's time travel)."""
    src = section["source"]
    if src == "sample":
        return datasets.load_mnist_sample(spark)
    if src == "mnist_idx":
        return datasets.read_mnist_idx(spark, _check_file(section["images"], f"{what}.images"),
                                       _check_file(section["labels"], f"{what}.labels"))
    if src in ("parquet", "table"):
        return tables.read_table(spark, section["path"], section.get("format", "auto"),
                                 section.get("version"), section.get("timestamp"), what)
    raise ValueError(f"{what}.source: got {src!r}")


def _write_json(obj: Dict[str, Any], path: str) -> None:
    fs.write_bytes(path, json.dumps(obj, indent=2, default=float).encode(), "output.dir")


def _default_cache(spark: SparkSession, settings: Dict[str, Any], out: str) -> None:
    """On a cluster with no cache location set, materialize under ``output.dir/_cache``
    (a location every executor must reach anyway to write the scores)."""
    model = settings["model"]
    if model.get("cache_dir") or model.get("checkpoint_dir"):
        return
    try:
        if spark.conf.get(CACHE_DIR_CONF, None) or \
                str(spark.sparkContext.master).startswith("local"):
            return
    except Exception:  # noqa: BLE001 - Spark Connect: the estimator decides
        return
    model["cache_dir"] = join(out, "_cache")
    log.info("model.cache_dir: %s (on this cluster the data is materialized beside the "
             "outputs)", model["cache_dir"])


def write_scored(spark: SparkSession, scored: DataFrame, output: Dict[str, Any],
                 out: str) -> Tuple[DataFrame, str]:
    """Write the scored rows as ``output`` says and return them read back, with where.

    ``output.table`` set: that catalog table, replaced by one overwrite (``format`` delta or
    parquet). Otherwise ``<dir>/scored``: Delta as one overwrite commit of the table there
    (a new version; the old ones stay readable by time travel), Parquet written beside it
    and moved into place.
    """
    fmt, table = output["format"], output["table"]
    if table:
        if not spark.catalog.tableExists(table):
            scored.write.format(fmt).saveAsTable(table)
        elif fmt == "delta" and delta.is_delta_table(spark, table):
            # by its location: an overwrite through saveAsTable fails on Spark 3.5 + Delta
            # 3.3 ("does not support truncate in batch mode")
            where = spark.sql(f"DESCRIBE DETAIL {table}").first()["location"]
            scored.write.format("delta").mode("overwrite") \
                .option("overwriteSchema", "true").save(where)
        else:
            scored.write.format(fmt).mode("overwrite").saveAsTable(table)
        return spark.table(table), table
    dest = join(out, "scored")
    if fmt == "delta" and delta.is_delta_path(dest, "output.dir"):
        scored.write.format("delta").mode("overwrite").option("overwriteSchema", "true") \
            .save(dest)
        return spark.read.format("delta").load(dest), dest
    tmp = join(out, f".scored.tmp-{uuid.uuid4().hex[:8]}")
    try:
        scored.write.format(fmt).save(tmp)
        swap_dir(spark, tmp, dest, "output.dir")
    finally:
        fs.delete(tmp, "output.dir")
    return spark.read.format(fmt).load(dest), dest


def split_input(df: DataFrame, settings: Dict[str, Any],
                spark: SparkSession) -> Tuple[DataFrame, Optional[DataFrame]]:
    """Training and evaluation DataFrames as the ``evaluation`` section says."""
    ev = settings["evaluation"]
    if ev["source"] == "none":
        return df, None
    if ev["source"] == "split":
        seed = settings["model"].get("seed") or 0
        train, valid = df.randomSplit([1.0 - ev["fraction"], ev["fraction"]], seed=seed)
        return train, valid
    return df, read_source(spark, ev, "evaluation")


def run_train(spark: SparkSession, settings: Dict[str, Any],
              resume: bool = False) -> Dict[str, Any]:
    """Train, evaluate and score as ``settings`` (from :func:`sparkae.config.load`) say.

    ``resume`` continues training from the newest complete checkpoint in the model's
    ``checkpoint_dir`` (see ``Autoencoder.fit``).

    Returns
    -------
    dict
        The run summary also written to ``summary.json``.

    Raises
    ------
    FileExistsError
        ``output.overwrite`` is false and the output directory already holds results.
    """
    t0 = time.perf_counter()
    out = parse(settings["output"]["dir"], "output.dir").text
    if not settings["output"]["overwrite"] and any(
            fs.exists(join(out, p), "output.dir") for p in ("model", "scored", "summary.json")):
        raise FileExistsError(f"output.dir '{out}' already holds results and "
                              "output.overwrite is false")
    sources = [settings[sec].get(k) for sec in ("input", "evaluation")
               for k in ("path", "images", "labels") if settings[sec].get("source") != "table"]
    paths.check_not_input(out, sources, "output.dir")
    paths.check_writable(out, "output.dir")
    _default_cache(spark, settings, out)
    raw = read_source(spark, settings["input"], "input")
    source = raw.cache()
    train_df, valid_df = split_input(source, settings, spark)
    noisy = settings["input"]["corrupt"]
    if noisy:
        from sparkae.noise import corrupt

        train_df = corrupt(train_df, noisy["kind"], noisy["level"], noisy.get("seed", 0),
                           features_col=settings["model"]["features_col"])
    model = Autoencoder(**settings["model"]).fit(train_df, validation_df=valid_df,
                                                 resume=resume,
                                                 training_table=tables.table_info(raw))
    fit_s = model.summary.wall_time_s
    fs.makedirs(out, "output.dir")
    model.write().overwrite().save(join(out, "model"))

    carry = [c for c in (settings["input"]["id_col"], settings["input"]["label_col"])
             if c and c in source.columns]
    t1 = time.perf_counter()
    score_cols = ["reconstruction_mse", "deep_features"] + (
        ["is_anomaly"] if model.threshold is not None else [])
    scored = model.transform(source).select(*carry, *score_cols)
    written, scored_at = write_scored(spark, scored, settings["output"], out)
    score_s = time.perf_counter() - t1
    stats = written.agg(F.count(F.lit(1)).alias("n"),
                        F.mean("reconstruction_mse").alias("mean_mse")).first()
    top = [r.asDict() for r in written.select(*carry, "reconstruction_mse")
           .orderBy(F.desc("reconstruction_mse")).limit(settings["output"]["top_n"]).collect()]
    s = model.summary
    summary = {
        "rows": {"train": s.train_rows, "validation": s.validation_rows, "scored": stats["n"]},
        "train_mse": s.train_mse, "validation_mse": s.validation_mse,
        "scored_mean_mse": stats["mean_mse"], "epochs": s.epochs, "seed": s.seed,
        "model_epoch": s.model_epoch, "threshold": model.threshold,
        "mean_coding_activation": s.mean_coding_activation,
        "fit_time_s": fit_s, "train_rows_per_s": s.rows_per_s,
        "score_time_s": score_s, "score_rows_per_s": stats["n"] / max(score_s, 1e-9),
        "wall_time_s": time.perf_counter() - t0, "hidden": settings["model"]["hidden"],
        "model": join(out, "model"), "scored": scored_at,
        "training_table": model.training_table,
        "top_errors": top, "history": s.history,
    }
    if settings["output"]["report"]:
        summary["report"] = write_report(model, source, written, settings,
                                         join(out, "report.html"))
    _write_json(summary, join(out, "summary.json"))
    if model.tracking:   # the fit was logged to MLflow: add the run's report and summary
        import sparkae.tracking as tracking

        tracking.log_files(model.tracking["run_id"],
                           [p for p in (summary.get("report"), join(out, "summary.json"))
                            if p])
    source.unpersist()
    return summary


def _features(rows, col: str) -> np.ndarray:
    return np.stack([np.asarray(r[col].toArray() if hasattr(r[col], "toArray") else r[col],
                                dtype=np.float32) for r in rows])


def write_report(model, source: DataFrame, scored: DataFrame, settings: Dict[str, Any],
                 path: str, sample_rows: int = 2000) -> str:
    """Collect small samples (never the table) and write the HTML report of a run.

    Besides the chapter's figures it shows the error distribution with the threshold (and
    ``1 - anomaly_quantile`` as the contamination when the quantile set it), the PCA of the
    inputs clamped to the scaled training range (a few rows far outside it would flatten
    the rest), and the largest per-feature errors of the 10 worst rows (by ``id_col``),
    named by ``features_cols`` (string columns by level), by pixel when
    ``output.image_shape`` matches the input width, else ``x{i}``.
    """
    import sparkae.report as report

    feat = settings["model"]["features_col"]
    id_col, label_col = settings["input"]["id_col"], settings["input"]["label_col"]
    shape = settings["output"]["image_shape"]
    columns_input = settings["model"]["features_cols"] is not None
    s = model.summary
    net = model.network()
    figures = {"Training curve": report.training_curve(s.history)}
    n = s.train_rows + s.validation_rows
    sample = source.sample(fraction=min(1.0, sample_rows / max(n, 1)), seed=1)
    outs = model.copy({model.outputs: ["deep_features", "reconstruction"]})
    picked = outs.transform(sample).collect() if feat in source.columns else []
    if picked and not columns_input:
        x, rec = _features(picked, feat), _features(picked, "reconstruction")
        ten = np.random.default_rng(1).choice(len(x), size=min(10, len(x)), replace=False)
        figures["Rows and their reconstructions"] = report.reconstructions(
            x[ten], rec[ten], "Sampled rows (top) and reconstructions (bottom)", shape)
        if label_col and label_col in source.columns:
            codings = np.stack([np.asarray(r["deep_features"]) for r in picked])
            with torch.no_grad():
                scaled = net.scaler.clip(net.scaler(torch.from_numpy(x)))
            figures["2-D codings and PCA, by label"] = report.codings_vs_pca(
                codings, scaled.numpy(), np.array([r[label_col] for r in picked]),
                "PCA of the inputs (clamped to the training range)")
    if id_col and id_col in source.columns:
        figures.update(_worst_rows(model, net, source, scored, settings))
    errors = scored.select("reconstruction_mse").sample(
        fraction=min(1.0, 100_000 / max(n, 1)), seed=1).toPandas().reconstruction_mse.to_numpy()
    quantile = settings["model"].get("anomaly_quantile")
    from_quantile = quantile is not None and settings["model"].get("anomaly_threshold") is None
    figures["Reconstruction error distribution"] = report.error_distribution(
        errors, model.threshold, 1.0 - quantile if from_quantile else None)
    if s.coding_activations:
        target = (settings["model"]["average_activation"]
                  if settings["model"]["sparsity_beta"] else None)
        figures["Coding layer average activations"] = report.coding_activations(
            s.coding_activations, target)
    grid_shape = shape or ([28, 28] if model.input_size == 784 else None)
    arch = settings["model"].get("architecture", "dense")
    if arch in ("variational", "adversarial") and grid_shape and \
            int(np.prod(grid_shape[-2:])) == model.input_size:
        figures["Generated rows (decoded prior draws)"] = report.generated_grid(
            model.generate_array(32, seed=1), grid_shape)
    rows = {"architecture": arch,
            "hidden": settings["model"]["hidden"], "activation": settings["model"]["activation"],
            "epochs": s.epochs, "train rows": s.train_rows,
            "train MSE": f"{s.train_mse:.6g}",
            "validation MSE": "-" if s.validation_mse is None else f"{s.validation_mse:.6g}",
            "threshold": model.threshold, "fit wall time (s)": f"{s.wall_time_s:.1f}"}
    return report.write_html(path, "sparkae training report", rows, figures)


def _worst_rows(model, net, source: DataFrame, scored: DataFrame,
                settings: Dict[str, Any]) -> Dict[str, bytes]:
    """The report's figures of the 10 rows with the largest error (found by ``id_col``):
    the rows beside their reconstructions (vector or array input), their per-pixel errors
    (images) and their largest per-feature errors."""
    import sparkae.report as report

    feat = settings["model"]["features_col"]
    id_col, shape = settings["input"]["id_col"], settings["output"]["image_shape"]
    worst = [r[id_col] for r in scored.orderBy(F.desc("reconstruction_mse"))
             .select(id_col).limit(10).collect()]
    if not worst:
        return {}
    outs = model.copy({model.outputs: ["reconstruction_mse", "reconstruction",
                                       "feature_errors"]})
    rows = outs.transform(source.where(F.col(id_col).isin(worst))).collect()
    rows.sort(key=lambda r: worst.index(r[id_col]))
    captions = [f"{id_col}={r[id_col]}" for r in rows]
    figures: Dict[str, bytes] = {}
    vector_input = settings["model"]["features_cols"] is None and feat in source.columns
    if vector_input:
        figures["Worst reconstructed rows"] = report.reconstructions(
            _features(rows, feat), _features(rows, "reconstruction"),
            "The rows with the largest reconstruction error", shape, captions)
    keep = net.scaler.keep.numpy()
    names = report.feature_names(model.input_info, keep, shape)
    errs = [None if r["feature_errors"] is None else list(r["feature_errors"]) for r in rows]
    figures["Top features of the most anomalous rows"] = report.top_features(
        errs, names, [f"{c} (MSE {r['reconstruction_mse']:.4g})" for c, r in zip(captions, rows)])
    if vector_input and shape and int(np.prod(shape)) == model.input_size:
        full = np.zeros((len(rows), model.input_size), dtype=np.float32)
        for i, e in enumerate(errs):
            if e is not None:
                full[i, keep] = e
        figures["Per-pixel errors of the most anomalous rows"] = report.error_images(
            _features(rows, feat), full, shape, captions)
    return figures


def format_summary(summary: Dict[str, Any]) -> str:
    """A short human summary of :func:`run_train`'s result."""
    r = summary["rows"]
    v = summary["validation_mse"]
    lines = [
        f"sparkae: trained {summary['hidden']} for {summary['epochs']} epochs on "
        f"{r['train']} rows ({summary['train_rows_per_s']:.0f} rows/s)",
        f"  train MSE {summary['train_mse']:.6f}" +
        ("" if v is None else f"   validation MSE {v:.6f} ({r['validation']} rows)"),
        f"  scored {r['scored']} rows in {summary['score_time_s']:.1f} s "
        f"({summary['score_rows_per_s']:.0f} rows/s); wall time {summary['wall_time_s']:.1f} s",
        f"  model:  {summary['model']}",
        f"  scores: {summary['scored']}",
    ]
    if summary["top_errors"]:
        lines.append(f"  the {len(summary['top_errors'])} rows with the largest "
                     "reconstruction error:")
        for row in summary["top_errors"]:
            lines.append("    " + "  ".join(f"{k}={v:.6f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in row.items()))
    return "\n".join(lines)
