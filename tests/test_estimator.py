"""Autoencoder.fit / AutoencoderModel.transform, deep_features, anomaly, save/load on Spark."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from pyspark.ml.linalg import Vectors

from sparkae import Autoencoder, AutoencoderModel
from sparkae.scoring import score_matrix

FAST = dict(hidden=[6], epochs=3, mini_batch_size=32, seed=11)


@pytest.fixture(scope="module")
def fitted(small_dense):
    x, df = small_dense
    model = Autoencoder(features_col="vec", **FAST).fit(df, validation_df=df)
    return x, df, model


def _sorted_scores(scored, col="reconstruction_mse"):
    pdf = scored.select("id", col).toPandas().sort_values("id")
    return pdf[col].to_numpy() if col == "reconstruction_mse" else np.stack(pdf[col].to_numpy())


def test_fit_records_history_and_scores_match_a_local_forward_pass(fitted):
    x, df, model = fitted
    s = model.summary
    assert s.epochs == 3 and s.train_rows == 400 and s.validation_rows == 400
    assert s.history[-1]["train_mse"] < s.history[0]["train_mse"]
    scored = model.transform(df)
    assert {"deep_features", "reconstruction_mse"} <= set(scored.columns)
    assert set(df.columns) <= set(scored.columns)
    got = _sorted_scores(scored)
    ref = score_matrix(model.network(), x.astype(np.float32), ["reconstruction_mse"], 1)
    np.testing.assert_allclose(got, ref["reconstruction_mse"], rtol=1e-5, atol=1e-7)
    # the validation MSE of the last epoch is the mean score of the same rows
    assert got.mean() == pytest.approx(s.validation_mse, rel=1e-4)
    codings = _sorted_scores(scored, "deep_features")
    assert codings.shape == (400, 6) and np.all(np.abs(codings) <= 1)


def test_same_seed_same_weights_for_every_input_layout(spark, small_dense):
    x, df = small_dense
    states = []
    for kw in (dict(features_col="vec"), dict(features_col="arr"),
               dict(features_cols=[f"c{j}" for j in range(12)]), dict(features_col="vec")):
        m = Autoencoder(**kw, **FAST).fit(df)
        states.append(m.network().state_dict())
    for other in states[1:]:
        for k in states[0]:
            assert torch.allclose(states[0][k], other[k], atol=1e-6), k
    different = Autoencoder(features_col="vec", **dict(FAST, seed=12)).fit(df)
    assert not torch.equal(different.network().state_dict()["layers.0.weight"],
                           states[0]["layers.0.weight"])


def test_stacked_deep_features_of_any_layer_and_anomaly(small_dense):
    x, df = small_dense
    m = Autoencoder(features_col="vec", hidden=[8, 3, 8], epochs=2, seed=3).fit(df)
    assert np.stack(m.transform(df).select("deep_features").toPandas()
                    .deep_features.to_numpy()).shape == (400, 3)   # coding layer = middle
    for layer, width in ((1, 8), (2, 3), (3, 8)):
        out = m.deep_features(df, layer=layer)
        assert "reconstruction_mse" not in out.columns
        assert len(out.first()["deep_features"]) == width
    with pytest.raises(ValueError, match=r"layer: got 4, expected a hidden layer number from 1 to 3"):
        m.deep_features(df, layer=4)
    per_feature = m.anomaly(df, per_feature=True).select("id", "feature_errors").toPandas()
    errs = np.stack(per_feature.sort_values("id").feature_errors.to_numpy())
    mse = _sorted_scores(m.anomaly(df))
    assert errs.shape == (400, 12)
    np.testing.assert_allclose(errs.mean(axis=1), mse, rtol=1e-5)


def test_reconstruction_in_input_units_and_constant_columns(spark):
    rows = [(i, Vectors.dense([float(i % 7), 5.0, float((i * 3) % 11)])) for i in range(120)]
    df = spark.createDataFrame(rows, ["id", "features"])
    m = Autoencoder(hidden=[2], epochs=30, seed=1, rate=0.01).fit(df)
    assert m.network().scaler.keep.tolist() == [0, 2]   # the constant column is left out
    m.set(m.outputs, ["reconstruction", "reconstruction_mse"])
    rec = np.stack(m.transform(df).toPandas().sort_values("id").reconstruction.to_numpy())
    assert np.allclose(rec[:, 1], 5.0)                  # reported as its training value
    x = np.array([[r[1][0], r[1][2]] for r in rows])
    assert np.corrcoef(rec[:, 0], x[:, 0])[0, 1] > 0.9


def test_save_load_round_trip_scores_identically(tmp_path, fitted):
    x, df, model = fitted
    path = str(tmp_path / "m")
    model.save(path)
    manifest = json.load(open(os.path.join(path, "_manifest.json")))
    gen = manifest["generation"]
    assert sorted(manifest["files"]) == ["metadata.json", "weights.safetensors"]
    meta = json.load(open(os.path.join(path, gen, "metadata.json")))
    assert meta["format_version"] == 2 and meta["input"]["size"] == 12
    assert meta["params"]["hidden"] == [6] and len(meta["summary"]["history"]) == 3
    assert sorted(os.listdir(path)) == ["_manifest.json", gen, "metadata"]
    loaded = AutoencoderModel.load(path)
    assert loaded.summary.epochs == 3 and loaded.getOrDefault("hidden") == [6]
    np.testing.assert_array_equal(_sorted_scores(loaded.transform(df)),
                                  _sorted_scores(model.transform(df)))
    with pytest.raises(FileExistsError, match="already exists.*overwrite"):
        model.save(path)
    model.write().overwrite().save(path)
    model.write().overwrite().save(path)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p]
    gens = [p for p in os.listdir(path) if p.startswith("g-")]
    assert len(gens) == 2 and gen not in gens   # the current one and the one before


def test_model_load_errors(tmp_path, fitted):
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=f"model path: '{missing}' does not exist"):
        AutoencoderModel.load(missing)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="is not a loadable sparkae model: .* has no _manifest.json"):
        AutoencoderModel.load(str(tmp_path / "plain"))
    path = str(tmp_path / "m")
    fitted[2].save(path)
    gen = json.load(open(os.path.join(path, "_manifest.json")))["generation"]
    with open(os.path.join(path, gen, "weights.safetensors"), "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\0\0\0\0")
    with pytest.raises(ValueError, match="corrupt or was altered: sha256"):
        AutoencoderModel.load(path)


def test_scoring_a_table_of_the_wrong_width_fails_clearly(spark, fitted):
    bad = spark.createDataFrame([(0, Vectors.dense([1.0, 2.0]))], ["id", "vec"])
    with pytest.raises(Exception, match="a row has 2 features where the model expects 12"):
        fitted[2].transform(bad).collect()


def test_a_threshold_given_at_scoring_time_overrides_the_models(fitted):
    _, df, model = fitted
    assert model.threshold is None
    scored = model.transform(df, {model.anomaly_threshold: 0.0}).select(
        "reconstruction_mse", "is_anomaly").toPandas()
    assert scored["is_anomaly"].tolist() == (scored["reconstruction_mse"] > 0.0).tolist()
    high = model.copy({model.anomaly_threshold: 1e9})
    assert high.threshold == 1e9 and model.threshold is None
    assert not any(high.transform(df).select("is_anomaly").toPandas()["is_anomaly"])
