"""Families beyond H2O (issue 7): each test proves its family's defining property on the
bundled sample, with real Torch and, where Spark is involved, real 2-rank training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparkae import Autoencoder, AutoencoderModel
from sparkae.datasets import load_mnist_arrays, mnist_sample_paths
from sparkae.nn import wta
from sparkae.nn.families import ConvAutoencoderNet, parameter_count
from sparkae.nn.losses import contractive_closed_form, jacobian_frobenius
from sparkae.nn.models import build_network
from sparkae.nn.scaling import FeatureStats, compute_scaling
from sparkae.validation import validate
from sparkae.train.loop import TrainConfig, train


TWO_RANKS = dict(num_workers=2, num_threads=1, seed=3, stopping_rounds=0)


@pytest.fixture(scope="module")
def sample_arrays():
    """The bundled sample as float32 rows (0-255) and its h2o scaling."""
    x, labels = load_mnist_arrays(*mnist_sample_paths())
    x = x.reshape(len(x), -1).astype(np.float32)
    stats = FeatureStats(len(x), x.mean(0), x.std(0), x.min(0), x.max(0))
    return x, labels, compute_scaling(stats, "h2o", True)


@pytest.fixture(scope="module")
def held_out(mnist_test_paths):
    """1,000 rows of the official MNIST test set (never trained on)."""
    x, _ = load_mnist_arrays(*mnist_test_paths)
    rng = np.random.default_rng(0)
    return x.reshape(len(x), -1)[rng.choice(len(x), 1000, replace=False)].astype(np.float32)


def _net(spec, scaling):
    spec = dict({"input_size": 784, "kept": int(len(scaling.keep)), "activation": "tanh"}, **spec)
    net = build_network(spec)
    net.scaler.set_statistics(**scaling.tensors())
    return net


def _batches(x, size=64, seed=0):
    rng = np.random.default_rng(seed)

    def epoch(e):
        idx = rng.permutation(len(x))
        for i in range(0, len(x), size):
            yield x[idx[i:i + size]]
    return epoch


def _roundtrip(model, df, tmp_path):
    """Save, load, score through transform; return the loaded model and scored pandas."""
    path = str(tmp_path / "model")
    model.write().overwrite().save(path)
    loaded = AutoencoderModel.load(path)
    assert loaded._spec == model._spec
    scored = loaded.transform(df.limit(50)).select("deep_features", "reconstruction_mse")
    pdf = scored.toPandas()
    assert len(pdf) == 50 and np.isfinite(pdf.reconstruction_mse).all()
    assert len(pdf.deep_features[0]) == model._spec["hidden"][loaded.resolve_layer() - 1]
    return loaded, pdf


# -- pure Torch ----------------------------------------------------------------------------

def test_wta_keeps_exactly_the_requested_fraction_per_unit(sample_arrays):
    """Lifetime WTA: each unit is non-zero for exactly round(fraction * batch) rows; spatial
    WTA: each feature map keeps one value, and a map is on for that share of rows."""
    x, _, scaling = sample_arrays
    torch.manual_seed(0)
    net = _net({"hidden": [40], "wta_sparsity": 0.25, "coding_layer": 1}, scaling)
    z = net.scaler(torch.from_numpy(x[:64]))
    net.train()
    h = net(z)[1][0]
    assert ((h != 0).sum(dim=0) == 16).all()                  # 25% of 64 rows, every unit
    net.eval()
    assert ((net(z)[1][0] != 0).sum(dim=0) == 64).all()       # scoring: no mask
    conv = _net({"architecture": "convolutional", "image_shape": [1, 28, 28],
                 "conv_filters": [4, 8], "kernel_size": 3, "wta_sparsity": 0.25,
                 "hidden": None}, scaling)
    conv.train()
    maps = conv.coding_maps(z)                                 # 64 x 8 x 7 x 7
    per_map = (maps != 0).flatten(2).sum(dim=2)
    assert per_map.max() <= 1                                  # spatial: one winner per map
    assert ((per_map != 0).sum(dim=0) == 16).all()            # lifetime: 25% of rows per map
    conv.eval()                                                # scoring: spatial WTA only
    per_map = (conv.coding_maps(z) != 0).flatten(2).sum(dim=2)
    assert per_map.max() <= 1 and (per_map != 0).sum() > 16 * 8
    assert wta.winners(10, 0.25) == 2 and wta.winners(3, 0.1) == 1


def test_contractive_closed_form_equals_autograd(sample_arrays):
    x, _, scaling = sample_arrays
    torch.manual_seed(0)
    net = _net({"hidden": [12]}, scaling)
    z = net.scaler(torch.from_numpy(x[:100]))
    h = net.hidden_activations(z, upto=1)[0]
    closed = contractive_closed_form(h, net.layers[0].weight, "tanh")
    exact = jacobian_frobenius(lambda t: net.hidden_activations(t, upto=1)[-1], z)
    torch.manual_seed(1)
    probed = jacobian_frobenius(lambda t: net.hidden_activations(t, upto=1)[-1], z, probes=64)
    assert torch.allclose(closed, exact, rtol=1e-4)
    assert abs(float(probed) / float(exact) - 1) < 0.15        # unbiased random projections


def test_vae_kl_term_falls_when_it_is_penalized(sample_arrays):
    """Trained without the KL term (kl_beta=0) the posterior drifts far from N(0, I) (a
    large KL); training on with kl_beta=1 makes the reported KL fall (then level off)."""
    x, _, scaling = sample_arrays
    torch.manual_seed(0)
    net = _net({"architecture": "variational", "hidden": [64, 8, 64]}, scaling)
    cfg = dict(architecture="variational", coding_layer=2, stopping_rounds=0, rate=0.003,
               overwrite_with_best_model=False)
    free = train(net, _batches(x[:2000]), TrainConfig(epochs=2, kl_beta=0.0, **cfg))
    held = train(net, _batches(x[:2000]), TrainConfig(epochs=3, kl_beta=1.0, **cfg))
    kls = [free[-1]["kl"]] + [h["kl"] for h in held]
    assert kls[1] < kls[0] and kls[-1] < kls[1] and kls[-1] < 0.5 * kls[0], kls


def test_adversarial_resume_keeps_every_optimizer(sample_arrays):
    """A checkpoint of an adversarial fit holds the discriminator's and the encoder's
    optimizer states, and a resumed fit continues from them."""
    x, _, scaling = sample_arrays
    torch.manual_seed(0)
    spec = {"architecture": "adversarial", "hidden": [16, 2, 16], "prior": "uniform"}
    net = _net(spec, scaling)
    cfg = TrainConfig(epochs=2, architecture="adversarial", coding_layer=2, stopping_rounds=0)
    saved = {}
    train(net, _batches(x[:300]), TrainConfig(**{**cfg.__dict__, "epochs": 1}),
          checkpoint=lambda epoch, state: saved.update(state))
    assert len(saved["family_optimizers"]) == 2 and saved["family_optimizers"][0]["state"]
    again = _net(spec, scaling)
    again.load_state_dict(saved["model"])
    history = train(again, _batches(x[:300]), cfg, resume_state=saved)
    assert [h["epoch"] for h in history] == [1, 2] and "prior_mmd" in history[1]
    codes = again.sample_prior(100)
    assert codes.min() >= -1 and codes.max() <= 1            # the uniform prior


def test_sparse_batches_are_densified_for_the_families(sample_arrays):
    """CSR training batches give the families the same training as dense ones."""
    x, _, scaling = sample_arrays
    spec = {"architecture": "variational", "hidden": [16, 4, 16]}
    cfg = TrainConfig(epochs=1, architecture="variational", coding_layer=2, stopping_rounds=0)
    runs = []
    for to_csr in (False, True):
        torch.manual_seed(0)
        net = _net(spec, scaling)
        dense = _batches(x[:256])
        batches = (lambda e: (torch.from_numpy(b).to_sparse_csr() for b in dense(e))) \
            if to_csr else dense
        torch.manual_seed(1)
        runs.append(train(net, batches, cfg)[0])
    assert runs[0]["train_mse"] == pytest.approx(runs[1]["train_mse"], rel=1e-4)
    assert runs[0]["kl"] == pytest.approx(runs[1]["kl"], rel=1e-4)


def test_convolutional_shapes_round_trip():
    """Odd image sizes and several channels come back at their own size."""
    net = ConvAutoencoderNet(3 * 15 * 17, 3 * 15 * 17, [3, 15, 17], [4, 6, 8], 5, "rectifier")
    y, acts = net(torch.randn(5, 3 * 15 * 17))
    assert y.shape == (5, 765) and [a.shape[1] for a in acts] == net.hidden
    assert net.coding == 3 and net.hidden[2] == 8 * 2 * 3


def test_family_params_are_validated():
    base = {"hidden": [10]}
    with pytest.raises(ValueError, match=r"'contractive_lambda': set to 0.1 but "
                                         r"architecture='variational'"):
        validate({**base, "architecture": "variational", "contractive_lambda": 0.1})
    with pytest.raises(ValueError, match=r"'wta_sparsity': set to 0.5 but "
                                         r"architecture='adversarial'"):
        validate({**base, "architecture": "adversarial", "wta_sparsity": 0.5})
    with pytest.raises(ValueError, match=r"'wta_sparsity': got 1.5, expected a number in "
                                         r"\(0, 1\]"):
        validate({**base, "wta_sparsity": 1.5})
    with pytest.raises(ValueError, match=r"'architecture': got 'gan', expected one of"):
        validate({**base, "architecture": "gan"})
    with pytest.raises(ValueError, match=r"'kl_beta': got -1.0"):
        validate({**base, "kl_beta": -1.0})
    with pytest.raises(ValueError, match=r"'conv_filters': got \[16, 0\]"):
        validate({**base, "conv_filters": [16, 0]})
    with pytest.raises(ValueError, match=r"'kernel_size': got 4, expected an odd integer"):
        validate({**base, "kernel_size": 4})
    with pytest.raises(ValueError, match=r"'prior': got 'laplace'"):
        validate({**base, "prior": "laplace"})
    with pytest.raises(ValueError, match=r"'activation': got 'maxout' with "
                                         r"architecture='convolutional'"):
        validate({**base, "architecture": "convolutional", "activation": "maxout"})
    with pytest.raises(ValueError, match=r"'sparsity_beta': set to 0.1 but "
                                         r"architecture='variational'"):
        validate({**base, "architecture": "variational", "sparsity_beta": 0.1,
                  "average_activation": 0.1})


def test_image_shape_must_match_the_width(mnist_sample):
    with pytest.raises(ValueError, match=r"'image_shape': got \[1, 20, 20\] \(400 values per "
                                         r"row\), but the rows have 784 features"):
        Autoencoder(architecture="convolutional", image_shape=[1, 20, 20]).fit(mnist_sample)


def test_generate_needs_a_prior():
    from sparkae.data.prepare import InputInfo
    from sparkae.train.summary import TrainingSummary

    spec = {"input_size": 4, "kept": 4, "hidden": [2], "activation": "tanh"}
    net = build_network(spec)
    model = AutoencoderModel._create(spec, net.state_dict(), InputInfo("array", "x", size=4),
                                     TrainingSummary())
    with pytest.raises(ValueError, match=r"architecture='dense' has no prior"):
        model.generate(3)


# -- Spark: 2-rank fits, save, load, transform ----------------------------------------------

@pytest.fixture(scope="module")
def vae(mnist_sample):
    return Autoencoder(architecture="variational", hidden=[64, 8, 64], epochs=3, rate=0.002,
                       **TWO_RANKS).fit(mnist_sample)


def test_variational_two_ranks(vae, mnist_sample, sample_arrays, tmp_path):
    """KL reported every epoch; codings' aggregate posterior close to N(0, I); generate
    returns finite rows of the input width; saves, loads and scores."""
    x, _, _ = sample_arrays
    kls = [h["kl"] for h in vae.summary.history]
    assert len(kls) == 3 and all(math.isfinite(k) and k > 0 for k in kls)
    net = vae.network()
    with torch.no_grad():
        mu, logvar = net.posterior(net.scaler(torch.from_numpy(x)))
    total_var = mu.var(dim=0) + logvar.exp().mean(dim=0)   # law of total variance
    assert mu.mean(dim=0).abs().max() < 0.25, mu.mean(dim=0)
    assert ((total_var > 0.6) & (total_var < 1.5)).all(), total_var
    gen = vae.generate(12, seed=5)
    rows = np.stack([r.features.toArray() for r in gen.collect()])
    assert gen.columns == ["features"] and rows.shape == (12, 784) and np.isfinite(rows).all()
    loaded, pdf = _roundtrip(vae, mnist_sample, tmp_path)
    again = np.stack([r.features.toArray() for r in loaded.generate(12, seed=5).collect()])
    np.testing.assert_allclose(again, rows, rtol=1e-5, atol=1e-4)
    # deep_features are the means
    first = np.stack([np.asarray(v) for v in pdf.deep_features[:5]])
    assert first.shape == (5, 8)


def test_adversarial_two_ranks(mnist_sample, tmp_path):
    """The codings move toward the prior: the squared MMD between codings and prior draws
    falls from the untrained encoder's over the epochs; generate works."""
    model = Autoencoder(architecture="adversarial", hidden=[64, 8, 64], epochs=3, rate=0.0005,
                        prior="gaussian", **TWO_RANKS).fit(mnist_sample)
    h = model.summary.history
    mmds = [h[0]["prior_mmd_initial"]] + [e["prior_mmd"] for e in h]
    assert mmds[-1] < 0.5 * mmds[0] and mmds[-1] < mmds[1], mmds
    assert all(math.isfinite(e["discriminator_loss"]) for e in h)
    rows = np.stack([r.features.toArray() for r in model.generate(8, seed=1).collect()])
    assert rows.shape == (8, 784) and np.isfinite(rows).all()
    _roundtrip(model, mnist_sample, tmp_path)


def test_convolutional_wta_two_ranks(mnist_sample, tmp_path):
    """Spatial + lifetime WTA on the conv coding maps: 25% of the maps are on per batch."""
    model = Autoencoder(architecture="convolutional", conv_filters=[8, 16], kernel_size=3,
                        image_shape=[1, 28, 28], wta_sparsity=0.25, epochs=1, rate=0.003,
                        **TWO_RANKS).fit(mnist_sample)
    frac = model.summary.history[-1]["wta_active_fraction"]
    assert abs(frac - 0.25) < 0.01, frac
    _, pdf = _roundtrip(model, mnist_sample, tmp_path)
    assert len(pdf.deep_features[0]) == 16 * 7 * 7


def test_dense_wta_two_ranks(mnist_sample, tmp_path):
    """Lifetime WTA on a dense coding layer under DDP: 25% of each batch's activations."""
    model = Autoencoder(hidden=[40], wta_sparsity=0.25, epochs=1, rate=0.003,
                        **TWO_RANKS).fit(mnist_sample)
    frac = model.summary.history[-1]["wta_active_fraction"]
    assert abs(frac - 0.25) < 0.01, frac
    assert model._spec["wta_sparsity"] == 0.25 and model._spec["coding_layer"] == 1
    _roundtrip(model, mnist_sample, tmp_path)


def test_contractive_two_ranks_lowers_the_jacobian(mnist_sample, held_out, tmp_path):
    """The encoder's Jacobian norm on held-out rows is lower with the penalty."""
    common = dict(hidden=[32], epochs=3, rate=0.003, seed=3, stopping_rounds=0)
    cae = Autoencoder(contractive_lambda=0.3, num_workers=2, num_threads=1,
                      **common).fit(mnist_sample)
    plain = Autoencoder(**common).fit(mnist_sample)
    assert all(math.isfinite(h["contractive"]) for h in cae.summary.history)

    def jacobian(model):
        net = model.network()
        z = net.scaler(torch.from_numpy(held_out))
        return float(jacobian_frobenius(lambda t: net.hidden_activations(t, upto=1)[-1], z))

    j_cae, j_plain = jacobian(cae), jacobian(plain)
    assert j_cae < 0.7 * j_plain, (j_cae, j_plain)
    _roundtrip(cae, mnist_sample, tmp_path)


def test_convolutional_beats_a_dense_net_of_similar_size(spark, mnist_sample, mnist_test_paths):
    """On MNIST test rows, a conv autoencoder reaches a lower MSE than a dense one with
    about as many parameters (both 3 epochs on the sample, same scaling); so does a conv
    net with a compressing code and far fewer parameters."""
    from sparkae.datasets import read_mnist_idx

    test = read_mnist_idx(spark, *mnist_test_paths)
    test = test.sample(0.2, seed=1)
    common = dict(epochs=3, rate=0.003, seed=1, stopping_rounds=0)
    conv = Autoencoder(architecture="convolutional", conv_filters=[16, 32], kernel_size=3,
                       **common).fit(mnist_sample)
    dense = Autoencoder(hidden=[6], **common).fit(mnist_sample)
    n_conv, n_dense = parameter_count(conv.network()), parameter_count(dense.network())
    assert 0.8 < n_conv / n_dense < 1.25, (n_conv, n_dense)

    def mse(model):
        return model.anomaly(test).agg({"reconstruction_mse": "mean"}).first()[0]
    dense_mse = mse(dense)
    assert mse(conv) < 0.8 * dense_mse, (mse(conv), dense_mse)
    # conv [16, 32] codes a row in 32 x 7 x 7 values, more than its 784 pixels; a conv net
    # whose code is 4x smaller than the input (4 x 7 x 7), with a sixth of the dense
    # net's parameters, still reconstructs better
    small = Autoencoder(architecture="convolutional", conv_filters=[16, 4], kernel_size=3,
                        **common).fit(mnist_sample)
    assert parameter_count(small.network()) < n_dense / 4
    assert mse(small) < 0.8 * dense_mse, (mse(small), dense_mse)


def test_report_grid_of_generated_rows():
    from sparkae import report

    png = report.generated_grid(np.random.default_rng(0).random((10, 784)), [28, 28])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
