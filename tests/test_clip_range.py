"""``clip_to_training_range``: scaled inputs clamped into the scaled training range at
scoring time, for dense vectors, arrays, features_cols and sparse vectors (CSR rows stay
sparse), the same numbers as a hand computation; off by default and then unchanged; a
scoring-time Param that is saved with the model; the score job's override; bad values."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from pyspark.ml.linalg import Vectors

from sparkae import Autoencoder, AutoencoderModel, scoring
from sparkae.data import arrow_rows
from sparkae.jobs import score_job, score_settings, train_settings
from sparkae.nn import sparse as csr
from sparkae.nn.models import build_network
from sparkae.nn.scaling import FeatureStats, compute_scaling
from sparkae.pyfunc import AutoencoderPyfunc
from sparkae.tracking import ARTIFACT
from sparkae.scoring.forward import Scorer

ALL = ["deep_features", "reconstruction_mse", "feature_errors", "reconstruction", "is_anomaly"]
THRESHOLD = 0.05
MODES = ["h2o", "minmax", "zscore", "none"]


def hand(net, x, clip, layer, threshold=THRESHOLD):
    """The rows through ``net`` longhand: NumPy scaling (and clamp), then the model's own
    forward on the scaled rows."""
    sc = net.scaler
    keep, shift, scale = sc.keep.numpy(), sc.shift.numpy(), sc.scale.numpy()
    z = (np.asarray(x, dtype=np.float32)[:, keep] - shift) * scale
    if clip:
        z = np.clip(z, sc.lo.numpy(), sc.hi.numpy())
    with torch.no_grad():
        zt = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        acts = net.hidden_activations(zt)
        y = net.decode_from_last(acts[-1])
        err = (y - zt) ** 2
        mse = err.mean(dim=1).double().numpy()
    return {"deep_features": acts[layer - 1].numpy(), "reconstruction_mse": mse,
            "feature_errors": err.numpy(), "reconstruction": sc.unscale(y).numpy(),
            "is_anomaly": mse > threshold}


def assert_close(got, ref, outputs=ALL):
    for o in outputs:
        if o == "is_anomaly":
            np.testing.assert_array_equal(got[o], ref[o])
        else:
            np.testing.assert_allclose(got[o], ref[o], rtol=1e-5, atol=1e-5, err_msg=o)


def collect(scored, outputs=ALL):
    pdf = scored.toPandas().sort_values("id")
    return {o: (pdf[o].to_numpy().astype(type(pdf[o].iloc[0]))
                if o in ("reconstruction_mse", "is_anomaly") else np.stack(pdf[o].to_numpy()))
            for o in outputs}


def block_of(x):
    """A RowBlock of ``x``'s non-zero entries (the sparse components of vector input)."""
    r, c = np.nonzero(x)
    return arrow_rows.RowBlock(status=np.zeros(len(x), np.int8), size=x.shape[1],
                               lengths=np.bincount(r, minlength=len(x)),
                               cols=c.astype(np.int64), vals=x[r, c].astype(np.float32))


# -- the scaler's range and the CSR rows (no Spark) ------------------------------------------

def training_rows(n=300, size=120, seed=3):
    """Sparse, non-negative training rows: feature 0 is stored in every row (range [1, 2],
    so 0 is outside it), features 1..3 are constant zero, the others hold an entry with
    probability 0.02 and span [0, 1.5] (0 from the rows that leave them out)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, (n, size)) * (rng.random((n, size)) < 0.02)
    x[:, 0] = rng.uniform(1.0, 2.0, n)
    x[:2, 0] = [1.0, 2.0]
    j = np.arange(4, size)
    x[j % n, j], x[(j + 7) % n, j] = 0.5, 1.5
    x[:, 1:4] = 0.0
    return x


def net_for(x, mode, seed=0):
    """A dense network whose scaler holds the statistics of ``x`` scaled by ``mode``."""
    stats = FeatureStats(count=len(x), mean=x.mean(0), std=x.std(0, ddof=1), min=x.min(0),
                         max=x.max(0))
    scaling = compute_scaling(stats, mode, ignore_const_cols=True)
    torch.manual_seed(seed)
    net = build_network({"input_size": x.shape[1], "kept": len(scaling.keep),
                         "hidden": [7, 3, 7], "activation": "tanh"})
    net.scaler.set_statistics(**scaling.tensors())
    return net.eval()


@pytest.mark.parametrize("mode", MODES)
def test_lo_hi_are_the_scaled_training_range_and_hold_every_training_row(mode):
    x = training_rows()
    net = net_for(x, mode)
    sc = net.scaler
    keep = sc.keep.numpy()
    assert keep.tolist() == [0] + list(range(4, x.shape[1]))      # constant 1..3 left out
    z = sc(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(sc.lo.numpy(), z.min(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sc.hi.numpy(), z.max(0), rtol=1e-5, atol=1e-6)
    # training rows are inside the range: clipping moves them by rounding at most
    np.testing.assert_allclose(sc.clip(torch.from_numpy(z)).numpy(), z, rtol=0, atol=1e-6)
    # an implicit zero scales to -c: inside [lo, hi] except for feature 0 (min 1 > 0)
    zero = -csr.offset(sc).numpy()
    inside = (zero >= sc.lo.numpy() - 1e-6) & (zero <= sc.hi.numpy() + 1e-6)
    assert not inside[0] and inside[1:].all()
    z0 = csr.clipped_zero(sc).numpy()
    assert z0[0] == pytest.approx(float(sc.lo[0])) and np.allclose(z0[1:], zero[1:], atol=1e-6)


def scoring_rows(size=120, seed=5):
    """40 rows of 3 entries: the first 20 inside the training range, the last 20 with a
    value 8 times the training maximum; feature 0 left out (an implicit zero, outside its
    range) in every third row."""
    rng = np.random.default_rng(seed)
    x = np.zeros((40, size))
    for i in range(40):
        cols = rng.choice(np.arange(4, size), 2, replace=False)
        x[i, cols] = rng.uniform(0.5, 1.5, 2)
        if i % 3:
            x[i, 0] = rng.uniform(1.0, 2.0)
        if i >= 20:
            x[i, cols[0]] = 12.0
    return x.astype(np.float32)


@pytest.mark.parametrize("mode", MODES)
def test_csr_rows_clip_like_the_dense_rows_and_the_hand_computation(mode):
    net = net_for(training_rows(), mode)
    x = scoring_rows()
    scorer = Scorer(net, torch.device("cpu"))
    block = block_of(x)
    assert block.nnz < scoring.SPARSE_DENSITY * block.rows * scorer.kept    # the CSR path
    ref = hand(net, x, True, 2)
    for batch in (7, 64):
        assert_close(scorer.score(block, ALL, 2, THRESHOLD, batch, clip=True), ref)
        dense = arrow_rows.RowBlock(status=block.status, size=x.shape[1], dense=x)
        assert_close(scorer.score(dense, ALL, 2, THRESHOLD, batch, clip=True), ref)
    assert_close(scoring.score_matrix(net, x, ALL, 2, THRESHOLD, clip=True), ref)
    # deep_features alone (the pass that stops at the coding layer) is clipped as well
    only = scorer.score(block, ["deep_features"], 2, None, 16, clip=True)
    np.testing.assert_allclose(only["deep_features"], ref["deep_features"], atol=1e-5)
    # off: the unclamped numbers, exactly what the default argument gives
    off = scorer.score(block, ALL, 2, THRESHOLD, 64, clip=False)
    for o, v in scorer.score(block, ALL, 2, THRESHOLD, 64).items():
        np.testing.assert_array_equal(v, off[o])
    assert_close(off, hand(net, x, False, 2))
    # the rows outside the range get smaller errors; rows inside change only where the
    # implicit zero of feature 0 is clamped (mode "none" scales nothing: same story)
    clipped, plain = ref["reconstruction_mse"], off["reconstruction_mse"]
    assert (clipped[20:] < plain[20:]).all()
    kept0 = x[:20, 0] != 0
    np.testing.assert_allclose(clipped[:20][kept0], plain[:20][kept0], rtol=1e-5, atol=1e-7)


def test_dense_default_is_the_unclamped_forward_bit_for_bit():
    net = net_for(training_rows(), "h2o")
    x = scoring_rows()
    ref = hand(net, x, False, 2)
    dense = arrow_rows.RowBlock(status=np.zeros(len(x), np.int8), size=x.shape[1], dense=x)
    got = Scorer(net, torch.device("cpu")).score(dense, ALL, 2, THRESHOLD, 1024)
    for o in ALL:   # the same operations on the same tensors as before the option existed
        np.testing.assert_array_equal(got[o], ref[o], err_msg=o)


def test_the_scaler_refuses_to_clip_a_csr_batch():
    net = net_for(training_rows(), "h2o")
    s = net.scaler(torch.from_numpy(scoring_rows()).to_sparse_csr())
    with pytest.raises(ValueError, match="a CSR batch is clipped with sparkae.nn.sparse"):
        net.scaler.clip(s)


# -- through Spark: dense vectors, arrays, features_cols --------------------------------------

@pytest.fixture(scope="module")
def scoring_df(small_dense):
    """The fixture's first 20 rows as they are, then 20 with feature 0 far outside its
    training range (4 x the largest magnitude), as vectors, arrays and columns."""
    x, df = small_dense
    out = x[:20].copy()
    out[:, 0] = 4 * np.abs(x[:, 0]).max()
    rows = np.vstack([x[:20], out])
    spark = df.sparkSession
    data = [(i, Vectors.dense(r), [float(v) for v in r], *map(float, r))
            for i, r in enumerate(rows)]
    cols = ["id", "vec", "arr"] + [f"c{j}" for j in range(12)]
    return rows, spark.createDataFrame(data, cols)


INPUTS = {"vec": {"features_col": "vec"}, "arr": {"features_col": "arr"},
          "cols": {"features_cols": [f"c{j}" for j in range(12)]}}


@pytest.fixture(scope="module", params=list(INPUTS))
def fitted(request, small_dense):
    x, df = small_dense
    model = Autoencoder(**INPUTS[request.param], hidden=[8, 3, 8], epochs=2, mini_batch_size=32,
                        seed=5, anomaly_threshold=THRESHOLD, outputs=ALL).fit(df)
    return request.param, model


def test_spark_scores_equal_the_hand_computation(fitted, scoring_df):
    kind, model = fitted
    rows, df = scoring_df
    assert model.getOrDefault(model.clip_to_training_range) is False
    net = model.network()
    on = collect(model.transform(df, {model.clip_to_training_range: True}))
    assert_close(on, hand(net, rows, True, 2))
    off = collect(model.transform(df))
    assert_close(off, hand(net, rows, False, 2))
    explicit = collect(model.copy({model.clip_to_training_range: False}).transform(df))
    for o in ALL:
        np.testing.assert_array_equal(explicit[o], off[o], err_msg=o)
    # rows far outside the range: smaller errors; rows inside it: the same
    assert (on["reconstruction_mse"][20:] < off["reconstruction_mse"][20:]).all()
    np.testing.assert_allclose(on["reconstruction_mse"][:20], off["reconstruction_mse"][:20],
                               rtol=1e-5, atol=1e-7)
    # the score() argument overrides the Param both ways
    copy = model.copy({model.clip_to_training_range: True})
    by_arg = collect(copy.score(df, ["reconstruction_mse"], clip=False), ["reconstruction_mse"])
    np.testing.assert_array_equal(by_arg["reconstruction_mse"], off["reconstruction_mse"])


def test_the_param_is_saved_and_loaded_and_set_at_fit(small_dense, scoring_df, tmp_path):
    x, df = small_dense
    rows, sdf = scoring_df
    model = Autoencoder(features_col="vec", hidden=[6], epochs=1, seed=3,
                        clip_to_training_range=True).fit(df)
    assert model.getOrDefault(model.clip_to_training_range) is True
    model.save(str(tmp_path / "on"))
    model.copy({model.clip_to_training_range: False}).save(str(tmp_path / "off"))
    on, off = (AutoencoderModel.load(str(tmp_path / n)) for n in ("on", "off"))
    assert on.getOrDefault(on.clip_to_training_range) is True
    assert off.getOrDefault(off.clip_to_training_range) is False
    net = model.network()
    got = collect(on.transform(sdf), ["reconstruction_mse"])["reconstruction_mse"]
    np.testing.assert_allclose(got, hand(net, rows, True, 1)["reconstruction_mse"],
                               rtol=1e-5, atol=1e-7)
    got = collect(off.transform(sdf), ["reconstruction_mse"])["reconstruction_mse"]
    np.testing.assert_allclose(got, hand(net, rows, False, 1)["reconstruction_mse"],
                               rtol=1e-5, atol=1e-7)
    # the MLflow pyfunc model of a saved directory scores as the model does
    pdf = sdf.toPandas().sort_values("id")
    for name, clip in (("on", True), ("off", False)):
        pyfunc = AutoencoderPyfunc()
        pyfunc.load_context(types.SimpleNamespace(artifacts={ARTIFACT: str(tmp_path / name)}))
        got = pyfunc.predict(None, pdf).reconstruction_mse.to_numpy()
        np.testing.assert_allclose(got, hand(net, rows, clip, 1)["reconstruction_mse"],
                                   rtol=1e-5, atol=1e-7, err_msg=name)


def test_non_bool_values_are_rejected(small_dense, scoring_df):
    x, df = small_dense
    rows, sdf = scoring_df
    pattern = r'param "clip_to_training_range".*requires value of type bool. Found <class'
    with pytest.raises(TypeError, match=pattern):
        Autoencoder(clip_to_training_range="yes")
    model = Autoencoder(features_col="vec", hidden=[4], epochs=1, seed=1).fit(df)
    with pytest.raises(TypeError, match=pattern):
        model.copy({model.clip_to_training_range: 1})
    with pytest.raises(TypeError, match=pattern):
        model.transform(sdf, {model.clip_to_training_range: "true"})
    none = "Autoencoder param 'clip_to_training_range': got None, expected True or False"
    with pytest.raises(ValueError, match=none):
        Autoencoder(features_col="vec", clip_to_training_range=None).fit(df)
    with pytest.raises(ValueError, match=none):
        model.copy({model.clip_to_training_range: None}).transform(sdf)
    with pytest.raises(ValueError, match="got 'on', expected True or False"):
        model.score(sdf, ["reconstruction_mse"], clip="on")


# -- sparse vectors through Spark ------------------------------------------------------------

def test_sparse_vectors_clip_like_dense_vectors(spark):
    x = training_rows()
    train = spark.createDataFrame([(i, Vectors.sparse(x.shape[1], {int(j): float(r[j])
                                                                   for j in np.flatnonzero(r)}))
                                   for i, r in enumerate(x)], ["id", "features"])
    model = Autoencoder(hidden=[7, 3, 7], epochs=2, mini_batch_size=32, seed=4,
                        outputs=ALL, anomaly_threshold=THRESHOLD).fit(train)
    sc = model.network().scaler
    # the range comes from every row, implicit zeros included (Spark's Summarizer)
    keep = sc.keep.numpy()
    assert keep.tolist() == [0] + list(range(4, x.shape[1]))
    scale, shift = sc.scale.numpy().astype(np.float64), sc.shift.numpy().astype(np.float64)
    np.testing.assert_allclose(sc.lo.numpy(), (x.min(0)[keep] - shift) * scale, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(sc.hi.numpy(), (x.max(0)[keep] - shift) * scale, rtol=1e-5,
                               atol=1e-6)
    rows = scoring_rows()
    sparse_df = spark.createDataFrame(
        [(i, Vectors.sparse(rows.shape[1], {int(j): float(r[j]) for j in np.flatnonzero(r)}))
         for i, r in enumerate(rows)], ["id", "features"])
    dense_df = spark.createDataFrame([(i, Vectors.dense(r.astype(np.float64)))
                                      for i, r in enumerate(rows)], ["id", "features"])
    clipped = model.copy({model.clip_to_training_range: True})
    ref = hand(model.network(), rows, True, 2)
    got_sparse = collect(clipped.transform(sparse_df))
    got_dense = collect(clipped.transform(dense_df))
    assert_close(got_sparse, ref)
    assert_close(got_dense, ref)
    assert_close(got_sparse, got_dense)
    off = collect(model.transform(sparse_df))
    assert_close(off, hand(model.network(), rows, False, 2))
    assert (got_sparse["reconstruction_mse"][20:] < off["reconstruction_mse"][20:]).all()


# -- the jobs ----------------------------------------------------------------------------------

def test_train_settings_take_the_param():
    s = train_settings.load(None, ["model.clip_to_training_range=true"])
    assert s["model"]["clip_to_training_range"] is True
    assert train_settings.load(None)["model"]["clip_to_training_range"] is False
    with pytest.raises(ValueError, match='model: .*param "clip_to_training_range".*type bool'):
        train_settings.load(None, ["model.clip_to_training_range=maybe"])


def test_score_job_overrides_the_models_setting(spark, small_dense, scoring_df, tmp_path):
    x, df = small_dense
    rows, sdf = scoring_df
    model = Autoencoder(features_col="vec", hidden=[5], epochs=1, seed=2).fit(df)
    model.save(str(tmp_path / "model"))
    sdf.select("id", "vec").write.parquet(str(tmp_path / "input"))
    net = model.network()

    def run(out, *sets):
        flags = {"model": str(tmp_path / "model"), "input": str(tmp_path / "input"),
                 "output": str(tmp_path / out), "id_cols": "id", "run_date": "2024-01-01",
                 "outputs": "reconstruction_mse"}
        summary = score_job.run_score(spark, score_settings.load(None, sets, flags))
        got = spark.read.parquet(str(tmp_path / out)).toPandas().sort_values("id")
        return summary, got.reconstruction_mse.to_numpy()

    summary, got = run("plain")
    assert summary["clip_to_training_range"] is False
    np.testing.assert_allclose(got, hand(net, rows, False, 1)["reconstruction_mse"],
                               rtol=1e-5, atol=1e-7)
    summary, got = run("clipped", "scoring.clip_to_training_range=true")
    assert summary["clip_to_training_range"] is True
    np.testing.assert_allclose(got, hand(net, rows, True, 1)["reconstruction_mse"],
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="scoring.clip_to_training_range: got 'yes', "
                                         "expected true, false or null"):
        score_settings.load(None, [f"scoring.clip_to_training_range={json.dumps('yes')}"],
                            {"model": "m", "input": "i", "output": "o"})
