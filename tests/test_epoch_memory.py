"""Training rows kept in memory between epochs (sparkae.data.memory) give exactly the
streamed batches and the same fit; the reader's background read-ahead and the decoders'
fast paths return what the plain paths return (no Spark)."""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sparkae.data import batches
from sparkae.data.batches import CsrRows, RowIds, assemble
from sparkae.data.converter import ParquetBatches
from sparkae.data.vectors import decode_vectors
from sparkae.data.memory import MemoryEpochs, budget_bytes
from sparkae.data.shards import batch_sizes
from sparkae.nn.models import build_network
from sparkae.nn.scaling import FeatureStats, compute_scaling
from sparkae.train.loop import TrainConfig
from sparkae.train.rank import TrainJob, run_rank

WIDTH = 20


def _vectors(x: np.ndarray, dense_rows: np.ndarray) -> pa.StructArray:
    """Spark's vector struct for rows ``x``: dense vectors where ``dense_rows``, else sparse
    (NaN counts as stored)."""
    kinds, sizes, idx, vals, ioff, voff = [], [], [], [], [0], [0]
    for row, dense in zip(x, dense_rows):
        cols = np.arange(len(row)) if dense else np.flatnonzero(row != 0)
        kinds.append(1 if dense else 0)
        sizes.append(None if dense else len(row))
        if not dense:
            idx += cols.tolist()
        vals += row[cols].tolist()
        ioff.append(len(idx))
        voff.append(len(vals))
    idx_t = pa.list_(pa.field("element", pa.int32(), False))
    val_t = pa.list_(pa.field("element", pa.float64(), False))
    mask = pa.array(np.asarray(dense_rows, dtype=bool))
    indices = pa.ListArray.from_arrays(pa.array(ioff, pa.int32()), pa.array(idx, pa.int32()),
                                       type=idx_t, mask=mask)
    return pa.StructArray.from_arrays(
        [pa.array(kinds, pa.int8()), pa.array(sizes, pa.int32()), indices,
         pa.ListArray.from_arrays(pa.array(voff, pa.int32()), pa.array(vals, pa.float64()),
                                  type=val_t)],
        fields=[pa.field("type", pa.int8(), False), pa.field("size", pa.int32()),
                pa.field("indices", idx_t), pa.field("values", val_t)])


def _rows(n: int, seed: int, nan_rows: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, WIDTH)), 3)
    x[rng.random(x.shape) < 0.6] = 0
    x[:, 3] = 2.5                                   # a constant column, left out by the scaler
    x[rng.choice(n, nan_rows, replace=False), 7] = np.nan
    return x


def _table(directory, x: np.ndarray, dense_share: float = 0.3, groups=(40, 33)) -> np.ndarray:
    """Two Parquet files of rows ``x`` in row groups of ``groups`` rows; returns ``x``."""
    directory.mkdir()
    dense = np.random.default_rng(1).random(len(x)) < dense_share
    half = len(x) // 2
    for part, (a, b) in enumerate([(0, half), (half, len(x))]):
        pq.write_table(pa.table({"features": _vectors(x[a:b], dense[a:b])}),
                       str(directory / f"part-{part:05d}.parquet"), row_group_size=groups[part])
    return x


def _scaler(x: np.ndarray, standardize: str = "h2o"):
    ok = x[~np.isnan(x).any(axis=1)]
    stats = FeatureStats(count=len(ok), mean=ok.mean(0), std=ok.std(0, ddof=1),
                         min=ok.min(0), max=ok.max(0))
    scaling = compute_scaling(stats, standardize, True)
    spec = {"input_size": WIDTH, "kept": int(len(scaling.keep)), "hidden": [6],
            "activation": "tanh", "output_activation": "linear"}
    return spec, scaling


@pytest.mark.parametrize("whole", [False, True], ids=["ids-per-batch", "ids-per-epoch"])
@pytest.mark.parametrize("world,batch,skip", [(1, 16, False), (2, 7, True), (3, 64, False),
                                              (1, 1, True)])
def test_memory_epochs_are_the_streamed_batches_scaled(tmp_path, world, batch, skip, whole):
    """Kept rows give the streamed batches scaled, whether the row ids of an epoch go to
    the device batch by batch (CPU) or in one copy once loaded (a GPU's way)."""
    x = _table(tmp_path / "t", _rows(160, 3, nan_rows=9))
    spec, scaling = _scaler(x)
    net = build_network(spec)
    net.scaler.set_statistics(**scaling.tensors())
    for rank in range(world):
        streamed = ParquetBatches(str(tmp_path / "t"), WIDTH, batch, seed=4, rank=rank,
                                  world_size=world)
        kept = MemoryEpochs(ParquetBatches(str(tmp_path / "t"), WIDTH, batch, seed=4,
                                           rank=rank, world_size=world),
                            net.scaler, skip_missing=skip)
        kept.whole_epoch_ids = whole
        assert kept.width == spec["kept"] and len(kept) == streamed.steps
        for epoch in range(3):
            got = list(kept.epoch(epoch))
            want = list(streamed.epoch(epoch))
            assert len(got) == len(want) == streamed.steps
            for g, w in zip(got, want):
                raw = torch.from_numpy(w)
                if skip:
                    raw = raw[~torch.isnan(raw).any(dim=1)]
                with torch.no_grad():
                    expected = net.scaler(raw)
                assert g.shape == expected.shape
                assert torch.equal(g, expected)      # bit for bit, NaN imputed alike
        if world == 1:
            assert kept.loaded.all()
            if skip:
                assert kept.missing.sum() == 9


def _fit_digest(tmp_path, epoch_memory, **kw):
    x = _rows(150, 5, nan_rows=kw.pop("nan_rows", 0))
    directory = tmp_path / "fit"
    if not directory.exists():
        _table(directory, x, dense_share=0.5, groups=(30, 25))
    spec, scaling = _scaler(x, kw.pop("standardize", "h2o"))
    job = TrainJob(train_path=str(directory), valid_path=str(directory), spec=spec,
                   scaling=scaling.tensors(),
                   config=TrainConfig(epochs=3, seed=2, stopping_rounds=0, **kw.pop("cfg", {})),
                   batch_size=kw.pop("batch", 16), seed=2, progress="none",
                   epoch_memory=epoch_memory)
    state, history = run_rank(job, **kw)
    digest = hashlib.sha256()
    for k in sorted(state):
        digest.update(state[k].numpy().tobytes())
    return digest.hexdigest(), [{k: v for k, v in h.items() if k not in ("seconds", "rows_per_s")}
                                for h in history]


@pytest.mark.parametrize("kw", [{}, {"batch": 7, "rank": 1, "world_size": 2},
                                {"standardize": "none", "batch": 64,
                                 "cfg": {"noise": "gaussian", "noise_level": 0.1}},
                                {"nan_rows": 12, "cfg": {"skip_missing": True}},
                                {"nan_rows": 12}])
def test_a_fit_from_memory_equals_a_streamed_fit(tmp_path, caplog, kw):
    with caplog.at_level(logging.INFO, logger="sparkae"):
        kept = _fit_digest(tmp_path, None, **dict(kw))
    assert "kept in memory after its first read" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sparkae"):
        streamed = _fit_digest(tmp_path, 0, **dict(kw))
    assert "every epoch is read from the materialized files" in caplog.text
    assert kept == streamed
    assert streamed[1][-1]["train_mse"] < streamed[1][0]["train_mse"]


def test_budget_setting_and_errors():
    assert budget_bytes(0) == 0 and budget_bytes(12345) == 12345
    assert 0 < budget_bytes() <= 1 << 30
    with pytest.raises(ValueError, match=r"epoch_memory: got -1, expected a number of bytes"):
        budget_bytes(-1)


def test_sparse_batches_are_not_kept(tmp_path):
    _table(tmp_path / "t", _rows(30, 2))
    source = ParquetBatches(str(tmp_path / "t"), WIDTH, 8, sparse=True)
    with pytest.raises(ValueError, match="only dense batches are kept in memory"):
        MemoryEpochs(source, lambda z: z)


def test_row_ids_are_cut_and_shuffled_like_rows():
    x = np.arange(60, dtype=np.float32).reshape(30, 2)
    sizes = batch_sizes(30, 5, 7)
    rows = list(assemble([CsrRows.from_dense(x[i:i + 10]) for i in range(0, 30, 10)], sizes,
                         np.random.default_rng(9), window=2))
    ids = list(assemble([RowIds(np.arange(i, i + 10)) for i in range(0, 30, 10)], sizes,
                        np.random.default_rng(9), window=2))
    assert [len(b) for b in ids] == sizes
    for r, i in zip(rows, ids):
        np.testing.assert_array_equal(r.dense(), x[i.ids])


def test_read_ahead_returns_every_unit_in_order(tmp_path):
    x = _table(tmp_path / "t", _rows(200, 6), groups=(17, 23))
    reader = ParquetBatches(str(tmp_path / "t"), WIDTH, 8)
    order = [3, 0, 5, 1, 2, 4, 3]
    got = list(reader.read_ahead(order))
    assert len(got) == len(order)
    for index, block in zip(order, got):
        want = reader.read(index)
        np.testing.assert_array_equal(block.indptr, want.indptr)
        np.testing.assert_array_equal(block.cols, want.cols)
        np.testing.assert_array_equal(block.vals, want.vals)
    streamed = np.concatenate([b for b in ParquetBatches(str(tmp_path / "t"), WIDTH, 8,
                                                          shuffle=False).epoch(0)])
    np.testing.assert_array_equal(streamed, x.astype(np.float32))


@pytest.mark.parametrize("dense_share", [0.0, 0.4, 1.0])
def test_decode_all_sparse_mixed_and_all_dense_columns(dense_share):
    x = _rows(50, 8, nan_rows=3)
    dense = np.random.default_rng(2).random(len(x)) < dense_share   # 0: none, 1: all
    lengths, cols, vals = decode_vectors(_vectors(x, dense), WIDTH)
    assert cols.dtype == np.int64 and vals.dtype == np.float32
    block = CsrRows.from_lengths(lengths, cols, vals, WIDTH)
    np.testing.assert_array_equal(block.dense(), x.astype(np.float32))
    with pytest.raises(ValueError, match="expects 21"):
        decode_vectors(_vectors(x, dense), WIDTH + 1)


def test_the_epoch_memory_param_reaches_the_ranks(small_dense, caplog):
    """``Autoencoder(epoch_memory=0)`` streams every epoch from the files, the default keeps
    the rows in memory; the fits are the same."""
    from sparkae import Autoencoder

    _, df = small_dense
    weights = {}
    for setting, said in ((0, "every epoch is read from the materialized files"),
                          (None, "kept in memory after its first read")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="sparkae"):
            model = Autoencoder(features_col="vec", hidden=[4], epochs=2, seed=5,
                                stopping_rounds=0, epoch_memory=setting).fit(df)
        assert said in caplog.text
        assert model.getOrDefault("epoch_memory") == setting
        weights[setting] = model._state
    assert weights[0].keys() == weights[None].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[None][key]), key


def test_rows_scattered_on_a_device_equal_the_host_scatter():
    """The scatter a GPU runs (batches.scatter_on) gives scatter_rows exactly, here on the
    CPU: NaN kept, empty rows, int32 columns and float32 values as CsrRows holds them."""
    rng = np.random.default_rng(3)
    lengths = np.array([3, 0, 5, 1, 0, 7])
    cols = np.concatenate([np.sort(rng.choice(9, k, replace=False)) for k in lengths])
    vals = rng.random(len(cols)).astype(np.float32)
    vals[4] = np.nan
    got = batches.scatter_on(lengths, cols.astype(np.int32), vals, 9, torch.device("cpu"))
    want = batches.scatter_rows(lengths, cols, vals, 9)
    assert got.dtype == torch.float32 and got.shape == (6, 9)
    np.testing.assert_array_equal(got.numpy(), want)
    block = batches.CsrRows.from_lengths(lengths, cols, vals, 9)
    np.testing.assert_array_equal(block.dense_on(torch.device("cpu")).numpy(), want)
    empty = batches.scatter_on(np.zeros(0, np.int64), np.zeros(0, np.int32),
                               np.zeros(0, np.float32), 9, torch.device("cpu"))
    assert empty.shape == (0, 9)
