"""AnomalyDetector (sparkae.anomaly): score order, the contamination share flagged,
save/load, Pipelines, string and null columns, and the Param errors users can hit.

Tiny data and few epochs (the whole file runs in about a minute on 2 cores); one fitted
model is shared by the tests that only score."""

from __future__ import annotations

import numpy as np
import pytest

from sparkae.anomaly.datasets import synthetic

FAST = dict(n_estimators=1, epoch_num=2, min_steps=60, seed=3)
COLS = [f"c{j}" for j in range(6)]


@pytest.fixture(scope="module")
def planted(spark):
    """300 rows of 6 correlated features, 9 planted anomalies (label True): their features
    are drawn independently (correlations broken) and two are pushed 4 standard deviations
    out."""
    d = synthetic(n=300, d=6, rank=2, share=0.03, seed=5)
    sd = d.x.std(0)
    d.x[d.y, 0] += 4 * sd[0]
    d.x[d.y, 1] -= 4 * sd[1]
    rows = [(i, bool(y), *map(float, r)) for i, (r, y) in enumerate(zip(d.x, d.y))]
    df = spark.createDataFrame(rows, ["id", "label"] + COLS).repartition(2).cache()
    df.count()
    yield d, df
    df.unpersist()


@pytest.fixture(scope="module")
def fitted(planted):
    from sparkae import AnomalyDetector

    _, df = planted
    # two members, each retrained on its inliers: the ensemble and retraining paths
    return AnomalyDetector(features_cols=COLS, contamination=0.05,
                           **dict(FAST, n_estimators=2, inlier_quantile=0.9,
                                  n_clusters=4)).fit(df)


def _scores(model, df):
    pdf = model.transform(df).select("id", "label", "anomaly_score", "is_anomaly") \
        .toPandas().sort_values("id")
    return pdf


def test_planted_anomalies_score_higher(planted, fitted):
    from sklearn.metrics import roc_auc_score

    pdf = _scores(fitted, planted[1])
    assert pdf["anomaly_score"].dtype == np.float64
    assert roc_auc_score(pdf["label"], pdf["anomaly_score"]) > 0.95
    top = pdf.nlargest(9, "anomaly_score")
    assert top["label"].sum() >= 6


def test_contamination_share_flagged(planted, fitted):
    pdf = _scores(fitted, planted[1])
    assert pdf["is_anomaly"].dtype == bool
    assert abs(pdf["is_anomaly"].mean() - 0.05) <= 0.02
    assert fitted.threshold == pytest.approx(np.quantile(pdf["anomaly_score"], 0.95), rel=0.2,
                                             abs=0.2)


def test_save_load_same_scores(planted, fitted, tmp_path):
    from sparkae import AnomalyDetectorModel

    path = str(tmp_path / "det")
    fitted.save(path)
    loaded = AnomalyDetectorModel.load(path)
    assert loaded.uid == fitted.uid and loaded.threshold == fitted.threshold
    assert loaded.getOrDefault("contamination") == 0.05
    a, b = _scores(fitted, planted[1]), _scores(loaded, planted[1])
    np.testing.assert_allclose(a["anomaly_score"].values, b["anomaly_score"].values,
                               rtol=1e-6, atol=1e-9)
    assert (a["is_anomaly"].values == b["is_anomaly"].values).all()
    with pytest.raises(FileExistsError, match="already exists.*overwrite"):
        fitted.save(path)
    fitted.write().overwrite().save(path)


def test_optional_outputs(planted, fitted):
    out = fitted.transform(planted[1], {fitted.outputs: ["anomaly_score", "feature_errors",
                                                         "deep_features"]})
    assert "is_anomaly" not in out.columns
    row = out.orderBy("anomaly_score", ascending=False).first()
    assert len(row["feature_errors"]) == len(COLS)
    assert min(row["feature_errors"]) >= 0
    assert len(row["deep_features"]) >= 2
    # each member's per-feature errors over its error scale, averaged over members and
    # divided by the width, worked by hand for that row
    one = planted[1].where(f"id = {row['id']}")
    k = len(fitted.members)
    want = sum(np.array(m.transform(one, {m.outputs: ["feature_errors"]})
                        .first()["feature_errors"]) / (k * st["error_scale"])
               for m, st in zip(fitted.members, fitted._stats)) / len(COLS)
    assert np.allclose(row["feature_errors"], want, rtol=1e-6)
    with pytest.raises(ValueError, match="already has column.*anomaly_score"):
        fitted.transform(out)


def test_pipeline_fit_save_load(spark, planted, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler

    from sparkae import AnomalyDetector

    _, df = planted
    pipe = Pipeline(stages=[
        VectorAssembler(inputCols=COLS, outputCol="vec"),
        AnomalyDetector(features_col="vec", contamination=0.1,
                        **FAST)])
    model = pipe.fit(df)
    path = str(tmp_path / "pipe")
    model.save(path)
    loaded = PipelineModel.load(path)
    a = model.transform(df).select("id", "anomaly_score").toPandas().sort_values("id")
    b = loaded.transform(df).select("id", "anomaly_score").toPandas().sort_values("id")
    np.testing.assert_allclose(a["anomaly_score"].values, b["anomaly_score"].values,
                               rtol=1e-6, atol=1e-9)
    pipe.write().overwrite().save(str(tmp_path / "estimator"))
    again = Pipeline.load(str(tmp_path / "estimator"))
    assert again.getStages()[1].getOrDefault("contamination") == 0.1


def test_strings_and_nulls(spark):
    """A string column is one-hot encoded (a null string, or a level unseen in training, is
    all zeros); a null number becomes its training mean; every row gets a score."""
    from sparkae import AnomalyDetector

    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        x = float(rng.normal())
        rows.append((i, None if i % 10 == 0 else x, 2 * x + float(rng.normal(0, 0.1)),
                     None if i % 15 == 0 else ("a" if x > 0 else "b")))
    rows.append((999, 5.0, -10.0, "c"))
    df = spark.createDataFrame(rows, "id long, x double, y double, s string")
    model = AnomalyDetector(features_cols=["x", "y", "s"], contamination=0.05,
                            **FAST).fit(df)
    pdf = model.transform(df).toPandas()
    assert pdf["anomaly_score"].notna().all()
    assert pdf.loc[pdf["id"] == 999, "anomaly_score"].item() == pdf["anomaly_score"].max()
    unseen = spark.createDataFrame([(1000, 0.1, 0.2, "zzz")], "id long, x double, y double, "
                                   "s string")
    assert model.transform(unseen).first()["anomaly_score"] is not None


@pytest.mark.parametrize("kwargs, match", [
    ({"contamination": 0.0}, r"contamination: got 0.0, expected a number in \(0, 0.5\]"),
    ({"contamination": 0.6}, r"contamination: got 0.6, expected a number in \(0, 0.5\]"),
    ({"contamination": "5%"}, r"contamination: got '5%'"),
    ({"n_estimators": 0}, r"n_estimators: got 0, expected an integer >= 1"),
    ({"max_samples": 1}, r"max_samples: got 1, expected an integer >= 2 or a share"),
    ({"max_samples": 1.5}, r"max_samples: got 1.5"),
    ({"inlier_quantile": 0.2}, r"inlier_quantile: got 0.2, expected None or a number in "
                               r"\[0.5, 1\)"),
    ({"lr": -1.0}, r"lr: got -1.0, expected a finite number > 0"),
    ({"outputs": ["score"]}, r"outputs: got \['score'\], expected a non-empty list of "
                             r"'anomaly_score'"),
    ({"features_cols": []}, r"features_cols: got \[\], expected None or a non-empty list"),
    ({"seed": -1}, r"seed: got -1, expected an integer in \[0, 2\*\*31\)"),
    ({"n_clusters": -1}, r"n_clusters: got -1, expected 'auto' or an integer >= 0"),
    ({"n_clusters": 2.5}, r"n_clusters: got 2.5, expected 'auto' or an integer >= 0"),
    ({"n_clusters": "many"}, r"n_clusters: got 'many', expected 'auto' or an integer >= 0"),
])
def test_bad_params_rejected(kwargs, match):
    from sparkae import AnomalyDetector

    with pytest.raises(ValueError, match=match):
        AnomalyDetector(**kwargs)


def test_unknown_param_and_missing_column(planted):
    from sparkae import AnomalyDetector

    with pytest.raises(TypeError, match="unknown Param 'contamnation'.*did you mean "
                                        "'contamination'"):
        AnomalyDetector(contamnation=0.1)
    with pytest.raises(ValueError, match="features_cols: column\\(s\\) 'nope' not found"):
        AnomalyDetector(features_cols=["c0", "nope"]).fit(planted[1])
    det = AnomalyDetector(features_cols=COLS)
    det._set(contamination=2.0)        # bypassing the constructor: fit checks again
    with pytest.raises(ValueError, match="contamination: got 2.0"):
        det.fit(planted[1])


def test_member_architectures_vary_and_are_seeded():
    from sparkae.anomaly.detector import member_architectures, member_epochs

    a = member_architectures(30, 5, seed=0)
    assert a == member_architectures(30, 5, seed=0)
    assert len({tuple(h) for h in a}) > 1
    assert all(2 <= min(h) and max(h) <= 256 for h in a)
    assert member_epochs(1000, 10, 500, 64) == 32       # 16 steps an epoch
    assert member_epochs(1_000_000, 10, 500, 64) == 10
    assert member_epochs(10, 10, 10_000, 64) == 200


def test_code_centres_term(planted, fitted):
    """Each member keeps k-means centres of its standardised codings (at most n_clusters,
    here 4, each as wide as the codings) and the score uses them; a model saved before
    the k-means term (stats without centres) or fitted with n_clusters=0 still scores,
    with two terms."""
    from sparkae.anomaly.detector import CODE_CLUSTERS
    from sparkae.anomaly.model import AnomalyDetectorModel

    _, df = planted
    assert fitted.getOrDefault("n_clusters") == 4 and CODE_CLUSTERS == "auto"
    for member, st in zip(fitted.members, fitted._stats):
        width = len(member.transform(df, {member.outputs: ["deep_features"]})
                    .first()["deep_features"])
        assert 1 <= len(st["centres"]) <= 4
        assert all(len(c) == width for c in st["centres"])
        assert st["centre_scale"] > 0
    old_stats = [{k: v for k, v in st.items() if not k.startswith("centre")}
                 for st in fitted._stats]
    old = AnomalyDetectorModel._create(fitted.members, old_stats, fitted.threshold,
                                       fitted._width)
    a, b = _scores(fitted, df), _scores(old, df)
    assert b["anomaly_score"].notna().all()
    assert np.abs(a["anomaly_score"].values - b["anomaly_score"].values).max() > 1e-6


def test_wide_sparse_input_trains_with_sampled_reconstruction(spark, tmp_path):
    """On sparse vectors of WIDE_SPARSE or more features (the scale run's clustered layout:
    topics of co-occurring columns, anomalies mixing two topics) each member trains with
    reconstruction sampling and scores with the exact error; the default n_clusters="auto"
    puts the planted anomalies on top (10 centres put them below chance on this layout)."""
    from sklearn.metrics import roc_auc_score

    from sparkae import AnomalyDetector
    from sparkae.anomaly.datasets import read_sparse_parquet, write_sparse_parquet
    from sparkae.anomaly.detector import SAMPLED_COLUMNS, WIDE_SPARSE

    path = write_sparse_parquet(str(tmp_path / "wide"), 2000, WIDE_SPARSE, seed=7,
                                topics=10, share=0.02)
    df = read_sparse_parquet(spark, path)
    model = AnomalyDetector(n_estimators=2, epoch_num=2, min_steps=200, seed=1).fit(df)
    assert [m.getOrDefault("reconstruction_sampling") for m in model.members] == \
        [SAMPLED_COLUMNS] * 2
    assert model.fit_info["architectures"] and model._stats[0]["centres"]
    assert len(model._stats[0]["centres"]) == 32            # auto: sqrt(2000 / 2)
    pdf = model.transform(df).select("label", "anomaly_score").toPandas()
    assert pdf["anomaly_score"].notna().all()
    assert roc_auc_score(pdf["label"], pdf["anomaly_score"]) > 0.8
