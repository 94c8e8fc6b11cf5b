"""sparkae inside Spark ML: Pipeline save/load, evaluator-driven model selection."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.tuning import ParamGridBuilder, TrainValidationSplit

from sparkae import Autoencoder
from sparkae.evaluation import ReconstructionEvaluator


def test_pipeline_with_vector_assembler_saves_and_loads(tmp_path, small_dense):
    _, df = small_dense
    cols = [f"c{j}" for j in range(12)]
    pipe = Pipeline(stages=[VectorAssembler(inputCols=cols, outputCol="assembled"),
                            Autoencoder(features_col="assembled", hidden=[4], epochs=3, seed=1)])
    fitted = pipe.fit(df)
    before = fitted.transform(df).select("id", "reconstruction_mse").toPandas().sort_values("id")
    fitted.write().overwrite().save(str(tmp_path / "pipe"))
    loaded = PipelineModel.load(str(tmp_path / "pipe"))
    after = loaded.transform(df).select("id", "reconstruction_mse").toPandas().sort_values("id")
    np.testing.assert_array_equal(before.reconstruction_mse.to_numpy(),
                                  after.reconstruction_mse.to_numpy())
    assert type(loaded.stages[1]).__name__ == "AutoencoderModel"
    assert loaded.stages[1].uid == fitted.stages[1].uid
    # an unfitted pipeline with the estimator saves and loads too
    pipe.write().overwrite().save(str(tmp_path / "unfitted"))
    again = Pipeline.load(str(tmp_path / "unfitted"))
    assert again.getStages()[1].getOrDefault("hidden") == [4]


def test_train_validation_split_picks_the_better_autoencoder(small_dense):
    _, df = small_dense
    ae = Autoencoder(features_col="vec", epochs=20, rate=0.01, seed=1)
    grid = ParamGridBuilder().addGrid(ae.hidden, [[1], [3]]).build()
    tvs = TrainValidationSplit(estimator=ae, estimatorParamMaps=grid,
                               evaluator=ReconstructionEvaluator(), trainRatio=0.75, seed=1)
    model = tvs.fit(df)
    assert model.bestModel.getOrDefault("hidden") == [3]     # rank-3 data: 3 units win
    assert model.validationMetrics[1] < model.validationMetrics[0]
    rmse = ReconstructionEvaluator(metric_name="rmse").evaluate(model.transform(df))
    mse = ReconstructionEvaluator().evaluate(model.transform(df))
    assert rmse == pytest.approx(np.sqrt(mse))
    with pytest.raises(ValueError, match=r"column 'reconstruction_mse' not found"):
        ReconstructionEvaluator().evaluate(df)


def test_explain_params_documents_every_param():
    text = Autoencoder().explainParams()
    for name in ("hidden", "activation", "sparsity_beta", "input_dropout_ratio",
                 "anomaly_quantile", "missing_values_handling", "stopping_rounds"):
        assert f"{name}:" in text
    assert "default: [100]" in text
