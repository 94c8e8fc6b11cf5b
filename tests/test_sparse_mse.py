"""Sparse rows' reconstruction error without a full-width output (sparkae.scoring.sparse_mse):
the algebra against the explicit sum, and the Scorer's sparse path against the dense
forward pass, with and without clipping, for every output it serves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparkae import scoring
from sparkae.scoring import sparse_mse
from sparkae.scoring.forward import Scorer
from tests.conftest import scoring_net, sparse_block, sparse_rows

THRESHOLD = 0.05


def test_squared_error_equals_the_explicit_sum():
    rng = np.random.default_rng(3)
    d, k, n = 200, 7, 12
    w, b, zero = (torch.from_numpy(rng.normal(size=s)).float() for s in ((d, k), d, d))
    h = torch.from_numpy(rng.normal(size=(n, k))).float()
    x = np.zeros((n, d))
    mask = rng.random((n, d)) < 0.05
    mask[3] = False                                   # a row that stores nothing
    x[mask] = rng.normal(size=mask.sum())
    r, c = np.nonzero(mask)
    crow = torch.from_numpy(np.concatenate([[0], np.cumsum(mask.sum(1))]))
    z = np.where(mask, x, zero.double().numpy())      # the row's scaled input
    want = (((h.double() @ w.double().T + b.double()).numpy() - z) ** 2).sum(1)
    got = sparse_mse.squared_error(sparse_mse.gram_terms(w, b, zero), h, crow,
                                   torch.from_numpy(c), torch.from_numpy(x[r, c]))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_stored_outputs_sampled_and_gathered_in_slices_agree(monkeypatch):
    """The output layer at each stored entry: the CPU's sampled product and the gather in
    slices (other devices) give the explicit ``W[c] . h + b[c]``, entries in any column
    order, a row that stores nothing included."""
    rng = np.random.default_rng(5)
    d, k, n = 50, 6, 9
    w, b, zero = (torch.from_numpy(rng.normal(size=s)) for s in ((d, k), d, d))
    h = torch.from_numpy(rng.normal(size=(n, k)))
    lengths = rng.integers(0, 8, size=n)
    lengths[2] = 0
    cols = np.concatenate([rng.permutation(d)[:m] for m in lengths]).astype(np.int64)
    rows = np.repeat(np.arange(n), lengths)
    want = (h.numpy()[rows] * w.numpy()[cols]).sum(1) + b.numpy()[cols]
    crow = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    terms = sparse_mse.gram_terms(w, b, zero)
    entry_rows = torch.from_numpy(rows)
    sampled = sparse_mse.stored_outputs(terms, h, crow, torch.from_numpy(cols), entry_rows)
    np.testing.assert_allclose(sampled.numpy(), want, rtol=1e-12)

    def missing(*a, **kw):
        raise NotImplementedError("no sampled_addmm")

    monkeypatch.setattr(torch.sparse, "sampled_addmm", missing)
    monkeypatch.setattr(sparse_mse, "GATHER_VALUES", 2 * k)      # slices of two entries
    gathered = sparse_mse.stored_outputs(terms, h, crow, torch.from_numpy(cols), entry_rows)
    np.testing.assert_allclose(gathered.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("kept", [None, 23])
@pytest.mark.parametrize("outputs", [["reconstruction_mse"], ["is_anomaly"],
                                     ["deep_features", "reconstruction_mse", "is_anomaly"]])
def test_the_sparse_path_needs_no_decoder_and_matches_the_dense_forward(outputs, kept, clip):
    net = scoring_net(kept=kept)
    x = sparse_rows(60, 30, 0.03, seed=2)
    x[4, 5] = np.nan                     # a stored missing value: imputed by the model
    x[7, 3] = 40.0                       # far outside the training range: clipped with clip
    ref = scoring.score_matrix(net, x, outputs, 2, THRESHOLD, clip=clip)
    scorer = Scorer(net, torch.device("cpu"))
    assert scorer.gram_applies(outputs)
    block = sparse_block(x)
    assert block.nnz < scoring.SPARSE_DENSITY * 60 * scorer.kept      # the CSR path
    net.decode_from_last = lambda h: pytest.fail("the decoder ran")
    got = scorer.score(block, outputs, 2, THRESHOLD, batch_size=7, clip=clip)
    assert set(got) == set(outputs)
    for o in outputs:
        if o == "is_anomaly":
            np.testing.assert_array_equal(got[o], ref[o])
        else:
            np.testing.assert_allclose(got[o], ref[o], rtol=1e-5, atol=1e-6, err_msg=o)
    assert ref["is_anomaly" if "is_anomaly" in ref else "reconstruction_mse"].any()


def test_outputs_that_need_every_feature_or_a_nonlinear_output_take_the_full_path():
    scorer = Scorer(scoring_net(), torch.device("cpu"))
    assert not scorer.gram_applies(["deep_features"])          # no decoder at all
    assert not scorer.gram_applies(["reconstruction_mse", "feature_errors"])
    assert not scorer.gram_applies(["reconstruction"])
    net = scoring_net()
    net.output_act = torch.nn.Tanh()
    assert not Scorer(net, torch.device("cpu")).gram_applies(["reconstruction_mse"])
