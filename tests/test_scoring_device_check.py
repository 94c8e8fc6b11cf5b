"""Dense rows checked for NaN and infinite values on the scoring device (what a GPU worker
does: ``Scorer.check_on_device``), run here on the CPU: the same scores and row statuses
as rows checked when decoded, for every dense layout, both ``skip_missing`` settings,
null rows and passes that split the batch."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest
import torch

from sparkae.data import arrow_rows
from sparkae.data.batches import to_device
from sparkae.scoring.encode import score_column
from sparkae.scoring.forward import Scorer
from tests.conftest import scoring_net, vec_array

SIZE = 6
ALL = ["deep_features", "reconstruction_mse", "feature_errors", "reconstruction", "is_anomaly"]
THRESHOLD = 0.05


def _rows():
    """Rows of width SIZE: finite ones, a null row, NaN, +inf, -inf and NaN beside inf."""
    rng = np.random.default_rng(3)
    rows = [list(rng.normal(size=SIZE)) for _ in range(9)]
    rows[1] = None
    rows[3][2] = np.nan
    rows[4][0] = np.inf
    rows[6][5] = -np.inf
    rows[7][1], rows[7][4] = np.nan, np.inf
    return rows


def _column(layout, rows):
    if layout == "dense vectors":
        return vec_array([None if r is None else ("d", r) for r in rows])
    kind = pa.float32() if layout == "float32 lists" else pa.float64()
    return pa.array(rows, type=(pa.large_list if "large" in layout else pa.list_)(kind))


def _scorers():
    net = scoring_net(size=SIZE, hidden=(5, 2, 5))
    checked = Scorer(net, torch.device("cpu"))
    on_device = Scorer(net, torch.device("cpu"))
    on_device.check_on_device = True
    return checked, on_device


def _assert_same(got, want):
    for a, b in zip(got, want):
        assert a.type == b.type
        for x, y in zip(a.to_pylist(), b.to_pylist()):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float),
                                           rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("skip_missing", [False, True])
@pytest.mark.parametrize("layout", ["float32 lists", "float64 lists", "float64 large lists",
                                    "dense vectors"])
def test_rows_checked_on_the_device_score_as_rows_checked_when_decoded(layout, skip_missing):
    checked, on_device = _scorers()
    rows = _rows()
    for col in (_column(layout, rows), _column(layout, rows).slice(2, 6),
                _column(layout, [r for r in rows if r is None or np.isfinite(r).all()]),
                _column(layout, [None, None])):
        for batch_size in (2, 100):       # passes that split the batch, and one pass
            want = score_column(col, checked, ALL, 2, THRESHOLD, batch_size, True,
                                skip_missing)
            got = score_column(col, on_device, ALL, 2, THRESHOLD, batch_size, True,
                               skip_missing)
            assert got[0] == want[0] == ALL + ["status"]
            assert got[1][-1].to_pylist() == want[1][-1].to_pylist()
            _assert_same(got[1][:-1], want[1][:-1])
    statuses = score_column(_column(layout, rows), on_device, ["reconstruction_mse"], 2,
                            None, 4, True, skip_missing)[1][-1].to_pylist()
    missing = arrow_rows.MISSING if skip_missing else arrow_rows.SCORED
    assert statuses == [0, 1, 0, missing, 2, 0, 2, 2, 0]


@pytest.mark.parametrize("layout", ["float64 lists", "dense vectors"])
def test_unchecked_rows_are_arrows_values_uncast_and_uncopied(layout):
    col = _column(layout, _rows())
    block = arrow_rows.decode_rows(col, SIZE, check_finite=False)
    assert not block.checked and block.dense.dtype == np.float64 and block.rows == 8
    values = (col.field("values") if layout == "dense vectors" else col).flatten()
    assert block.dense.ctypes.data == values.buffers()[1].address   # Arrow's own buffer
    nan = np.isnan(block.dense).any(axis=1)
    keep = block.mark_nonfinite(nan, np.isinf(block.dense).any(axis=1))
    assert block.checked and keep.tolist() == [True, True, True, False, True, False, False,
                                               True]
    assert block.status.tolist() == [0, 1, 0, 0, 2, 0, 2, 2, 0] and block.rows == 5
    with pytest.raises(ValueError, match="were checked when decoded"):
        block.mark_nonfinite(nan, nan)
    fresh = arrow_rows.decode_rows(col, SIZE, check_finite=False)
    with pytest.raises(ValueError, match="3 and 3 flags for 8 held rows"):
        fresh.mark_nonfinite(nan[:3], nan[:3])


def test_lists_with_null_values_or_integers_are_checked_when_decoded():
    """Null values (imputed, or missing) and integer lists take the checked decode."""
    for col in (pa.array([[1.0, None], [2.0, 3.0]], type=pa.list_(pa.float64())),
                pa.array([[1, 2], [3, 4]], type=pa.list_(pa.int32()))):
        block = arrow_rows.decode_rows(col, 2, check_finite=False)
        assert block.checked and block.dense.dtype == np.float32


def test_to_device_casts_and_reads_arrows_read_only_buffers_quietly():
    x = np.linspace(0, 1, 12).reshape(3, 4)
    x.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_device(x, torch.device("cpu"), np.float32)
        u = to_device(x, torch.device("cpu"))
    assert t.dtype == torch.float32 and u.dtype == torch.float64
    np.testing.assert_array_equal(t.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(u.numpy(), x)
