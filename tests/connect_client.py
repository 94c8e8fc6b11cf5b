"""The Spark Connect side of tests/test_connect.py, run in its own process.

A Python process that has made a Spark Connect session routes every ``pyspark.sql``
function to Connect (``SPARK_CONNECT_MODE_ENABLED``), so it cannot also drive the classic
session of the other tests: the checks run here and write their results to OUTDIR.

Usage: python tests/connect_client.py sc://127.0.0.1:PORT OUTDIR

Each step records ``{"ok": bool, "error": traceback, ...}`` in ``OUTDIR/results.json``;
its models and scores are saved under OUTDIR for the test to compare with Torch.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np


def main(url: str, out: str) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.utils import is_remote

    from sparkae import Autoencoder
    from sparkae.datasets import load_mnist_sample

    results = {}
    t0 = time.perf_counter()
    spark = SparkSession.builder.remote(url).getOrCreate()
    results["session"] = {"ok": True, "remote": is_remote(),
                          "has_spark_context": _has_spark_context(spark),
                          "seconds": time.perf_counter() - t0}
    cache = os.path.join(out, "cache")
    df = load_mnist_sample(spark, num_partitions=2).where(F.col("id") % 5 == 0)
    common = dict(hidden=[16], activation="tanh", seed=11, progress="none", cache_dir=cache)

    def step(name, fn):
        t = time.perf_counter()
        try:
            results[name] = dict(ok=True, **(fn() or {}))
        except Exception:  # noqa: BLE001 - reported to the test
            results[name] = {"ok": False, "error": traceback.format_exc()}
        results[name]["seconds"] = time.perf_counter() - t

    def fit_one():
        model = Autoencoder(epochs=2, anomaly_quantile=0.9, **common).fit(df)
        model.save(os.path.join(out, "model1"))
        scored = (model.transform(df).select("id", "reconstruction_mse", "deep_features",
                                             "is_anomaly").orderBy("id").toPandas())
        layer1 = model.deep_features(df.where(F.col("id") < 100), layer=1) \
            .select("id", "deep_features").orderBy("id").toPandas()
        errors = model.anomaly(df.where(F.col("id") < 100), per_feature=True) \
            .select("id", "feature_errors").orderBy("id").toPandas()
        np.savez(os.path.join(out, "scores1.npz"), id=scored["id"].to_numpy(),
                 mse=scored["reconstruction_mse"].to_numpy(),
                 deep=np.stack(scored["deep_features"].to_numpy()),
                 flag=scored["is_anomaly"].to_numpy().astype(bool),
                 layer1_id=layer1["id"].to_numpy(),
                 layer1=np.stack(layer1["deep_features"].to_numpy()),
                 errors_id=errors["id"].to_numpy(),
                 errors=np.stack(errors["feature_errors"].to_numpy()))
        return {"threshold": model.threshold, "epochs": model.summary.epochs,
                "quantile": model.error_quantile(df, 0.5),
                "train_rows": model.summary.train_rows}

    def fit_two():
        model = Autoencoder(epochs=1, num_workers=2, **common).fit(df)
        model.save(os.path.join(out, "model2"))
        scored = model.anomaly(df.where(F.col("id") < 500)).select(
            "id", "reconstruction_mse").orderBy("id").toPandas()
        np.savez(os.path.join(out, "scores2.npz"), id=scored["id"].to_numpy(),
                 mse=scored["reconstruction_mse"].to_numpy())
        return {"epochs": model.summary.epochs, "train_rows": model.summary.train_rows}

    step("fit_one_rank", fit_one)
    step("fit_two_ranks", fit_two)
    results["cache_left"] = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    spark.stop()


def _has_spark_context(spark) -> bool:
    try:
        spark.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect raises here
        return False
    return True


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
