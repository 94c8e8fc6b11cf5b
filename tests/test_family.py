"""The H2O chapter's autoencoder family: each setting does what it says (real training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyspark.ml.linalg import Vectors

from sparkae import Autoencoder, AutoencoderModel, baselines
from sparkae.nn.models import AutoencoderNet
from sparkae.noise import corrupt
from sparkae.train.loop import TrainConfig, train


@pytest.fixture(scope="module")
def digits(mnist_sample):
    """2,000 rows of the bundled sample (it is sorted by label: sample, don't slice)."""
    df = mnist_sample.sample(0.4, seed=1).cache()
    df.count()
    yield df
    df.unpersist()


def test_linear_autoencoder_matches_pca(mnist_sample):
    """The chapter's claim: a linear autoencoder with k units reduces to k-component PCA."""
    k = 10
    p = baselines.pca(mnist_sample, k)
    m = Autoencoder(hidden=[k], activation="linear", epochs=15, rate=0.003,
                    mini_batch_size=128, seed=1, stopping_rounds=0).fit(mnist_sample)
    ae_mse = m.anomaly(mnist_sample).agg({"reconstruction_mse": "mean"}).first()[0]
    assert ae_mse <= p.reconstruction_mse * 1.05, (ae_mse, p.reconstruction_mse)
    assert ae_mse >= p.reconstruction_mse * 0.99      # PCA is the optimum of a linear map
    proj = p.projection().select("pca_features").first()[0]
    assert len(proj) == k and len(p.explained_variance) == k


@pytest.mark.parametrize("beta, method", [(1.0, "kl"), (0.05, "h2o_bias")])
def test_sparsity_pulls_the_mean_coding_activation_to_the_target(digits, beta, method):
    common = dict(hidden=[50], average_activation=-0.5, epochs=10, rate=0.005, seed=1)
    sparse = Autoencoder(sparsity_beta=beta, sparsity_method=method, **common).fit(digits)
    plain = Autoencoder(sparsity_beta=0.0, **common).fit(digits)
    assert abs(sparse.summary.mean_coding_activation - (-0.5)) <= 0.1
    assert abs(plain.summary.mean_coding_activation - (-0.5)) > 0.1
    assert len(sparse.summary.coding_activations) == 50


def test_sparsity_target_outside_the_activation_range_is_rejected(digits):
    with pytest.raises(ValueError, match=r"'average_activation': got -0.5, expected a number in "
                                         r"\(0, 1\) for activation 'rectifier'"):
        Autoencoder(activation="rectifier", sparsity_beta=0.1, average_activation=-0.5).fit(digits)
    with pytest.raises(ValueError, match=r"'average_activation': got 1.0, expected a number in "
                                         r"\(-1, 1\) for activation 'tanh'"):
        Autoencoder(sparsity_beta=0.1, average_activation=1.0).fit(digits)


def test_input_dropout_trains_against_the_clean_input():
    """The model sees a corrupted input but the loss compares with the clean one: an
    identity "network" then has a positive loss equal to the corruption's error."""
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    net = AutoencoderNet(8, 8, [4], "tanh")
    seen = []

    class Identity(torch.nn.Module):
        def forward(self, inp):
            seen.append(inp)
            y, acts = net(inp)
            return inp + 0.0 * y, acts

    hist = train(net, lambda e: [x], TrainConfig(epochs=1, input_dropout_ratio=0.5),
                 model=Identity())
    corrupted = seen[0]
    dropped = (corrupted == 0) & (x != 0)
    assert 0.4 < dropped.float().mean() < 0.6
    assert hist[0]["train_mse"] == pytest.approx(float(((corrupted - x) ** 2).mean()), rel=1e-5)
    assert hist[0]["train_mse"] > 0.3


def test_max_w2_holds_and_l1_gives_more_zero_weights(small_dense):
    _, df = small_dense
    capped = Autoencoder(features_col="vec", hidden=[8], epochs=5, rate=0.05, max_w2=0.5,
                         seed=2).fit(df)
    for name, w in capped.network().state_dict().items():
        if name.endswith("weight"):
            assert float((w * w).sum(dim=1).max()) <= 0.5 + 1e-5, name
    plain = Autoencoder(features_col="vec", hidden=[8], epochs=5, seed=2).fit(df)
    l1 = Autoencoder(features_col="vec", hidden=[8], epochs=5, seed=2, l1=0.05).fit(df)

    def zeros(m):
        return sum(int((w.abs() < 1e-3).sum()) for k, w in m.network().state_dict().items()
                   if k.endswith("weight"))
    assert zeros(l1) >= 2 * zeros(plain) + 10


def test_early_stopping_and_best_model(spark, small_dense):
    x, df = small_dense
    # a tiny training set overfits: validation MSE soon stops improving
    train_df = df.where("id < 24")
    m = Autoencoder(features_col="vec", hidden=[40], epochs=60, rate=0.02, mini_batch_size=4,
                    stopping_rounds=3, seed=5).fit(train_df, validation_df=df)
    hist = m.summary.history
    assert len(hist) < 60                              # stopped early
    best = min(h["validation_mse"] for h in hist)
    assert m.summary.model_epoch == [h["epoch"] for h in hist
                                     if h["validation_mse"] == best][0]
    assert m.summary.model_epoch <= len(hist) - 3
    # the model holds the best epoch's weights
    scored = m.anomaly(df).agg({"reconstruction_mse": "mean"}).first()[0]
    assert scored == pytest.approx(best, rel=1e-4)


@pytest.mark.parametrize("kwargs", [
    dict(activation="tanh_with_dropout", hidden_dropout_ratios=[0.1]),
    dict(activation="rectifier"), dict(activation="rectifier_with_dropout"),
    dict(activation="maxout"), dict(activation="maxout_with_dropout"),
    dict(activation="exp_rectifier"), dict(output_activation="same"),
    dict(optimizer="adadelta"),
    dict(optimizer="sgd", rate=0.01, momentum_start=0.5, momentum_stable=0.9,
         momentum_ramp=1000, rate_annealing=1e-5),
    dict(noise="gaussian", noise_level=0.05), dict(noise="salt_pepper", noise_level=0.05),
    dict(noise="masking", noise_level=0.1, input_dropout_ratio=0.1),
])
def test_every_activation_optimizer_and_noise_trains_and_round_trips(tmp_path, small_dense,
                                                                     kwargs):
    _, df = small_dense
    m = Autoencoder(features_col="vec", hidden=[6], epochs=6, seed=3, stopping_rounds=0,
                    **kwargs).fit(df)
    hist = m.summary.history
    assert hist[-1]["train_mse"] < hist[0]["train_mse"], hist
    m.save(str(tmp_path / "m"))
    loaded = AutoencoderModel.load(str(tmp_path / "m"))
    a = m.anomaly(df).select("id", "reconstruction_mse").toPandas().sort_values("id")
    b = loaded.anomaly(df).select("id", "reconstruction_mse").toPandas().sort_values("id")
    np.testing.assert_array_equal(a.reconstruction_mse.to_numpy(), b.reconstruction_mse.to_numpy())


@pytest.fixture(scope="module")
def with_missing(spark):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 6))
    x[::10, 2] = np.nan                                 # 20 rows miss feature 2
    rows = [(i, Vectors.dense(r)) for i, r in enumerate(x)]
    return x, spark.createDataFrame(rows, ["id", "features"])


def test_mean_imputation_scores_rows_with_missing_values(with_missing):
    x, df = with_missing
    m = Autoencoder(hidden=[3], epochs=5, seed=1).fit(df)
    scores = m.anomaly(df).toPandas()
    assert scores.reconstruction_mse.notna().all()
    assert np.isfinite(scores.reconstruction_mse).all()
    assert m.network().scaler.impute[2] == pytest.approx(0.0, abs=1e-6)  # the mean, scaled
    assert all(np.isfinite(h["train_mse"]) for h in m.summary.history)


def test_skip_leaves_rows_with_missing_values_out_and_gives_them_null_scores(with_missing):
    x, df = with_missing
    m = Autoencoder(hidden=[3], epochs=2, seed=1, missing_values_handling="skip").fit(df)
    assert m.summary.history[0]["rows"] == 180
    scores = m.anomaly(df).toPandas().set_index("id").reconstruction_mse
    missing = np.isnan(x).any(axis=1)
    assert scores[missing].isna().all() and scores[~missing].notna().all()
    assert np.isfinite(scores[~missing]).all()


def test_anomaly_quantile_threshold_and_is_anomaly(tmp_path, digits):
    m = Autoencoder(hidden=[20], epochs=3, seed=1, anomaly_quantile=0.9).fit(digits)
    assert m.threshold is not None and m.threshold > 0
    scored = m.transform(digits)
    assert "is_anomaly" in scored.columns
    share = \
        scored.selectExpr("avg(cast(is_anomaly as double)) a").first()["a"]
    assert 0.07 <= share <= 0.13
    m.save(str(tmp_path / "m"))
    assert AutoencoderModel.load(str(tmp_path / "m")).threshold == m.threshold
    fixed = Autoencoder(hidden=[20], epochs=1, seed=1, anomaly_threshold=0.5).fit(digits)
    assert fixed.threshold == 0.5
    inl = m.inliers(digits, quantile=0.75)
    assert inl.columns == digits.columns
    assert 0.7 * digits.count() <= inl.count() <= 0.8 * digits.count()


def test_string_columns_are_one_hot_encoded_with_unseen_levels_as_zeros(spark):
    rows = [(float(i % 5), ["a", "b", "c"][i % 3], float(i % 7)) for i in range(150)]
    df = spark.createDataFrame(rows, ["x", "kind", "y"])
    m = Autoencoder(features_cols=["x", "kind", "y"], hidden=[2], epochs=3, seed=1).fit(df)
    assert m.input_size == 5 and m.input_info.levels == {"kind": ["a", "b", "c"]}
    new = spark.createDataFrame([(1.0, "zzz", 2.0), (1.0, None, 2.0), (1.0, "a", 2.0)],
                                ["x", "kind", "y"])
    m.set(m.outputs, ["reconstruction_mse", "reconstruction"])
    out = m.transform(new).toPandas()
    assert out.reconstruction_mse.notna().all() and len(out.reconstruction[0]) == 5


def test_denoising_the_chapters_way_corrupted_train_clean_validation(digits):
    noisy = corrupt(digits, "gaussian", 40.0, seed=1)
    assert noisy.columns == digits.columns
    a = np.array(noisy.orderBy("id").first()["features"].toArray())
    b = np.array(digits.orderBy("id").first()["features"].toArray())
    assert 30 < np.std(a - b) < 50
    m = Autoencoder(hidden=[50], epochs=3, seed=1).fit(noisy, validation_df=digits)
    hist = m.summary.history
    assert hist[-1]["validation_mse"] < hist[0]["validation_mse"]
    again = np.array(corrupt(digits, "gaussian", 40.0, seed=1).orderBy("id").first()["features"]
                     .toArray())
    np.testing.assert_array_equal(a, again)            # seeded
    masked = np.array(corrupt(digits, "masking", 0.5, seed=2).orderBy("id").first()["features"]
                      .toArray())
    assert ((masked == 0) & (b != 0)).sum() > 0
    with pytest.raises(ValueError, match=r"kind: got 'blur', expected one of gaussian"):
        corrupt(digits, "blur", 0.1)
    with pytest.raises(ValueError, match=r"level: got 1.5, expected a share in \(0, 1\)"):
        corrupt(digits, "masking", 1.5)
