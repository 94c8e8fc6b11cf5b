"""sparkae.anomaly.stats: a member's training statistics in NumPy, and their agreement with
the column expressions that apply them at scoring time (sparkae.anomaly.model)."""

from __future__ import annotations

import numpy as np
import pytest

from sparkae.anomaly import stats


def test_moments_match_numpy_and_constant_units_get_one():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(50, 3))
    codes[:, 2] = 0.25                                   # a constant unit
    mean, sd = stats.moments(codes)
    assert mean == pytest.approx(codes.mean(0).tolist())
    assert sd[:2] == pytest.approx(codes[:, :2].std(0, ddof=1).tolist())
    assert sd[2] == 1.0
    z = stats.standardize(codes, mean, sd)
    assert np.allclose(z[:, :2].mean(0), 0) and np.allclose(z[:, :2].std(0, ddof=1), 1)
    assert stats.code_distance(codes, mean, sd) == pytest.approx((z ** 2).mean(1))


def test_kmeans_finds_separated_clusters_and_is_seeded():
    rng = np.random.default_rng(1)
    truth = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = np.concatenate([t + 0.1 * rng.normal(size=(40, 2)) for t in truth])
    centres = np.array(stats.kmeans(z, 3, seed=7))
    assert centres.shape == (3, 2)
    for t in truth:
        assert np.sqrt(((centres - t) ** 2).sum(1)).min() < 0.1
    assert stats.kmeans(z, 3, seed=7) == stats.kmeans(z, 3, seed=7)
    near = stats.centre_distance(z, centres.tolist())
    assert near.shape == (120,) and near.max() < 0.2
    assert stats.centre_distance(np.array([[5.0, 0.0]]), centres.tolist())[0] \
        == pytest.approx(25.0, abs=0.5)


def test_kmeans_with_fewer_distinct_rows_than_centres():
    z = np.array([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])
    assert sorted(stats.kmeans(z, 10, seed=0)) == [[1.0, 2.0], [3.0, 4.0]]


def test_robust_median_and_scale_with_fallbacks():
    med, scale = stats.robust(np.arange(101, dtype=float))
    assert med == 50.0 and scale == pytest.approx(50.0 / 1.349)
    values = np.array([1.0] * 20 + [5.0])                 # IQR 0: the standard deviation
    assert stats.robust(values) == (1.0, pytest.approx(np.std(values, ddof=1)))
    assert stats.robust(np.ones(10)) == (1.0, 1.0)        # no spread at all: 1


def test_the_scoring_udf_gives_each_rows_term_by_hand(spark):
    """A member's part of anomaly_score as Spark computes it (the pandas UDF over the
    member's reconstruction_mse and codings) against the formula worked by hand; a row
    with a null input scores null."""
    from sparkae.anomaly.model import member_term_udf

    rng = np.random.default_rng(2)
    codes = np.concatenate([rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + 4.0])
    errors = rng.gamma(2.0, size=120)
    st = stats.member_stats(errors, codes, clusters=4, seed=3)
    assert len(st["centres"]) == 4 and all(len(c) == 3 for c in st["centres"])
    assert st["error_median"] == pytest.approx(np.median(errors))
    rows = [(i, float(e), [float(v) for v in c]) for i, (e, c) in enumerate(zip(errors, codes))]
    df = spark.createDataFrame(rows + [(120, None, [0.0, 0.0, 0.0]), (121, 1.0, None)],
                               "id int, e double, codes array<double>")
    got = (df.select("id", member_term_udf(st)("e", "codes").alias("t")).toPandas()
           .sort_values("id")["t"].to_numpy())
    z = (codes - np.array(st["code_mean"])) / np.array(st["code_sd"])
    near = np.array([min(((r - np.array(c)) ** 2).sum() for c in st["centres"]) for r in z])
    want = ((errors - st["error_median"]) / st["error_scale"]
            + ((z ** 2).mean(1) - st["distance_median"]) / st["distance_scale"]
            + (near - st["centre_median"]) / st["centre_scale"])
    assert np.allclose(got[:120], want, rtol=1e-9, atol=1e-9)
    assert np.median(near) == pytest.approx(st["centre_median"], rel=1e-9)
    assert np.isnan(got[120]) and np.isnan(got[121])
    nulls = df.select(member_term_udf(st)("e", "codes").alias("t")).where("t is null").count()
    assert nulls == 2


def test_member_stats_without_clusters_has_no_centre_term():
    rng = np.random.default_rng(4)
    st = stats.member_stats(rng.gamma(2.0, size=40), rng.normal(size=(40, 2)), clusters=0,
                            seed=0)
    assert not [k for k in st if k.startswith("centre")]
    assert st["distance_scale"] > 0 and st["error_scale"] > 0


def test_auto_centres_follow_sqrt_half_the_rows_within_bounds():
    assert [stats.auto_centres(n) for n in (2, 8, 200, 1800, 20_000, 10**6)] == \
        [2, 2, 10, 30, 100, 100]


def test_member_stats_with_auto_centres_recovers_many_groups():
    """n_clusters="auto" on 2,000 rows fits 32 centres: 20 tight groups each keep a centre
    nearby, so every row lies close to one, and a row between two groups scores farther
    from every centre than the groups' rows (with 10 centres it would not: half the
    groups would share a centre)."""
    rng = np.random.default_rng(0)
    means = rng.normal(scale=10.0, size=(20, 3))
    group = rng.integers(0, 20, size=2000)
    codes = means[group] + rng.normal(scale=0.3, size=(2000, 3))
    st = stats.member_stats(rng.gamma(2.0, size=2000), codes, clusters="auto", seed=1)
    assert len(st["centres"]) == stats.auto_centres(2000) == 32
    z = stats.standardize(codes, st["code_mean"], st["code_sd"])
    inlier = stats.centre_distance(z, st["centres"])
    between = (means[0] + means[1]) / 2
    zb = stats.standardize(between[None, :], st["code_mean"], st["code_sd"])
    assert stats.centre_distance(zb, st["centres"])[0] > np.quantile(inlier, 0.99)
    ten = stats.member_stats(rng.gamma(2.0, size=2000), codes, clusters=10, seed=1)
    assert np.quantile(stats.centre_distance(z, ten["centres"]), 0.5) > \
        np.quantile(inlier, 0.5) * 5
