"""sparkae.anomaly.stats: a member's training statistics in NumPy, and their agreement with
the column expressions that apply them at scoring time (sparkae.anomaly.model)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
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


class _Member:
    """A member's scores given as they are (a stub of the network's forward pass: the
    test targets how the ensemble combines them)."""

    def __init__(self, errors, codes, feature_errors=None):
        self.errors, self.codes, self.fe = errors, codes, feature_errors

    def __call__(self, col):
        names, arrays = ["reconstruction_mse", "deep_features"], [
            pa.array(self.errors, pa.float64()), pa.array(self.codes, pa.list_(pa.float32()))]
        if self.fe is not None:
            names.append("feature_errors")
            arrays.append(pa.array(self.fe, pa.list_(pa.float32())))
        return names, arrays


def test_the_ensemble_gives_each_rows_score_by_hand():
    """The ensemble's score in the worker (members' terms averaged) against the formula
    worked by hand; a row that any member scores null scores null, and so do its
    is_anomaly and feature_errors; feature_errors are the members' weighted errors over
    the width; deep_features are the first member's."""
    from sparkae.anomaly.ensemble import EnsembleScorer

    rng = np.random.default_rng(2)
    codes = np.concatenate([rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + 4.0])
    errors = rng.gamma(2.0, size=120)
    st = stats.member_stats(errors, codes, clusters=4, seed=3)
    assert len(st["centres"]) == 4 and all(len(c) == 3 for c in st["centres"])
    assert st["error_median"] == pytest.approx(np.median(errors))
    codes32 = codes.astype(np.float32).astype(np.float64)     # codings travel as float32
    z = (codes32 - np.array(st["code_mean"])) / np.array(st["code_sd"])
    near = np.array([min(((r - np.array(c)) ** 2).sum() for c in st["centres"]) for r in z])
    want = ((errors - st["error_median"]) / st["error_scale"]
            + ((z ** 2).mean(1) - st["distance_median"]) / st["distance_scale"]
            + (near - st["centre_median"]) / st["centre_scale"])
    fe = rng.random((122, 5)).astype(np.float32)
    e1 = [float(v) for v in errors] + [None, 1.0]
    c1 = [list(map(float, c)) for c in codes] + [[0.0, 0.0, 0.0], None]
    e2 = [float(v) for v in errors] + [1.0, 1.0]               # member 2: same terms
    c2 = [list(map(float, c)) for c in codes] + [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    outputs = ("anomaly_score", "is_anomaly", "feature_errors", "deep_features")
    threshold = float(np.median(want))
    job = EnsembleScorer((_Member(e1, c1, fe.tolist()), _Member(e2, c2, (2 * fe).tolist())),
                         (st, st), outputs, threshold, (0.5, 0.25), ())
    names, arrays = job(pa.array(range(122)))
    got = dict(zip(names, arrays))
    assert names == list(outputs)
    score = got["anomaly_score"].to_numpy(zero_copy_only=False)
    assert np.allclose(score[:120], want, rtol=1e-6, atol=1e-6)
    assert got["anomaly_score"].is_null().to_pylist()[118:] == [False, False, True, True]
    assert got["is_anomaly"].to_pylist()[:120] == [bool(v > threshold) for v in score[:120]]
    assert got["is_anomaly"].to_pylist()[120:] == [None, None]
    fe_got = got["feature_errors"].to_pylist()
    assert fe_got[120:] == [None, None]
    hand = (0.5 * fe[:120].astype(np.float64) + 0.25 * 2 * fe[:120].astype(np.float64)) / 5
    assert np.allclose(np.array(fe_got[:120]), hand, rtol=1e-6)
    assert got["deep_features"].to_pylist()[121] is None
    assert np.allclose(np.array(got["deep_features"].to_pylist()[:120]), codes, atol=1e-6)


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
