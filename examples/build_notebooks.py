"""Write the walkthrough notebook in both formats from one list of cells.

    python examples/build_notebooks.py          # (re)write both files
    python examples/build_notebooks.py --check  # exit 1 when a file is out of date

Outputs, beside this script: ``sparkae_walkthrough.ipynb`` (Jupyter, no outputs) and
``sparkae_walkthrough_databricks.py`` (Databricks source format). Edit :data:`CELLS`, never
the generated files; ``tests/test_examples.py`` checks that the two match.
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "sparkae_walkthrough"
IPYNB = os.path.join(HERE, f"{NAME}.ipynb")
DATABRICKS = os.path.join(HERE, f"{NAME}_databricks.py")
DATABRICKS_HEADER = "# Databricks notebook source"
DATABRICKS_SEP = "# COMMAND ----------"

#: The notebook: ("md" | "code", source) in order.
CELLS: List[Tuple[str, str]] = [
    ("md", """\
# Autoencoders with sparkae: a walkthrough

This notebook follows the autoencoder chapter of *Hands-On Machine Learning with R*
(H2O's `h2o.deeplearning(autoencoder = TRUE)`) with sparkae on Spark: undercomplete
codings against PCA, a grid of architectures, reconstructions, sparse and denoising
autoencoders, anomaly detection and retraining on the inliers. It uses the 5,000-image
MNIST sample bundled with sparkae, so it runs anywhere Spark does (a laptop, Jupyter,
Databricks).

`SPARKAE_EXAMPLE_EPOCHS` (default 10) sets the epochs of every fit,
`SPARKAE_EXAMPLE_ROWS` (default 5000) how many of the sample's rows to use and
`SPARKAE_EXAMPLE_GRID` the architectures of the grid search; the test suite runs the
notebook with 1 epoch, 1,000 rows and a small grid."""),
    ("code", """\
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
print(f"Spark {spark.version}, {EPOCHS} epochs per fit, {ROWS} rows")"""),
    ("md", """\
## The data

`load_mnist_sample` gives `id`, `features` (a sparse vector of 784 pixels, 0-255) and
`label`. We hold out 20% for validation. For your own table, use any vector or
array column (`features_col`) or a list of numeric columns (`features_cols`)."""),
    ("code", """\
digits = load_mnist_sample(spark)
if ROWS < 5000:
    digits = digits.sample(fraction=ROWS / 5000, seed=1)
digits = digits.cache()
train, valid = digits.randomSplit([0.8, 0.2], seed=123)
train, valid = train.cache(), valid.cache()
print(train.count(), "training rows,", valid.count(), "validation rows")"""),
    ("md", """\
## Undercomplete autoencoder: 2-D codings against PCA

A network with one 2-unit hidden layer (H2O: `h2o.deeplearning(x, training_frame,
autoencoder = TRUE, hidden = 2, activation = "Tanh")`) against PCA with two components
on the same scaled inputs (`sparkae.baselines.pca`). `model.deep_features` is
`h2o.deepfeatures`. Each fit shows a progress bar (`progress="bar"`; `"log"` writes one
log line per epoch instead, `"none"` nothing)."""),
    ("code", """\
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
                                    both.label.to_numpy())))"""),
    ("md", """\
## Stacked autoencoders and a grid of architectures

`hidden` lists every hidden layer: `[300, 100, 300]` is a stacked autoencoder whose
coding layer is the middle one. `sparkae.tune.grid_search` (H2O: `h2o.grid`) fits one
model per combination in parallel Ray Tune trials and ranks them by validation MSE."""),
    ("code", """\
from sparkae.tune import grid_search

grid = grid_search(Autoencoder(activation="tanh", epochs=EPOCHS, seed=123), train,
                   {"hidden": GRID_HIDDEN}, validation_df=valid, max_concurrent_trials=2)
print("best:", grid.best_params)
grid.leaderboard"""),
    ("md", """\
## Visualizing the reconstructions

The best model of the grid reconstructs validation digits: inputs on top, reconstructions
below (the `reconstruction` output is in the input's own units)."""),
    ("code", """\
best = grid.best_model
rows = best.copy({best.outputs: ["reconstruction"]}).transform(valid.limit(8)).collect()
inputs = np.stack([r.features.toArray() for r in rows])
recon = np.stack([np.asarray(r.reconstruction) for r in rows])
display(Image(report.reconstructions(inputs, recon, "Validation digits and their reconstructions",
                                     image_shape=[28, 28])))"""),
    ("md", """\
## Sparse autoencoder

A KL penalty pulls the average activation of every coding unit toward a target
(H2O: `average_activation = -0.1, sparsity_beta = 0.01`; on Tanh's scale, so -0.1 is
mostly "off")."""),
    ("code", """\
plain = Autoencoder(hidden=[100], epochs=EPOCHS, seed=123).fit(train, validation_df=valid)
sparse = Autoencoder(hidden=[100], average_activation=-0.1, sparsity_beta=0.01,
                     epochs=EPOCHS, seed=123).fit(train, validation_df=valid)
print(f"mean coding activation: plain {plain.summary.mean_coding_activation:.3f}, "
      f"sparse {sparse.summary.mean_coding_activation:.3f}")
display(Image(report.coding_activations(sparse.summary.coding_activations, target=-0.1)))"""),
    ("md", """\
## Denoising autoencoder

Train on a corrupted copy and validate on the clean rows, as the chapter does
(`sparkae.noise.corrupt`: `gaussian`, `masking` or `salt_pepper`), or let the fit
corrupt its batches (`input_dropout_ratio`, H2O's way, or `noise`/`noise_level`)."""),
    ("code", """\
from sparkae.noise import corrupt

noisy = corrupt(train, "gaussian", 50.0, seed=1)
denoiser = Autoencoder(hidden=[100], epochs=EPOCHS, seed=123).fit(noisy, validation_df=valid)
dropout = Autoencoder(hidden=[100], input_dropout_ratio=0.2, epochs=EPOCHS,
                      seed=123).fit(train, validation_df=valid)
print(f"validation MSE on clean rows: gaussian-noise training {denoiser.summary.validation_mse:.5f}, "
      f"input dropout {dropout.summary.validation_mse:.5f}")"""),
    ("md", """\
## Anomaly detection

`model.anomaly` is `h2o.anomaly`: each row's reconstruction MSE. With
`anomaly_quantile`, the model keeps a threshold (a quantile of the training errors) and
`transform` flags rows above it. The rows the model reconstructs worst are the odd
ones."""),
    ("code", """\
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
      f"{detector.threshold:.5f}")"""),
    ("md", """\
## Retraining on the inliers

Drop the rows with the largest errors (here: keep those within the 0.75 quantile,
`model.inliers`) and train again: a model of the typical rows, whose errors single out
the atypical ones more clearly."""),
    ("code", """\
inliers = detector.inliers(train, quantile=0.75)
retrained = Autoencoder(hidden=[100], epochs=EPOCHS, seed=123).fit(inliers, validation_df=valid)
print(f"{inliers.count()} inliers; validation MSE {retrained.summary.validation_mse:.5f} "
      f"(trained on every row: {plain.summary.validation_mse:.5f})")
retrained.summary.as_pandas()"""),
    ("md", """\
## Scoring into a Delta table, the nightly job's way

`jobs/score.py` scores a table with a saved model and replaces one `run_date` of its
output; here its work function runs on a Delta input (read at a pinned version, as
`input.version` asks) into a Delta output, three times with one date repeated: each run
is one Delta commit (`replaceWhere`), so the rerun replaces its date and touches no other.
`get_session` added Delta's jar and settings (on Databricks the runtime's Delta is used)."""),
    ("code", """\
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
    "version", "operation", "operationParameters.predicate").show(truncate=False)"""),
]


def _lines(text: str) -> List[str]:
    """Jupyter's source form: lines that keep their newline, but the last."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def render_ipynb(cells: List[Tuple[str, str]] = CELLS) -> str:
    """The .ipynb text (nbformat 4.5, no outputs, stable cell ids)."""
    out = []
    for i, (kind, text) in enumerate(cells):
        cell = {"cell_type": "markdown" if kind == "md" else "code", "id": f"cell-{i:02d}",
                "metadata": {}, "source": _lines(text)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    nb = {"cells": out, "metadata": {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def render_databricks(cells: List[Tuple[str, str]] = CELLS) -> str:
    """The Databricks source-format text: markdown as ``# MAGIC %md`` cells."""
    parts = []
    for kind, text in cells:
        if kind == "md":
            parts.append("\n".join(["# MAGIC %md"] + [("# MAGIC " + line).rstrip()
                                                      for line in text.split("\n")]))
        else:
            parts.append(text)
    return DATABRICKS_HEADER + "\n" + f"\n\n{DATABRICKS_SEP}\n\n".join(parts) + "\n"


def parse_databricks(text: str) -> List[Tuple[str, str]]:
    """Cells of a Databricks source-format notebook (the inverse of
    :func:`render_databricks`)."""
    if not text.startswith(DATABRICKS_HEADER + "\n"):
        raise ValueError(f"not a Databricks notebook: the first line is not {DATABRICKS_HEADER!r}")
    body = text[len(DATABRICKS_HEADER) + 1:].rstrip("\n")
    cells = []
    for chunk in body.split(f"\n\n{DATABRICKS_SEP}\n\n"):
        lines = chunk.split("\n")
        if lines[0] == "# MAGIC %md":
            cells.append(("md", "\n".join(line[len("# MAGIC "):] if line.startswith("# MAGIC ")
                                          else "" for line in lines[1:])))
        else:
            cells.append(("code", chunk))
    return cells


def main(argv: List[str]) -> int:
    wanted = {IPYNB: render_ipynb(), DATABRICKS: render_databricks()}
    if "--check" in argv:
        stale = [p for p, text in wanted.items()
                 if not os.path.exists(p) or open(p, encoding="utf-8").read() != text]
        for path in stale:
            print(f"{os.path.relpath(path)} is out of date: run python examples/build_notebooks.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for path, text in wanted.items():
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
