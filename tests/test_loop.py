"""Pure-Torch tests of the training loop on in-memory data (no Spark)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sparkae.nn.models import AutoencoderNet
from sparkae.nn.scaling import FeatureStats, compute_scaling
from sparkae.train.loop import TrainConfig, evaluate, penalty, train

ROWS, WIDTH, BATCH = 512, 20, 32


def _data(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, 3)) @ rng.normal(size=(3, WIDTH)) + 0.01 * rng.normal(
        size=(ROWS, WIDTH))
    return x.astype(np.float32)


X = _data()
XV = _data(4)


def _batches(x: np.ndarray):
    def by_epoch(epoch: int):
        order = np.random.default_rng(epoch).permutation(len(x))
        for start in range(0, len(x), BATCH):
            yield x[order[start:start + BATCH]]
    return by_epoch


def _net(seed: int = 0, hidden=(10, 3, 10)) -> AutoencoderNet:
    torch.manual_seed(seed)
    net = AutoencoderNet(WIDTH, WIDTH, list(hidden), "tanh")
    st = FeatureStats(len(X), X.mean(0), X.std(0), X.min(0), X.max(0))
    s = compute_scaling(st, "zscore", ignore_const_cols=True)
    net.scaler.set_statistics(s.keep, s.shift, s.scale, s.fill)
    return net


def test_history_and_falling_error():
    net = _net()
    seen = []
    hist = train(net, _batches(X), TrainConfig(epochs=8, rate=0.01, coding_layer=2),
                 on_epoch=seen.append)
    assert len(hist) == 8 and seen == hist
    for i, e in enumerate(hist):
        assert set(e) == {"epoch", "train_mse", "validation_mse", "rows", "seconds",
                          "rows_per_s", "coding_activations", "best"}
        assert len(e["coding_activations"]) == 3   # the coding layer of (10, 3, 10)
        assert e["best"] == (i == 7)   # the last epoch has the lowest training MSE
        assert e["epoch"] == i + 1
        assert e["rows"] == ROWS
        assert e["validation_mse"] is None
        assert e["seconds"] > 0 and e["rows_per_s"] > 0
    assert hist[-1]["train_mse"] < hist[0]["train_mse"] / 2
    assert not net.training


def test_validation_mse_equals_evaluate():
    net = _net()
    valid = lambda: iter([XV[:100], XV[100:]])  # noqa: E731
    hist = train(net, _batches(X), TrainConfig(epochs=3, rate=0.01), valid_batches=valid)
    assert all(isinstance(e["validation_mse"], float) for e in hist)
    # overwrite_with_best_model (the default) keeps the weights of the best epoch
    best = [e for e in hist if e["best"]]
    assert len(best) == 1
    assert best[0]["validation_mse"] == min(e["validation_mse"] for e in hist)
    assert best[0]["validation_mse"] == pytest.approx(evaluate(net, valid()), rel=1e-12)
    # evaluate is the mean over rows of per-row MSE in the scaled space
    with torch.no_grad():
        z = net.scaler(torch.from_numpy(XV))
        expected = float(((net.reconstruct(z) - z) ** 2).mean(dim=1).mean())
    assert evaluate(net, [XV]) == pytest.approx(expected, rel=1e-5)
    assert np.isnan(evaluate(net, []))


def _state(seed: int, cfg: TrainConfig):
    net = _net(seed)
    train(net, _batches(X), cfg)
    return net.state_dict()


def test_determinism():
    cfg = TrainConfig(epochs=2, rate=0.01)
    a, b, c = _state(5, cfg), _state(5, cfg), _state(6, cfg)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_adadelta_trains():
    net = _net()
    hist = train(net, _batches(X), TrainConfig(epochs=6, optimizer="adadelta", rho=0.99,
                                               epsilon=1e-8))
    assert hist[-1]["train_mse"] < hist[0]["train_mse"]


def test_unknown_optimizer_raises():
    with pytest.raises(ValueError, match="'rmsprop', expected 'adam', 'adadelta' or 'sgd'"):
        train(_net(), _batches(X), TrainConfig(epochs=1, optimizer="rmsprop"))


def _weights(net: AutoencoderNet) -> torch.Tensor:
    return torch.cat([w.detach().flatten() for w in net.weight_matrices()])


def test_l1_sparsifies_weights():
    plain, sparse = _net(2), _net(2)
    train(plain, _batches(X), TrainConfig(epochs=6, rate=0.01))
    train(sparse, _batches(X), TrainConfig(epochs=6, rate=0.01, l1=3e-3))
    small = lambda n: int((_weights(n).abs() < 1e-3).sum())  # noqa: E731
    assert small(sparse) > small(plain) + 10


def test_l2_shrinks_weights():
    plain, decayed = _net(2), _net(2)
    train(plain, _batches(X), TrainConfig(epochs=6, rate=0.01))
    train(decayed, _batches(X), TrainConfig(epochs=6, rate=0.01, l2=1e-2))
    assert float((_weights(decayed) ** 2).sum()) < float((_weights(plain) ** 2).sum())


def test_penalty_value():
    net = _net()
    w = [m.detach() for m in net.weight_matrices()]
    expected = 0.1 * sum(float(m.abs().sum()) for m in w) + 0.5 * 0.2 * sum(
        float((m * m).sum()) for m in w)
    assert float(penalty(net, TrainConfig(l1=0.1, l2=0.2)).detach()) == pytest.approx(expected, rel=1e-5)
    assert float(penalty(net, TrainConfig())) == 0.0


def test_infinite_input_raises_and_nan_is_imputed():
    bad = X.copy()
    bad[7, 3] = np.inf
    with pytest.raises(FloatingPointError, match="training diverged in epoch 1"):
        train(_net(), _batches(bad), TrainConfig(epochs=2, rate=0.01))
    missing = X.copy()
    missing[7, 3] = np.nan
    hist = train(_net(), _batches(missing), TrainConfig(epochs=2, rate=0.01))
    assert all(np.isfinite(e["train_mse"]) for e in hist)   # NaN -> the imputed value
    skipped = train(_net(), _batches(missing), TrainConfig(epochs=1, skip_missing=True))
    assert skipped[0]["rows"] == ROWS - 1


def test_empty_batches_raise():
    with pytest.raises(ValueError, match="no rows"):
        train(_net(), lambda epoch: iter([]), TrainConfig(epochs=1))


def test_torch_batches_accepted():
    net = _net()
    t = torch.from_numpy(X)
    hist = train(net, lambda epoch: (t[i:i + 64] for i in range(0, ROWS, 64)),
                 TrainConfig(epochs=2, rate=0.01))
    assert [e["rows"] for e in hist] == [ROWS, ROWS]


def test_noise_differs_by_rank_and_epoch_and_repeats_exactly():
    from sparkae.train.loop import noise_generator

    def draw(rank, epoch):
        return torch.rand(5, generator=noise_generator(7, rank, epoch, torch.device("cpu")))

    assert torch.equal(draw(0, 2), draw(0, 2))
    assert not torch.equal(draw(0, 2), draw(1, 2))
    assert not torch.equal(draw(0, 2), draw(0, 3))


def test_a_resumed_denoising_fit_draws_the_noise_of_an_uninterrupted_one():
    cfg = TrainConfig(epochs=4, seed=5, noise="gaussian", noise_level=0.2,
                      input_dropout_ratio=0.1)
    full = _net(1)
    train(full, _batches(X), cfg)
    saved = {}

    def keep(epoch, state):
        if epoch == 2:
            saved.update({k: (v if k == "history" else
                              (copy.deepcopy(v))) for k, v in state.items()})

    first = _net(1)
    train(first, _batches(X), TrainConfig(**{**cfg.__dict__, "epochs": 2}), checkpoint=keep)
    resumed = _net(1)
    resumed.load_state_dict(saved["model"])
    train(resumed, _batches(X), cfg, resume_state=saved)
    for k, v in full.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k


@pytest.mark.parametrize("name,kwargs", [
    ("adam", {"lr": 0.01}),
    ("adadelta", {"lr": 1.0, "rho": 0.99, "eps": 1e-8}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
])
def test_optimizers_match_torch_and_leave_dynamo_unimported(name, kwargs):
    """sparkae's optimizers skip Torch's first-call import of torch._dynamo (seconds of CPU
    in every training process) and update exactly as Torch's own, state_dict included."""
    import subprocess
    import sys

    from sparkae.train import optim

    ours_cls = {"adam": optim.Adam, "adadelta": optim.Adadelta, "sgd": optim.SGD}[name]
    theirs_cls = {"adam": torch.optim.Adam, "adadelta": torch.optim.Adadelta,
                  "sgd": torch.optim.SGD}[name]
    weights = []
    for cls in (ours_cls, theirs_cls):
        torch.manual_seed(0)
        lin = torch.nn.Linear(5, 3)
        opt = cls(lin.parameters(), **kwargs)
        gen = torch.Generator().manual_seed(1)
        for i in range(4):
            if i == 2:   # a checkpoint's round trip in the middle
                state = copy.deepcopy(opt.state_dict())
                opt = cls(lin.parameters(), **kwargs)
                opt.load_state_dict(state)
            opt.zero_grad()
            (lin(torch.randn(8, 5, generator=gen)) ** 2).mean().backward()
            opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in lin.parameters()]))
    assert torch.equal(weights[0], weights[1])

    code = (f"import sys, torch\nfrom sparkae.train import optim\n"
            f"lin = torch.nn.Linear(4, 2)\nopt = optim.{ours_cls.__name__}(lin.parameters(), "
            f"**{kwargs!r})\n"
            "for _ in range(2):\n    opt.zero_grad()\n"
            "    lin(torch.ones(3, 4)).sum().backward()\n    opt.step()\n"
            "opt.load_state_dict(opt.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_adam_is_fused_where_torch_can_and_resumes_an_unfused_checkpoint():
    """make_optimizer's Adam takes Torch's fused kernel where Torch has one for the
    parameters: the same updates as torch.optim.Adam(fused=True), within rounding of the
    default kernel's, and it loads a checkpoint written by the default kernel."""
    from sparkae.train import optim
    from sparkae.train.config import TrainConfig

    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3)
    opt = optim.make_optimizer(lin, TrainConfig(rate=0.01))
    fused = bool(opt.defaults.get("fused"))
    try:
        torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), fused=True)
        assert fused, "Torch has a fused Adam here, but make_optimizer did not take it"
    except (RuntimeError, TypeError, ValueError):
        assert not fused

    def run(make, steps=6, resume_at=None):
        torch.manual_seed(0)
        net = torch.nn.Linear(5, 3)
        o = make(net)
        gen = torch.Generator().manual_seed(1)
        for i in range(steps):
            if i == resume_at:   # the state of the default kernel, loaded by the fused one
                state = copy.deepcopy(o.state_dict())
                o = optim.make_optimizer(net, TrainConfig(rate=0.01))
                o.load_state_dict(state)
            o.zero_grad()
            (net(torch.randn(8, 5, generator=gen)) ** 2).mean().backward()
            o.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    ours = run(lambda n: optim.make_optimizer(n, TrainConfig(rate=0.01)))
    default = run(lambda n: torch.optim.Adam(n.parameters(), lr=0.01))
    assert torch.allclose(ours, default, rtol=0, atol=1e-6)
    if fused:
        assert torch.equal(ours, run(lambda n: torch.optim.Adam(n.parameters(), lr=0.01,
                                                                fused=True)))
    resumed = run(lambda n: torch.optim.Adam(n.parameters(), lr=0.01), resume_at=3)
    assert torch.allclose(resumed, default, rtol=0, atol=1e-6)
