"""Pure-Torch tests of the network builders and the input scaling (no Spark)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparkae.nn.models import (AutoencoderNet, InputScaler, build_network, coding_layer,
                               make_activation)
from sparkae.nn.scaling import FeatureStats, compute_scaling


@pytest.mark.parametrize("hidden, expected", [
    ([100], 1),
    ([300, 100, 300], 2),
    ([250, 100, 50, 100, 250], 3),
    ([100, 50], 2),
])
def test_coding_layer(hidden, expected):
    assert coding_layer(hidden) == expected


def _stats(x: np.ndarray) -> FeatureStats:
    return FeatureStats(count=len(x), mean=x.mean(axis=0), std=x.std(axis=0, ddof=1),
                        min=x.min(axis=0), max=x.max(axis=0))


# column 1 and column 3 are constant
X = np.array([[1.0, 5.0, -2.0, 7.0],
              [3.0, 5.0, 0.0, 7.0],
              [2.0, 5.0, 4.0, 7.0],
              [6.0, 5.0, 1.0, 7.0]])


def test_input_scaler_round_trip_with_dropped_features():
    s = compute_scaling(_stats(X), "h2o", ignore_const_cols=True)
    assert s.keep.tolist() == [0, 2]
    scaler = InputScaler(4, 2)
    scaler.set_statistics(s.keep, s.shift, s.scale, s.fill)
    assert not scaler.all_kept
    x = torch.tensor(X, dtype=torch.float32)
    z = scaler(x)
    assert z.shape == (4, 2)
    back = scaler.unscale(z)
    assert back.shape == (4, 4)
    torch.testing.assert_close(back[:, [0, 2]], x[:, [0, 2]], rtol=1e-6, atol=1e-6)
    # dropped features report their fill (the training mean == the constant value)
    assert torch.equal(back[:, 1], torch.full((4,), 5.0))
    assert torch.equal(back[:, 3], torch.full((4,), 7.0))


def test_input_scaler_all_kept_round_trip():
    scaler = InputScaler(3, 3)
    scaler.set_statistics([0, 1, 2], [1.0, -2.0, 0.5], [0.5, 2.0, 4.0], [0.0, 0.0, 0.0])
    assert scaler.all_kept
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.25]])
    z = scaler(x)
    torch.testing.assert_close(z, torch.tensor([[0.0, 8.0, 10.0], [-1.0, 4.0, -1.0]]))
    torch.testing.assert_close(scaler.unscale(z), x)


@pytest.mark.parametrize("method", ["h2o", "minmax", "zscore", "none"])
def test_compute_scaling_matches_numpy(method):
    st = _stats(X)
    s = compute_scaling(st, method, ignore_const_cols=True)
    k = [0, 2]
    xk = X[:, k]
    if method == "h2o":
        expected = (xk - xk.mean(0)) / (xk.max(0) - xk.min(0))
    elif method == "minmax":
        expected = (xk - xk.min(0)) / (xk.max(0) - xk.min(0))
        np.testing.assert_allclose(expected.min(0), [0.0, 0.0])
        np.testing.assert_allclose(expected.max(0), [1.0, 1.0])
    elif method == "zscore":
        expected = (xk - xk.mean(0)) / xk.std(0, ddof=1)
    else:
        expected = xk
    got = (xk - s.shift) * s.scale
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert s.shift.dtype == np.float32 and s.scale.dtype == np.float32
    assert s.keep.dtype == np.int64
    np.testing.assert_allclose(s.fill, X.mean(0))


def test_compute_scaling_minmax_concrete_values():
    s = compute_scaling(_stats(X), "minmax", ignore_const_cols=True)
    np.testing.assert_allclose(s.shift, [1.0, -2.0])
    np.testing.assert_allclose(s.scale, [1 / 5, 1 / 6], rtol=1e-6)


@pytest.mark.parametrize("method", ["h2o", "minmax", "zscore", "none"])
def test_compute_scaling_keeps_constant_columns_when_asked(method):
    s = compute_scaling(_stats(X), method, ignore_const_cols=False)
    assert s.keep.tolist() == [0, 1, 2, 3]
    assert s.scale[1] == 1.0 and s.scale[3] == 1.0
    z = (X - s.shift) * s.scale
    assert np.all(np.isfinite(z))


def test_all_constant_input_raises():
    x = np.array([[2.0, 3.0], [2.0, 3.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match="constant"):
        compute_scaling(_stats(x), "h2o", ignore_const_cols=True)
    # without dropping, the all-constant input is modelled as is
    s = compute_scaling(_stats(x), "h2o", ignore_const_cols=False)
    assert s.keep.tolist() == [0, 1]
    np.testing.assert_array_equal(s.scale, [1.0, 1.0])


def test_unknown_scaling_method_raises():
    with pytest.raises(ValueError, match="bogus"):
        compute_scaling(_stats(X), "bogus", ignore_const_cols=True)


def test_autoencoder_shapes_and_hidden_activations():
    torch.manual_seed(0)
    net = AutoencoderNet(10, 8, [6, 3, 6], "tanh")
    z = torch.randn(5, 8)
    assert net.reconstruct(z).shape == (5, 8)
    assert net.scaler(torch.randn(5, 10)).shape == (5, 8)
    for k in (1, 2, 3):
        acts = net.hidden_activations(z, upto=k)
        assert len(acts) == k
        assert [a.shape for a in acts] == [(5, w) for w in [6, 3, 6][:k]]
    assert [a.shape[1] for a in net.hidden_activations(z)] == [6, 3, 6]
    assert len(net.weight_matrices()) == 4
    assert [tuple(w.shape) for w in net.weight_matrices()] == [(6, 8), (3, 6), (6, 3), (8, 6)]


def test_build_network_from_spec():
    spec = {"input_size": 7, "kept": 5, "hidden": [4, 2, 4], "activation": "rectifier",
            "output_activation": "linear"}
    net = build_network(spec)
    assert isinstance(net, AutoencoderNet)
    assert net.scaler.input_size == 7 and net.scaler.keep.numel() == 5
    assert [layer.out_features for layer in net.layers] == [4, 2, 4]
    assert net.output.out_features == 5
    assert all(isinstance(a, torch.nn.ReLU) for a in net.acts)
    assert net.output_act is None
    assert net.reconstruct(torch.randn(3, 5)).shape == (3, 5)
    # output_activation defaults to linear
    spec.pop("output_activation")
    assert build_network(spec).output_act is None


def test_make_activation():
    assert isinstance(make_activation("tanh"), torch.nn.Tanh)
    assert isinstance(make_activation("rectifier"), torch.nn.ReLU)
    with pytest.raises(ValueError, match="bogus"):
        make_activation("bogus")


def test_output_activation_same_bounds_tanh():
    torch.manual_seed(1)
    net = AutoencoderNet(4, 4, [3], "tanh", output_activation="same")
    with torch.no_grad():
        net.output.bias.fill_(50.0)
        out = net.reconstruct(100 * torch.randn(64, 4))
    assert out.min() >= -1.0 and out.max() <= 1.0
    linear = AutoencoderNet(4, 4, [3], "tanh", output_activation="linear")
    with torch.no_grad():
        linear.output.bias.fill_(50.0)
        assert linear.reconstruct(torch.randn(8, 4)).min() > 1.0
