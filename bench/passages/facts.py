"""Short README passages that quote the newest run of one entry: the quality of the
defaults against H2O-3, the tuning grid's wall time and the workers' own Parquet reader."""

from __future__ import annotations

from bench.passages import Records, passage, target


@passage("h2o-quality")
def h2o_quality(r: Records) -> str:
    """[100] tanh test MSE of sparkae and H2O-3 in the newest H2O comparison."""
    rec = r.latest("h2o")
    res = rec["result"]
    row = res["per_arch"]["[100]"]
    cfg = res.get("config") or {}
    h2o_version = (rec.get("versions") or {}).get("h2o", "")
    return (
        f"In the newest stored H2O comparison (`bench/results/{rec['_file']}`, per-architecture "
        f"table, [100] tanh, {cfg.get('epochs', '?')} epochs, {cfg.get('train_rows', 0):,} "
        f"training rows) sparkae's test MSE is {row['sparkae']['test_mse']:.2g} and "
        f"H2O-3{(' ' + h2o_version) if h2o_version else ''}'s {row['h2o']['test_mse']:.3g}.")


@passage("tune-grid")
def tune_grid(r: Records) -> str:
    """The Ray Tune grid's wall time against the same fits one after another."""
    rec = r.latest("tune")
    t = target(rec, "grid wall time <= 1.15 x the same fits one after another")
    return (
        "On this 2-core machine the chapter's 5-architecture grid (10 epochs, 5,000 rows) takes "
        "about the same wall time as the same fits one after another in a warm session "
        f"(`bench/results/{rec['_file']}`: {t['value']}, target {t['target']}): the grid pays "
        "Ray's start (a few seconds) and a worker per concurrent trial, and wins back the "
        "per-fit Spark statistics pass and runs two 1-thread trials at a time.")


@passage("direct-reader")
def direct_reader(r: Records) -> str:
    """The workers' own Parquet reader against Spark's, in the newest scoring run."""
    rec = r.latest("scoring")
    res = rec["result"]
    ours, spark = res["spark"], res["spark_reader"]
    return (
        f"The workers' own reader scored {ours['rows']:,} sparse-vector rows (deep_features "
        f"and reconstruction_mse into Spark's noop sink) at {ours['rows_per_s']:,} rows/s "
        f"against {spark['rows_per_s']:,} with Spark's reader, "
        f"{ours['rows_per_s'] / spark['rows_per_s']:.2f}x (`bench/results/{rec['_file']}`).")
