# Databricks notebook source
# MAGIC %md
# MAGIC # Autoencoders with sparkae: a walkthrough
# MAGIC
# MAGIC This notebook follows the autoencoder chapter of *Hands-On Machine Learning with R*
# MAGIC (H2O's `h2o.deeplearning(autoencoder = TRUE)`) with sparkae on Spark: undercomplete
# MAGIC codings against PCA, a grid of architectures, reconstructions, sparse and denoising
# MAGIC autoencoders, anomaly detection and retraining on the inliers. It uses the 5,000-image
# MAGIC MNIST sample bundled with sparkae, so it runs anywhere Spark does (a laptop, Jupyter,
# MAGIC Databricks).
# MAGIC
# MAGIC `SPARKAE_EXAMPLE_EPOCHS` (default 10) sets the epochs of every fit,
# MAGIC `SPARKAE_EXAMPLE_ROWS` (default 5000) how many of the sample's rows to use and
# MAGIC `SPARKAE_EXAMPLE_GRID` the architectures of the grid search; the test suite runs the
# MAGIC notebook with 1 epoch, 1,000 rows and a small grid.

# COMMAND ----------

import json
import os
import sys

EPOCHS = int(os.environ.get("SPARKAE_EXAMPLE_EPOCHS", "10"))
ROWS = int(os.environ.get("SPARKAE_EXAMPLE_ROWS", "5000"))   # of the 5,000-image sample
# architectures of the grid search (list-valued Params take a list of lists)
GRID_HIDDEN = json.loads(os.environ.get("SPARKAE_EXAMPLE_GRID", "[[50], [100], [300, 100, 300]]"))

try:
    import sparkae
except ImportError:  # a checkout without `pip install -e .`: use the repository beside us
    root = os.path.abspath("..")
    sys.path.insert(0, root)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    import sparkae

import logging

logging.basicConfig(level=logging.WARNING)
from IPython.display import Image, display

from sparkae import Autoencoder, baselines, report
from sparkae.datasets import load_mnist_sample
from sparkae.session import get_session

spark = get_session(app_name="sparkae-walkthrough")  # Databricks: the notebook's session
print(f"Spark {spark.version}, {EPOCHS} epochs per fit, {ROWS} rows")

# COMMAND ----------

# MAGIC %md
# MAGIC ## The data
# MAGIC
# MAGIC `load_mnist_sample` gives `id`, `features` (a sparse vector of 784 pixels, 0-255) and
# MAGIC `label`. We hold out 20% for validation. For your own table, use any vector or
# MAGIC array column (`features_col`) or a list of numeric columns (`features_cols`).

# COMMAND ----------

digits = load_mnist_sample(spark)
if ROWS < 5000:
    digits = digits.sample(fraction=ROWS / 5000, seed=1)
digits = digits.cache()
train, valid = digits.randomSplit([0.8, 0.2], seed=123)
train, valid = train.cache(), valid.cache()
print(train.count(), "training rows,", valid.count(), "validation rows")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Undercomplete autoencoder: 2-D codings against PCA
# MAGIC
# MAGIC A network with one 2-unit hidden layer (H2O: `h2o.deeplearning(x, training_frame,
# MAGIC autoencoder = TRUE, hidden = 2, activation = "Tanh")`) against PCA with two components
# MAGIC on the same scaled inputs (`sparkae.baselines.pca`). `model.deep_features` is
# MAGIC `h2o.deepfeatures`. Each fit shows a progress bar (`progress="bar"`; `"log"` writes one
# MAGIC log line per epoch instead, `"none"` nothing).

# COMMAND ----------

ae2 = Autoencoder(hidden=[2], activation="tanh", epochs=EPOCHS, seed=123)
codings_model = ae2.fit(train, validation_df=valid)
pca2 = baselines.pca(train, k=2)
print(f"autoencoder (2 codings): validation MSE {codings_model.summary.validation_mse:.5f}")
print(f"PCA (2 components):      training MSE   {pca2.reconstruction_mse:.5f}")

sample = valid.limit(1000)
both = pca2.projection(codings_model.deep_features(sample)).select(
    "label", "deep_features", "pca_features").toPandas()
import numpy as np

display(Image(report.codings_vs_pca(np.stack(both.deep_features), np.stack(both.pca_features),
                                    both.label.to_numpy())))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Stacked autoencoders and a grid of architectures
# MAGIC
# MAGIC `hidden` lists every hidden layer: `[300, 100, 300]` is a stacked autoencoder whose
# MAGIC coding layer is the middle one. `sparkae.tune.grid_search` (H2O: `h2o.grid`) fits one
# MAGIC model per combination in parallel Ray Tune trials and ranks them by validation MSE.

# COMMAND ----------

from sparkae.tune import grid_search

grid = grid_search(Autoencoder(activation="tanh", epochs=EPOCHS, seed=123), train,
                   {"hidden": GRID_HIDDEN}, validation_df=valid, max_concurrent_trials=2)
print("best:", grid.best_params)
grid.leaderboard

# COMMAND ----------

# MAGIC %md
# MAGIC ## Visualizing the reconstructions
# MAGIC
# MAGIC The best model of the grid reconstructs validation digits: inputs on top, reconstructions
# MAGIC below (the `reconstruction` output is in the input's own units).

# COMMAND ----------

best = grid.best_model
rows = best.copy({best.outputs: ["reconstruction"]}).transform(valid.limit(8)).collect()
inputs = np.stack([r.features.toArray() for r in rows])
recon = np.stack([np.asarray(r.reconstruction) for r in rows])
display(Image(report.reconstructions(inputs, recon, "Validation digits and their reconstructions",
                                     image_shape=[28, 28])))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Sparse autoencoder
# MAGIC
# MAGIC A KL penalty pulls the average activation of every coding unit toward a target
# MAGIC (H2O: `average_activation = -0.1, sparsity_beta = 0.01`; on Tanh's scale, so -0.1 is
# MAGIC mostly "off").

# COMMAND ----------

plain = Autoencoder(hidden=[100], epochs=EPOCHS, seed=123).fit(train, validation_df=valid)
sparse = Autoencoder(hidden=[100], average_activation=-0.1, sparsity_beta=0.01,
                     epochs=EPOCHS, seed=123).fit(train, validation_df=valid)
print(f"mean coding activation: plain {plain.summary.mean_coding_activation:.3f}, "
      f"sparse {sparse.summary.mean_coding_activation:.3f}")
display(Image(report.coding_activations(sparse.summary.coding_activations, target=-0.1)))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Denoising autoencoder
# MAGIC
# MAGIC Train on a corrupted copy and validate on the clean rows, as the chapter does
# MAGIC (`sparkae.noise.corrupt`: `gaussian`, `masking` or `salt_pepper`), or let the fit
# MAGIC corrupt its batches (`input_dropout_ratio`, H2O's way, or `noise`/`noise_level`).

# COMMAND ----------

from sparkae.noise import corrupt

noisy = corrupt(train, "gaussian", 50.0, seed=1)
denoiser = Autoencoder(hidden=[100], epochs=EPOCHS, seed=123).fit(noisy, validation_df=valid)
dropout = Autoencoder(hidden=[100], input_dropout_ratio=0.2, epochs=EPOCHS,
                      seed=123).fit(train, validation_df=valid)
print(f"validation MSE on clean rows: gaussian-noise training {denoiser.summary.validation_mse:.5f}, "
      f"input dropout {dropout.summary.validation_mse:.5f}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Anomaly detection
# MAGIC
# MAGIC `model.anomaly` is `h2o.anomaly`: each row's reconstruction MSE. With
# MAGIC `anomaly_quantile`, the model keeps a threshold (a quantile of the training errors) and
# MAGIC `transform` flags rows above it. The rows the model reconstructs worst are the odd
# MAGIC ones.

# COMMAND ----------

from pyspark.sql import functions as F

detector = Autoencoder(hidden=[100], epochs=EPOCHS, seed=123, anomaly_quantile=0.99).fit(train)
scored = detector.copy({detector.outputs: ["reconstruction_mse", "reconstruction"]}).transform(valid)
errors = scored.select("reconstruction_mse").toPandas().reconstruction_mse.to_numpy()
display(Image(report.error_distribution(errors, detector.threshold)))
worst = scored.orderBy(F.desc("reconstruction_mse")).limit(8).collect()
display(Image(report.reconstructions(
    np.stack([r.features.toArray() for r in worst]),
    np.stack([np.asarray(r.reconstruction) for r in worst]),
    "The validation digits with the largest reconstruction error", image_shape=[28, 28],
    captions=[f"id={r.id}" for r in worst])))
print(detector.transform(valid).where("is_anomaly").count(), "validation rows above the threshold",
      f"{detector.threshold:.5f}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Retraining on the inliers
# MAGIC
# MAGIC Drop the rows with the largest errors (here: keep those within the 0.75 quantile,
# MAGIC `model.inliers`) and train again: a model of the typical rows, whose errors single out
# MAGIC the atypical ones more clearly.

# COMMAND ----------

inliers = detector.inliers(train, quantile=0.75)
retrained = Autoencoder(hidden=[100], epochs=EPOCHS, seed=123).fit(inliers, validation_df=valid)
print(f"{inliers.count()} inliers; validation MSE {retrained.summary.validation_mse:.5f} "
      f"(trained on every row: {plain.summary.validation_mse:.5f})")
retrained.summary.as_pandas()

# COMMAND ----------

# MAGIC %md
# MAGIC ## Scoring into a Delta table, the nightly job's way
# MAGIC
# MAGIC `jobs/score.py` scores a table with a saved model and replaces one `run_date` of its
# MAGIC output; here its work function runs on a Delta input (read at a pinned version, as
# MAGIC `input.version` asks) into a Delta output, three times with one date repeated: each run
# MAGIC is one Delta commit (`replaceWhere`), so the rerun replaces its date and touches no other.
# MAGIC `get_session` added Delta's jar and settings (on Databricks the runtime's Delta is used).

# COMMAND ----------

import tempfile

from sparkae.jobs import score_job, score_settings

lake = os.environ.get("SPARKAE_EXAMPLE_LAKE") or tempfile.mkdtemp(prefix="sparkae-lake-")
valid.select("id", "features").write.format("delta").mode("overwrite").save(f"{lake}/events")
detector.write().overwrite().save(f"{lake}/model")
for day in ("2024-06-01", "2024-06-02", "2024-06-01"):
    settings = score_settings.load(None, ["output.format=delta", "input.version=0"], {
        "model": f"{lake}/model", "input": f"{lake}/events", "output": f"{lake}/scores",
        "id_cols": "id", "run_date": day, "outputs": "reconstruction_mse,is_anomaly"})
    summary = score_job.run_score(spark, settings)
    print(f"{day}: read version {summary['input_version']}, wrote version "
          f"{summary['output_version']}, replaced a previous run: {summary['replaced_previous']}")
spark.read.format("delta").load(f"{lake}/scores").groupBy("run_date").count().show()
spark.sql(f"DESCRIBE HISTORY delta.`{lake}/scores`").select(
    "version", "operation", "operationParameters.predicate").show(truncate=False)
