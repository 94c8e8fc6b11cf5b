"""Run a 2-config grid on a standalone Spark cluster; print the leaderboard as JSON on the
last line. With the driver on loopback (as in the tests), sparkae runs Ray on 127.0.0.1
instead of Ray on Spark and logs so. Usage: python tests/tune_cluster_driver.py MASTER_URL
WORK_DIR (started by tests/test_tune_cluster.py: one SparkContext per process)."""

from __future__ import annotations

import json
import logging
import os
import sys

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(master: str, work: str) -> None:
    from pyspark.sql import SparkSession

    from sparkae import Autoencoder
    from sparkae.datasets import load_mnist_sample
    from sparkae.tune import grid_search

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("sparkae").setLevel(logging.INFO)
    spark = (SparkSession.builder.master(master).appName("sparkae-tune-cluster-test")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false")
             .config("spark.executor.memory", "1500m")
             .config("spark.task.maxFailures", "1")
             .getOrCreate())
    try:
        df = load_mnist_sample(spark).limit(1000)
        train, valid = df.randomSplit([0.8, 0.2], seed=1)
        res = grid_search(Autoencoder(epochs=2, seed=3, mini_batch_size=64,
                                      cache_dir=os.path.join(work, "cache")),
                          train, {"hidden": [[8], [16]]}, validation_df=valid,
                          storage_path=os.path.join(work, "store"))
        scored = res.best_model.transform(valid).count()
        board = res.leaderboard.assign(hidden=res.leaderboard["hidden"].map(list))
        print(json.dumps({"board": board.to_dict(orient="records"), "scored": scored,
                          "valid_rows": valid.count(), "best": res.best_params},
                         default=str))
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
