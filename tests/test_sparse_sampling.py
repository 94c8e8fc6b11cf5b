"""Reconstruction sampling for wide sparse batches (issue 4): the unbiased sampled loss, the
entries-only decoder, the lazy row-wise step, no full-width tensor, the Param, and fits."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sparkae.nn import sparse
from sparkae.nn.models import AutoencoderNet
from sparkae.nn.sampling import sample_entries, sampled_mse
from sparkae.train.lazy import LazyStep
from sparkae.train.loop import TrainConfig, make_optimizer, train


def _net(width: int, hidden=(5,), seed: int = 0) -> AutoencoderNet:
    torch.manual_seed(seed)
    net = AutoencoderNet(width, width, list(hidden), "tanh")
    g = torch.Generator().manual_seed(seed)
    net.scaler.set_statistics(keep=torch.arange(width), shift=torch.rand(width, generator=g) * 0.2,
                              scale=torch.rand(width, generator=g) + 0.5,
                              fill=torch.zeros(width))
    return net


def _batch(n: int = 6, width: int = 40, density: float = 0.15, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, width, generator=g) < density) * torch.rand(n, width, generator=g)
    x[min(2, n - 1)] = 0                                   # a row with nothing stored
    x[min(3, n - 1)] = torch.rand(width, generator=g) + 0.1  # a row storing every column
    return x.to_sparse_csr()


def test_sampled_loss_is_unbiased_and_draws_only_zero_columns():
    net = _net(40)
    z = net.scaler(_batch())
    rows, cols, _, _ = sparse._parts(z)
    stored = set(zip(rows.tolist(), cols.tolist()))
    with torch.no_grad():
        y, _ = net(z)
        exact = float(sparse.reconstruction_mse(y, z))
        g = torch.Generator().manual_seed(1)
        draws = []
        for _ in range(3000):
            e = sample_entries(z, 3, g)
            picked = list(zip(e.rows[-18:].tolist(), e.cols[-18:].tolist()))
            assert all(w == 0 or p not in stored for p, w in zip(picked, e.weight[-18:].tolist()))
            ye, _ = net(z, entries=(e.rows, e.cols))
            draws.append(float(sampled_mse(ye, e)))
    mean, se = np.mean(draws), np.std(draws) / np.sqrt(len(draws))
    assert abs(mean - exact) < 4 * se + 1e-7, (mean, exact, se)
    assert abs(mean - exact) < 0.01 * exact


def test_draws_are_uniform_over_a_rows_zero_columns():
    x = torch.zeros(1, 12)
    x[0, [0, 3, 4, 11]] = 1.0
    g = torch.Generator().manual_seed(0)
    e = sample_entries(x.to_sparse_csr(), 40_000, g)
    counts = np.bincount(e.cols[4:].numpy(), minlength=12)
    assert counts[[0, 3, 4, 11]].sum() == 0
    free = counts[[1, 2, 5, 6, 7, 8, 9, 10]]
    assert np.all(np.abs(free / 5000 - 1) < 0.06), free
    assert torch.allclose(e.weight[4:], torch.tensor(8 / 40_000))


def test_entries_forward_matches_the_full_reconstruction():
    net = _net(40, hidden=(6, 3))
    z = net.scaler(_batch())
    e = sample_entries(z, 4, torch.Generator().manual_seed(2))
    with torch.no_grad():
        y, _ = net(z)
        ye, _ = net(z, entries=(e.rows, e.cols))
    torch.testing.assert_close(ye, y[e.rows, e.cols])
    with pytest.raises(ValueError, match="sparse CSR batch"):
        net(sparse.densify(z, sparse.offset(net.scaler)), entries=(e.rows, e.cols))


@pytest.mark.parametrize("optimizer,row_kernel", [("adam", True), ("adam", False),
                                                  ("adadelta", False), ("sgd", False)],
                         ids=["adam-numba", "adam-torch", "adadelta", "sgd"])
def test_lazy_step_is_the_reparametrized_dense_step(optimizer, row_kernel):
    """One lazy step equals a dense step of the same optimizer on (W1, b1 - W1 c, the rest)
    with the same sampled entries (rows not touched get zero gradient and zero state);
    adam both through the Numba row kernel and through Torch ops."""
    cfg = TrainConfig(optimizer=optimizer, rate=0.05, momentum_start=0.5 if optimizer == "sgd"
                      else 0.0)
    net = _net(40)
    ref = copy.deepcopy(net)
    z = net.scaler(_batch())
    e = sample_entries(z, 4, torch.Generator().manual_seed(3))
    lazy = LazyStep(net, cfg, lambda ps: make_optimizer(net, cfg, ps), row_kernel=row_kernel)
    assert lazy.row_kernel == row_kernel
    loss, _ = lazy.forward(z, e)
    loss.backward()
    lazy.step()

    c = sparse.offset(ref.scaler)
    first = ref.layers[0]
    b_eff = (first.bias - first.weight @ c).detach().requires_grad_()
    params = [first.weight, b_eff, ref.output.weight, ref.output.bias]
    opt = make_optimizer(ref, cfg, params)
    y, _ = ref(z, entries=(e.rows, e.cols))
    rows, col, val, _ = sparse._parts(z)

    def pre(_):
        return torch.zeros(z.shape[0], first.weight.shape[0]).index_add(
            0, rows, first.weight.t()[col] * val[:, None]) + b_eff

    acts = ref.hidden_activations(z, first=pre)
    ref_loss = sampled_mse(ref.decode_entries(acts[-1], e.rows, e.cols), e)
    torch.testing.assert_close(loss, ref_loss)
    ref_loss.backward()
    opt.step()
    with torch.no_grad():
        first.bias.copy_(b_eff + first.weight @ c)
    for a, b in zip(net.state_dict().values(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_kernel_is_torchs_adam_on_the_chosen_rows_only(dtype):
    """Three Adam steps of rows.adam_rows on some rows of a packed (rows, 3, width) buffer
    equal torch.optim.Adam on those rows; other rows stay as they were."""
    from sparkae.train import rowkernel

    g = torch.Generator().manual_seed(0)
    buf = torch.zeros(50, 3, 7, dtype=dtype)
    buf[:, 0] = torch.randn(50, 7, generator=g, dtype=dtype)
    before = buf.clone()
    idx = torch.tensor([3, 8, 9, 41])
    p = torch.nn.Parameter(buf[idx, 0].clone())
    opt = torch.optim.Adam([p], lr=0.01, betas=(0.8, 0.95), eps=1e-6)
    for step in range(1, 4):
        grad = torch.randn(4, 7, generator=g, dtype=dtype)
        delta = torch.empty(4, 7, dtype=dtype)
        old = buf[idx, 0].clone()
        rowkernel.adam_rows(buf.numpy(), idx.numpy(), grad.numpy(), delta.numpy(), step,
                            0.01, (0.8, 0.95), 1e-6)
        torch.testing.assert_close(delta, buf[idx, 0] - old)
        p.grad = grad
        opt.step()
    state = opt.state[p]
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(buf[idx, 0], p.detach(), **tol)
    torch.testing.assert_close(buf[idx, 1], state["exp_avg"], **tol)
    torch.testing.assert_close(buf[idx, 2], state["exp_avg_sq"], **tol)
    rest = torch.ones(50, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(buf[rest], before[rest])


def test_row_dot_matches_gather_multiply_sum_and_its_gradients():
    """The Numba row dot of the lazy step's decoder: values and gradients (gradcheck in
    float64, repeated rows and columns included)."""
    from sparkae.train.lazy import _RowDot

    g = torch.Generator().manual_seed(1)
    h = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(7, 4, dtype=torch.float64, generator=g, requires_grad=True)
    rows = torch.tensor([0, 0, 1, 4, 4, 4, 2, 0])
    cols = torch.tensor([3, 6, 3, 0, 1, 3, 6, 6])
    ref = (h[rows] * w[cols]).sum(dim=1)
    torch.testing.assert_close(_RowDot.apply(h, rows, w, cols), ref)
    assert torch.autograd.gradcheck(lambda a, b: _RowDot.apply(a, rows, b, cols), (h, w))


def test_row_kernel_can_be_turned_off(monkeypatch):
    from sparkae.train import rowkernel

    monkeypatch.setenv(rowkernel.ENV, "torch")
    net = _net(40)
    cfg = TrainConfig(rate=0.05)
    assert not LazyStep(net, cfg, lambda ps: make_optimizer(net, cfg, ps)).row_kernel


def _wide_rows(n: int, width: int, per_row: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n, 32):
        m = min(32, n - start)
        cols = np.concatenate([np.sort(rng.choice(width, per_row, replace=False))
                               for _ in range(m)])
        crow = np.arange(0, (m + 1) * per_row, per_row)
        out.append(torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols),
                                           torch.from_numpy(rng.random(m * per_row)
                                                            .astype(np.float32)),
                                           size=(m, width)))
    return out


class _Wrapper(torch.nn.Module):
    """Stands in for DistributedDataParallel: ``model is not net`` (dense gradients)."""

    def __init__(self, net):
        super().__init__()
        self.module = net

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


@pytest.mark.parametrize("wrapped", [False, True], ids=["lazy-1-rank", "dense-grads"])
def test_sampled_training_lowers_the_exact_loss(wrapped):
    width = 3000
    batches = _wide_rows(256, width, 30)
    net = _net(width, hidden=(16,))
    from sparkae.train.loop import evaluate

    before = evaluate(net, batches)
    cfg = TrainConfig(epochs=5, rate=0.003, seed=1, reconstruction_sampling=20)
    hist = train(net, lambda e: batches, cfg, model=_Wrapper(net) if wrapped else None)
    after = evaluate(net, batches)
    assert all(np.isfinite(h["train_mse"]) for h in hist)
    assert after < 0.85 * before, (before, after)
    assert hist[-1]["train_mse"] < hist[0]["train_mse"]


def test_lazy_fit_gives_back_contiguous_weights_and_resumes_exactly(tmp_path):
    """After a lazy fit the wide parameters are contiguous tensors of their own (not views
    of the packed buffers); a fit checkpointed after epoch 2 (safetensors round trip) and
    resumed ends with the weights of an uninterrupted one."""
    from sparkae.train import checkpoint as ckpt

    width = 600
    batches = _wide_rows(96, width, 12, seed=2)
    cfg = TrainConfig(epochs=4, rate=0.003, seed=1, reconstruction_sampling=8)
    full = _net(width, hidden=(6,))
    train(full, lambda e: batches, cfg)
    for p in (full.layers[0].weight, full.output.weight, full.output.bias):
        assert p.is_contiguous() and p.untyped_storage().nbytes() == p.numel() * p.element_size()

    def keep(epoch, state):
        ckpt.save(str(tmp_path), epoch, state, {})

    first = _net(width, hidden=(6,))
    train(first, lambda e: batches, TrainConfig(**{**cfg.__dict__, "epochs": 2}), checkpoint=keep)
    epoch, state, _ = ckpt.load(ckpt.latest(str(tmp_path)))
    assert epoch == 2 and state["optimizer"]["lazy"]
    assert state["optimizer"]["rows"]["w1"].shape == (2, width, 6)   # (slots, wide, hidden)
    resumed = _net(width, hidden=(6,), seed=9)
    resumed.load_state_dict(state["model"])
    hist = train(resumed, lambda e: batches, cfg, resume_state=state)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=1e-6, rtol=1e-5)


def test_a_sampled_fit_on_dense_batches_resumes_exactly(tmp_path):
    """With reconstruction_sampling but dense batches the usual optimizer trains; its
    checkpoint resumes (the state is loaded once the first batch shows the batches are
    dense) to the weights of an uninterrupted fit."""
    from sparkae.train import checkpoint as ckpt

    width = 60
    batches = [b.to_dense() for b in _wide_rows(64, width, 12, seed=4)]
    cfg = TrainConfig(epochs=3, rate=0.003, seed=1, reconstruction_sampling=8)
    full = _net(width, hidden=(6,))
    train(full, lambda e: batches, cfg)

    def keep(epoch, state):
        ckpt.save(str(tmp_path), epoch, state, {})

    first = _net(width, hidden=(6,))
    train(first, lambda e: batches, TrainConfig(**{**cfg.__dict__, "epochs": 1}), checkpoint=keep)
    epoch, state, _ = ckpt.load(ckpt.latest(str(tmp_path)))
    assert epoch == 1 and not state["optimizer"].get("lazy")
    resumed = _net(width, hidden=(6,), seed=9)
    resumed.load_state_dict(state["model"])
    hist = train(resumed, lambda e: batches, cfg, resume_state=state)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="written without the lazy sparse step"):
        train(_net(width, hidden=(6,)), lambda e: _wide_rows(64, width, 12, seed=4), cfg,
              resume_state=state)   # sparse batches cannot take the dense optimizer's state


class _Shapes(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = (0, None, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided and \
                    t.numel() > self.largest[0]:
                self.largest = (t.numel(), tuple(t.shape), str(func))
        return out


def _largest_in_training(width: int, rows: int, per_row: int, k) -> tuple:
    batches = _wide_rows(rows, width, per_row, seed=4)
    net = AutoencoderNet(width, width, [4], "tanh")
    net.scaler.set_statistics(keep=torch.arange(width), shift=torch.full((width,), 0.01),
                              scale=torch.ones(width), fill=torch.zeros(width))
    with _Shapes() as mode:
        train(net, lambda e: batches, TrainConfig(epochs=1, seed=0, reconstruction_sampling=k,
                                                  overwrite_with_best_model=False))
    return mode.largest


def test_million_column_step_never_builds_a_batch_of_full_width():
    rows, width = 32, 1_000_000          # 0.1% density: 1,000 stored entries per row
    numel, shape, op = _largest_in_training(width, rows, 1000, k=100)
    # the parameters and their optimizer state (4 x width each) are the largest tensors
    assert numel < rows * width / 2, (numel, shape, op)
    # the exact loss does build batch x width outputs: the check has teeth
    numel, shape, op = _largest_in_training(20_000, 32, 20, k=None)
    assert numel >= 32 * 20_000, (numel, shape, op)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True, float("nan")])
def test_bad_values_name_the_param(bad):
    from sparkae import Autoencoder

    with pytest.raises(ValueError, match=r"Autoencoder param 'reconstruction_sampling': got"):
        Autoencoder(reconstruction_sampling=bad)


def test_param_validation_and_families():
    from sparkae import Autoencoder
    from sparkae.validation import validate

    assert Autoencoder().getOrDefault("reconstruction_sampling") is None
    assert Autoencoder(reconstruction_sampling=7.0).getOrDefault("reconstruction_sampling") == 7
    assert "reconstruction_sampling" in Autoencoder().explainParams()
    with pytest.raises(ValueError, match="expected None .* or an integer >= 1"):
        validate({"reconstruction_sampling": 0})
    with pytest.raises(ValueError, match="architecture='variational'"):
        validate({"hidden": [8], "architecture": "variational", "reconstruction_sampling": 5})


def _sparse_df(spark, n=300, width=2000, per_row=15, seed=6):
    from pyspark.ml.linalg import Vectors

    rng = np.random.default_rng(seed)
    data = [(i, Vectors.sparse(width, np.sort(rng.choice(width, per_row, replace=False)).tolist(),
                               np.round(rng.random(per_row), 3).tolist())) for i in range(n)]
    return spark.createDataFrame(data, ["id", "features"]).repartition(2)


@pytest.mark.parametrize("workers", [1, 2])
def test_fit_with_sampling_trains_and_scores(spark, tmp_path, caplog, workers):
    import logging

    from sparkae import Autoencoder

    df = _sparse_df(spark)
    caplog.set_level(logging.INFO, logger="sparkae")
    model = Autoencoder(hidden=[16], epochs=6, mini_batch_size=32, seed=2, rate=0.003,
                        reconstruction_sampling=50, num_workers=workers, stopping_rounds=0,
                        cache_dir=str(tmp_path / "cache"), data_loader="arrow").fit(
                            df, validation_df=df)
    assert "sparse CSR batches" in caplog.text
    if workers == 1:
        assert "lazy row-wise updates" in caplog.text
    h = model.summary.history
    # validation is exact (full output): the model improves on the exact loss
    assert len(h) == 6 and h[-1]["validation_mse"] < h[0]["validation_mse"], h
    scored = model.transform(df).select("reconstruction_mse").toPandas()
    assert len(scored) == 300 and np.isfinite(scored.reconstruction_mse).all()
