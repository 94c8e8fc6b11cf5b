"""The plain dense step with hand-written gradients (:mod:`sparkae.train.lean`) against
autograd and ``torch.optim`` (pure Torch, no Spark)."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from sparkae.nn.dense import WTADenseNet
from sparkae.nn.models import AutoencoderNet
from sparkae.nn.scaling import FeatureStats, compute_scaling
from sparkae.train import lean
from sparkae.train.loop import TrainConfig, train
from sparkae.train.optim import make_optimizer

ROWS, WIDTH, BATCH = 256, 24, 32


def _data(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 4)) @ rng.normal(size=(4, WIDTH))
    x[:, 5] = 2.0                                   # a constant column: kept < width
    return x.astype(np.float32)


X = _data()


def _net(activation: str = "tanh", hidden=(10, 3, 10), seed: int = 0) -> AutoencoderNet:
    torch.manual_seed(seed)
    st = FeatureStats(len(X), X.mean(0), X.std(0), X.min(0), X.max(0))
    s = compute_scaling(st, "zscore", ignore_const_cols=True)
    net = AutoencoderNet(WIDTH, len(s.keep), list(hidden), activation)
    net.scaler.set_statistics(s.keep, s.shift, s.scale, s.fill)
    return net


def _batches(epoch: int):
    order = np.random.default_rng(epoch).permutation(ROWS)
    for start in range(0, ROWS, BATCH):
        yield X[order[start:start + BATCH]]


@pytest.mark.parametrize("activation", ["tanh", "rectifier", "exp_rectifier", "linear"])
@pytest.mark.parametrize("hidden", [(2,), (10, 3, 10), (30,)])
def test_hand_written_gradients_equal_autograds(activation, hidden):
    """Same loss, activations and gradients as autograd through the network's forward and
    ``mse_loss``, for every activation the step knows and narrow and wide layers."""
    net = _net(activation, hidden)
    assert len(net.scaler.keep) < WIDTH
    z = net.scaler(torch.from_numpy(X[:BATCH]))
    y, acts = net(z)
    loss = torch.nn.functional.mse_loss(y, z)
    loss.backward()
    want = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    mse, got_acts = lean.LeanStep(net).gradients(z)
    assert float(mse) == pytest.approx(loss.item(), rel=1e-6)
    for a, b in zip(got_acts, acts):
        torch.testing.assert_close(a, b.detach())
    for n, p in net.named_parameters():
        assert p.grad.is_contiguous() and p.grad.shape == p.shape, n
        torch.testing.assert_close(p.grad, want[n], rtol=1e-5, atol=1e-7, msg=n)


def test_the_fused_update_is_adams_step():
    """One call of Adam's fused kernel on its own state leaves the parameters and the
    state exactly as ``Adam(fused=True).step()`` does; any other optimizer or setting is
    left to ``step()``."""
    cfg = TrainConfig(epochs=1, rate=0.01)
    nets = [_net(), _net()]
    opts = [make_optimizer(n, cfg) for n in nets]
    assert opts[0].param_groups[0].get("fused"), "the pinned Torch has a fused CPU Adam"
    z = nets[0].scaler(torch.from_numpy(X[:BATCH]))
    for i in range(3):
        for net in nets:
            lean.LeanStep(net).gradients(z)
        opts[0].step()
        assert lean.fused_update(opts[1]) is (i > 0)      # the first step makes the state
        if i == 0:
            opts[1].step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(opts[0].state.values(), opts[1].state.values()):
        for k in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # a hook around step() (the ranks' gradient averaging is a global one) must run
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = []
    handle = register_optimizer_step_pre_hook(lambda o, args, kwargs: seen.append(o))
    try:
        assert not lean.fused_update(opts[1]) and not seen
    finally:
        handle.remove()
    handle = opts[1].register_step_post_hook(lambda o, args, kwargs: seen.append(o))
    try:
        assert not lean.fused_update(opts[1])
    finally:
        handle.remove()
    assert lean.fused_update(opts[1])
    for other in (torch.optim.SGD(_net().parameters(), lr=0.1),
                  torch.optim.Adam(_net().parameters(), lr=0.1, amsgrad=True, fused=True),
                  torch.optim.Adam(_net().parameters(), lr=0.1)):
        net_params = other.param_groups[0]["params"]
        for p in net_params:
            p.grad = torch.ones_like(p)
        other.step()
        assert not lean.fused_update(other)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adadelta"])
def test_a_fit_trains_as_it_does_through_autograd(monkeypatch, caplog, optimizer):
    """The same fit with the lean step and through autograd: the same history and weights,
    up to rounding."""
    cfg = TrainConfig(epochs=3, rate=0.01, optimizer=optimizer, coding_layer=2)
    fast = _net()
    slow = copy.deepcopy(fast)
    assert lean.lean_eligible(fast, cfg, fast, False, False) is None
    with caplog.at_level(logging.DEBUG, logger="sparkae"):
        hist_fast = train(fast, _batches, cfg)
    assert "training step: gradients written out" in caplog.text
    monkeypatch.setattr("sparkae.train.loop.lean_eligible", lambda *a: "forced off")
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="sparkae"):
        hist_slow = train(slow, _batches, cfg)
    assert "training step: autograd (forced off)" in caplog.text
    for a, b in zip(hist_fast, hist_slow):
        assert a["train_mse"] == pytest.approx(b["train_mse"], rel=1e-4)
        np.testing.assert_allclose(a["coding_activations"], b["coding_activations"],
                                   rtol=1e-3, atol=1e-5)
    for (n, a), b in zip(fast.state_dict().items(), slow.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5, msg=n)


def test_fits_the_step_does_not_cover_go_through_autograd():
    """Every loss term, constraint, dropout or network beyond the plain dense one keeps
    autograd, and so does a fit of several ranks."""
    net, plain = _net(), TrainConfig(epochs=1)
    assert lean.lean_eligible(net, plain, net, False, False) is None
    assert lean.lean_eligible(net, plain, net, True, False) is not None
    assert lean.lean_eligible(net, plain, net, False, True) is not None
    for change in ({"noise": "gaussian", "noise_level": 0.1}, {"input_dropout_ratio": 0.1},
                   {"l1": 1e-4}, {"l2": 1e-4}, {"sparsity_beta": 0.1}, {"max_w2": 10.0},
                   {"reconstruction_sampling": 5}):
        assert lean.lean_eligible(net, TrainConfig(epochs=1, **change), net, False,
                                  False) is not None, change
    for other in (_net("maxout"), AutoencoderNet(WIDTH, WIDTH, [4], "tanh", "same"),
                  AutoencoderNet(WIDTH, WIDTH, [4], "tanh_with_dropout",
                                 hidden_dropout_ratios=[0.5])):
        assert lean.lean_eligible(other, plain, other, False, False) is not None
    wta = WTADenseNet(WIDTH, WIDTH, [8], "tanh", wta_sparsity=0.1, coding=1)
    assert lean.lean_eligible(wta, plain, wta, False, False) is not None
