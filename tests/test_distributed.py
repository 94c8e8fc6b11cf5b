"""Distributed training: shard plans, sparse batches, TorchDistributor ranks, the cache,
checkpoints and resume. ``SPARKAE_TEST_DATA_LOADER`` picks the loader (the legacy
environment runs these with ``petastorm``)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from pyspark.ml.linalg import Vectors

from sparkae import Autoencoder
from sparkae.data import clear_cache, petastorm
from sparkae.data.batches import CsrRows, assemble
from sparkae.data.cache import META
from sparkae.data.converter import ParquetBatches, materialize
from sparkae.data.shards import batch_sizes, epoch_pieces, rank_rows, steps_per_epoch
from sparkae.nn import sparse
from sparkae.nn.losses import reconstruction_mse
from sparkae.nn.models import build_network
from sparkae.train import checkpoint
from sparkae.train.distributed import RankFailedError, TrainJob, launch, warn_slots
from sparkae.train.loop import TrainConfig
from tests.conftest import unavailable

LOADER = os.environ.get("SPARKAE_TEST_DATA_LOADER", "auto")


# -- shard plans and batches (no Spark) ------------------------------------------------------

@pytest.mark.parametrize("units,world,batch", [([10, 7, 3, 25], 2, 4), ([5], 3, 2),
                                                ([64, 64, 1], 2, 64), ([9, 9], 4, 1),
                                                ([100, 3, 50], 3, 7)])
def test_every_row_once_and_equal_steps(units, world, batch):
    total = sum(units)
    steps = steps_per_epoch(total, world, batch)
    for epoch in range(3):
        seen = []
        for rank in range(world):
            pieces = epoch_pieces(units, epoch, 11, True, rank, world)
            assert sum(b - a for _, a, b in pieces) == rank_rows(total, world)[rank]
            seen += [(u, r) for u, a, b in pieces for r in range(a, b)]
            sizes = batch_sizes(rank_rows(total, world)[rank], steps, batch)
            assert len(sizes) == steps and max(sizes) <= batch
            if rank_rows(total, world)[rank] >= steps:
                assert min(sizes) >= 1 and sum(sizes) == rank_rows(total, world)[rank]
        assert sorted(seen) == sorted((u, r) for u, n in enumerate(units) for r in range(n))


def test_assemble_shuffles_within_windows_and_keeps_sizes():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    blocks = [CsrRows.from_dense(x[i:i + 5]) for i in range(0, 20, 5)]
    sizes = batch_sizes(20, 4, 6)
    out = list(assemble(blocks, sizes, np.random.default_rng(0), window=2))
    assert [len(b) for b in out] == sizes == [6, 6, 6, 2]
    rows = np.concatenate([b.dense() for b in out])
    assert sorted(rows[:, 0].tolist()) == x[:, 0].tolist()
    assert not np.array_equal(rows, x)
    # padding case (batch 1, uneven ranks): the missing step repeats the last batch
    out = list(assemble([CsrRows.from_dense(x[:2])], [1, 1, 0], None))
    assert len(out) == 3 and np.array_equal(out[2].dense(), out[1].dense())


def test_csr_take_slice_concat_and_nan_rows():
    x = np.array([[0, 1, 0], [2, 0, 3], [0, 0, 0], [4, np.nan, 0]], dtype=np.float32)
    lengths = (x != 0).sum(axis=1)
    rows = CsrRows.from_lengths(lengths, np.nonzero(x != 0)[1], x[x != 0], 3)
    np.testing.assert_array_equal(rows.dense(), np.nan_to_num(x, nan=-1) * 0 + x)
    np.testing.assert_array_equal(rows.take(np.array([3, 0])).dense()[1], x[0])
    both = CsrRows.concat([rows.slice(0, 2), rows.slice(2, 4)])
    np.testing.assert_array_equal(np.nan_to_num(both.dense()), np.nan_to_num(x))
    assert len(rows.without_nan_rows()) == 3
    t = rows.slice(0, 3).torch_csr()
    assert t.layout == torch.sparse_csr and torch.equal(t.to_dense(), torch.from_numpy(x[:3]))


# -- sparse batches through the network ------------------------------------------------------

def _net(size=30, kept_out=(4,), seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    keep = np.array([i for i in range(size) if i not in kept_out])
    net = build_network({"input_size": size, "kept": len(keep), "hidden": [6, 3, 6],
                         "activation": "tanh", "output_activation": "linear"})
    net.scaler.set_statistics(keep, rng.random(len(keep)), 1 + rng.random(len(keep)),
                              np.zeros(size))
    return net


def test_sparse_first_layer_loss_and_gradients_match_dense():
    net = _net()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 30)).astype(np.float32)
    x[rng.random(x.shape) < 0.8] = 0
    dense, csr = torch.from_numpy(x), torch.from_numpy(x).to_sparse_csr()
    zd, zs = net.scaler(dense), net.scaler(csr)
    assert sparse.is_sparse(zs) and zs.shape == zd.shape
    torch.testing.assert_close(sparse.densify(zs, sparse.offset(net.scaler)), zd)
    (yd, _), (ys, _) = net(zd), net(zs)
    ld, ls = reconstruction_mse(yd, zd), reconstruction_mse(ys, zs)
    assert abs(float(ld) - float(ls)) < 1e-6
    torch.testing.assert_close(((yd - zd) ** 2).mean(dim=1), sparse.row_mse(ys, zs))
    ld.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    ls.backward()
    for a, b in zip(grads, [p.grad for p in net.parameters()]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def _vector_df(spark, x, sparse_rows=True, partitions=2):
    rows = []
    for i, r in enumerate(x):
        nz = np.flatnonzero(r)
        v = Vectors.sparse(len(r), nz.tolist(), r[nz].tolist()) if sparse_rows else \
            Vectors.dense(r.tolist())
        rows.append((i, v))
    return spark.createDataFrame(rows, ["id", "features"]).repartition(partitions)


def _job(path, size, **kw):
    keep = np.arange(size)
    defaults = dict(train_path=path, valid_path=None,
                    spec={"input_size": size, "kept": size, "hidden": [8],
                          "activation": "tanh", "output_activation": "linear"},
                    scaling={"keep": keep, "shift": np.full(size, 0.1), "scale": np.ones(size),
                             "fill": np.zeros(size)},
                    config=TrainConfig(epochs=2, seed=3), batch_size=16, seed=3,
                    num_threads=1)
    defaults.update(kw)
    return TrainJob(**defaults)


def test_sparse_and_dense_batches_train_the_same(spark, tmp_path):
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(size=(120, 40)), 2)
    x[rng.random(x.shape) < 0.9] = 0
    path = materialize(_vector_df(spark, x).select("features"), str(tmp_path / "m"))
    _, dense = launch(_job(path, 40, sparse=False))
    _, csr = launch(_job(path, 40, sparse=True))
    for a, b in zip(dense, csr):
        assert abs(a["train_mse"] - b["train_mse"]) < 1e-5


# -- TorchDistributor ranks ------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_split(mnist_sample):
    train, valid = mnist_sample.randomSplit([0.8, 0.2], seed=7)
    return train.cache(), valid.cache()


@pytest.mark.slow
def test_two_ranks_match_one_rank_on_the_sample(mnist_split, tmp_path):
    train, valid = mnist_split
    common = dict(hidden=[100], epochs=4, seed=11, cache_dir=str(tmp_path / "cache"),
                  data_loader=LOADER, stopping_rounds=0)
    one = Autoencoder(num_workers=1, **common).fit(train, validation_df=valid)
    two = Autoencoder(num_workers=2, **common).fit(train, validation_df=valid)
    v1, v2 = one.summary.validation_mse, two.summary.validation_mse
    assert abs(v2 - v1) <= 0.10 * v1, (v1, v2)
    assert two.summary.history[-1]["rows"] == one.summary.history[-1]["rows"] == train.count()
    scored = two.transform(valid).select("reconstruction_mse").toPandas()
    assert len(scored) == valid.count() and scored.reconstruction_mse.notna().all()
    assert not os.listdir(tmp_path / "cache") or all(
        n == "petastorm" for n in os.listdir(tmp_path / "cache"))  # nothing kept


def test_failing_rank_is_named_with_its_log(spark, tmp_path):
    good = np.ones((8, 6))
    path = str(tmp_path / "bad")
    # two files: one with 6-wide rows, one with 5-wide rows; find the rank that reads it
    materialize(spark.createDataFrame([(Vectors.dense(r.tolist()),) for r in good],
                                      ["features"]).coalesce(1), path + "/a")
    materialize(spark.createDataFrame([(Vectors.dense([1.0] * 5),)] * 8,
                                      ["features"]).coalesce(1), path + "/b")
    files = sorted(os.path.join(path, d, f) for d in ("a", "b")
                   for f in os.listdir(os.path.join(path, d)) if f.endswith(".parquet"))
    pieces = [epoch_pieces([8, 8], 0, 3, True, r, 2) for r in range(2)]
    bad_rank = next(r for r in range(2) if any(u == 1 for u, _, _ in pieces[r]))
    with pytest.raises(RankFailedError) as err:
        launch(_job(files, 6, num_workers=2, config=TrainConfig(epochs=1, seed=3)))
    text = str(err.value)
    assert f"training failed on rank {bad_rank} of 2" in text
    assert "ValueError: training data: a vector has 5 features where the model expects 6" in text
    assert f"last lines of rank {bad_rank}'s log" in text and "Traceback" in text
    assert err.value.rank == bad_rank


def test_sparse_million_columns_two_ranks(spark, tmp_path, caplog):
    size, rows, per_row = 1_000_000, 192, 1000
    rng = np.random.default_rng(5)
    data = [(i, Vectors.sparse(size, np.sort(rng.choice(size, per_row, replace=False)).tolist(),
                               np.round(rng.random(per_row), 3).tolist()))
            for i in range(rows)]
    df = spark.createDataFrame(data, ["id", "features"]).repartition(2)
    caplog.set_level(logging.INFO, logger="sparkae")
    model = Autoencoder(hidden=[4], epochs=1, mini_batch_size=32, seed=1, num_workers=2,
                        cache_dir=str(tmp_path / "cache"), data_loader=LOADER,
                        stopping_rounds=0).fit(df)
    assert "sparse CSR batches" in caplog.text
    h = model.summary.history
    assert len(h) == 1 and h[0]["rows"] == rows and np.isfinite(h[0]["train_mse"])


# -- settings, cache, checkpoints ------------------------------------------------------------

def test_loader_choice_and_errors(small_dense, tmp_path):
    _, df = small_dense
    if not petastorm.available():
        with pytest.raises(ValueError, match="got 'petastorm', but Petastorm does not import"):
            Autoencoder(features_col="vec", data_loader="petastorm", epochs=1).fit(df)
    assert petastorm.resolve_loader("arrow") == "arrow"
    with pytest.raises(ValueError, match="'data_loader': got 'torch', expected one of"):
        Autoencoder(features_col="vec", data_loader="torch").fit(df)
    with pytest.raises(ValueError, match="'num_workers': got 0, expected an integer >= 1"):
        Autoencoder(features_col="vec", num_workers=0).fit(df)
    with pytest.raises(ValueError, match=r"fit\(resume=True\) needs the checkpoint_dir Param"):
        Autoencoder(features_col="vec", epochs=1).fit(df, resume=True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'use_gpu': got True, but torch sees no CUDA"):
            Autoencoder(features_col="vec", use_gpu=True, epochs=1,
                        cache_dir=str(tmp_path)).fit(df)


def test_slot_warning(spark, caplog):
    caplog.set_level(logging.WARNING, logger="sparkae")
    warn_slots(spark, 3)
    assert "num_workers=3 exceeds the 2 cores of master local[2]" in caplog.text


def test_cache_is_reused_then_cleared(small_dense, tmp_path, caplog):
    _, df = small_dense
    cache = str(tmp_path / "cache")
    caplog.set_level(logging.INFO, logger="sparkae")
    ae = Autoencoder(features_col="vec", hidden=[3], epochs=1, seed=1, cache_dir=cache,
                     keep_cache=True, data_loader=LOADER)
    first = ae.fit(df)
    entries = [n for n in os.listdir(cache) if os.path.isfile(os.path.join(cache, n, META))]
    assert len(entries) == 1
    caplog.clear()
    second = ae.fit(df)
    assert "training data: reusing materialized data" in caplog.text
    assert first.summary.train_mse == second.summary.train_mse
    assert clear_cache(cache) >= 1
    assert not [n for n in os.listdir(cache) if n != "petastorm"]
    Autoencoder(features_col="vec", hidden=[3], epochs=1, seed=1, cache_dir=cache,
                data_loader=LOADER).fit(df)
    assert not [n for n in os.listdir(cache) if n != "petastorm"]   # keep_cache=False


def _weights(model):
    return {k: v.clone() for k, v in model.network().state_dict().items()}


def test_resume_after_a_crash_matches_an_uninterrupted_fit(small_dense, tmp_path,
                                                           monkeypatch):
    _, df = small_dense
    params = dict(features_col="vec", hidden=[5], epochs=4, seed=9, mini_batch_size=32,
                  stopping_rounds=0, cache_dir=str(tmp_path / "cache"), data_loader=LOADER)
    full = Autoencoder(**params).fit(df)
    ckdir = str(tmp_path / "ck")
    real_save = checkpoint.save

    def crash_after_two(directory, epoch, state, meta):
        path = real_save(directory, epoch, state, meta)
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash after epoch 2")
        return path

    monkeypatch.setattr(checkpoint, "save", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        Autoencoder(checkpoint_dir=ckdir, **params).fit(df)
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert checkpoint.latest(ckdir).endswith("epoch-0002")
    resumed = Autoencoder(checkpoint_dir=ckdir, **params).fit(df, resume=True)
    assert [h["epoch"] for h in resumed.summary.history] == [1, 2, 3, 4]
    a, b = _weights(full), _weights(resumed)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    # a checkpoint of another network is refused
    other = dict(params, hidden=[4])
    with pytest.raises(ValueError, match="was written for another network"):
        Autoencoder(checkpoint_dir=ckdir, **other).fit(df, resume=True)


def test_checkpoint_round_trip_has_no_pickle(tmp_path):
    net = _net()
    opt = torch.optim.Adam(net.parameters())
    net(net.scaler(torch.ones(2, 30)))[0].sum().backward()
    opt.step()
    state = {"model": net.state_dict(), "optimizer": opt.state_dict(),
             "history": [{"epoch": 1, "train_mse": 0.5, "validation_mse": None}],
             "stopper": {"best_metric": float("inf")}, "best_model": None}
    path = checkpoint.save(str(tmp_path), 1, state, {"seed": 1})
    assert sorted(os.listdir(path)) == ["_manifest.json", "state.json", "tensors.safetensors"]
    epoch, back, meta = checkpoint.load(path)
    assert epoch == 1 and meta == {"seed": 1} and back["best_model"] is None
    assert back["stopper"]["best_metric"] == float("inf")
    opt2 = torch.optim.Adam(_net().parameters())
    opt2.load_state_dict(back["optimizer"])
    for k, v in state["model"].items():
        assert torch.equal(v, back["model"][k])


@pytest.mark.petastorm
def test_petastorm_and_arrow_give_the_same_batches(spark, tmp_path):
    if not petastorm.available():
        unavailable("petastorm does not import here (it needs the legacy environment)")
    rng = np.random.default_rng(4)
    x = np.round(rng.normal(size=(150, 12)), 2)
    x[rng.random(x.shape) < 0.6] = 0
    vec = materialize(_vector_df(spark, x, partitions=3).select("features"),
                      str(tmp_path / "v"))
    converter = petastorm.materialize(spark, vec, str(tmp_path))
    files = petastorm.files_of(converter)
    for rank in range(2):
        a = ParquetBatches(files, 12, 8, seed=5, rank=rank, world_size=2)
        b = ParquetBatches(files, 12, 8, seed=5, rank=rank, world_size=2,
                           reader=petastorm.read_unit)
        for epoch in range(2):
            got_a, got_b = list(a.epoch(epoch)), list(b.epoch(epoch))
            assert len(got_a) == len(got_b) == a.steps
            for p, q in zip(got_a, got_b):
                np.testing.assert_array_equal(p, q)
    converter.delete()


_KILLED_FIT = r"""
import os, sys
from pyspark.sql import SparkSession
from sparkae import Autoencoder
from sparkae.datasets import load_mnist_sample
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.sql.shuffle.partitions", "2").getOrCreate())
Autoencoder(checkpoint_dir=sys.argv[1], cache_dir=sys.argv[2], **eval(sys.argv[3])).fit(
    load_mnist_sample(spark))
"""


def _stat(pid):
    """``(state, parent pid)`` of a process, from /proc (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _process_tree(pid):
    """``pid`` and every process below it."""
    children = {}
    for name in os.listdir("/proc"):
        stat = _stat(name) if name.isdigit() else None
        if stat:
            children.setdefault(stat[1], []).append(int(name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def _running(pids):
    """The processes of ``pids`` that still run (a zombie has ended)."""
    return [p for p in pids if (_stat(p) or ("Z",))[0] != "Z"]


@pytest.mark.slow
def test_two_rank_fit_killed_after_epoch_two_resumes_to_the_same_weights(mnist_sample,
                                                                         tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    params = dict(hidden=[48], epochs=8, seed=21, num_workers=2, mini_batch_size=64,
                  stopping_rounds=0, data_loader=LOADER)
    ck, cache = str(tmp_path / "ck"), str(tmp_path / "cache")
    log_path = tmp_path / "killed-fit.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_FIT, ck, cache, repr(params)],
                                cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    tree = []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            latest = checkpoint.latest(ck)
            if latest and int(latest[-4:]) >= 2:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            tree = _process_tree(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)   # the fit, its torchrun and its ranks
        proc.wait(timeout=60)
    # no process of the fit may write a checkpoint any more: ranks outside its process
    # group end once they notice that their launcher is gone
    deadline = time.time() + 60
    while _running(tree) and time.time() < deadline:
        time.sleep(0.05)
    assert not _running(tree), f"processes of the killed fit still run: {_running(tree)}"
    latest = checkpoint.latest(ck)
    assert latest, f"no checkpoint was written:\n{log_path.read_text()[-3000:]}"
    done = int(latest[-4:])
    assert 2 <= done < params["epochs"], f"the fit was not interrupted (at epoch {done})"
    resumed = Autoencoder(checkpoint_dir=ck, cache_dir=cache, **params).fit(mnist_sample,
                                                                            resume=True)
    assert [h["epoch"] for h in resumed.summary.history] == list(range(1, params["epochs"] + 1))
    full = Autoencoder(cache_dir=cache, **params).fit(mnist_sample)
    a, b = _weights(full), _weights(resumed)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_a_driver_rank_uses_the_cores_it_may_run_on(spark, monkeypatch):
    """The in-process rank's Torch threads: the process's CPU affinity, at most the local
    master's N (the suite's session is local[2]) and at most OMP_NUM_THREADS."""
    from sparkae.train.distributed import driver_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert driver_threads() == min(2, len(os.sched_getaffinity(0)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert driver_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert driver_threads() == min(2, len(os.sched_getaffinity(0)))
    monkeypatch.delenv("OMP_NUM_THREADS")
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert driver_threads() == 1
    finally:
        os.sched_setaffinity(0, allowed)
