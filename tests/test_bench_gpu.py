"""The GPU benchmark entry (bench/bench_gpu.py): skipped without a GPU, and its whole
measurement run on the CPU at small sizes, so that the script a GPU machine runs is
checked here (its figures are the GPU's subject only on a GPU), its wide sparse checks
(bench/gpu_paths.py) included."""

from __future__ import annotations

import pytest
import torch

from bench import bench_gpu, common


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_entry_is_skipped_without_a_gpu():
    with pytest.raises(common.Skip, match="sees no CUDA device"):
        bench_gpu.run(quick=True)


def test_the_measurement_runs_end_to_end_on_the_cpu():
    r = bench_gpu.measure("cpu", quick=True)
    assert [c["batch"] for c in r["training"]] == list(bench_gpu.TRAIN_BATCHES
                                                       + bench_gpu.DEFAULT_EPOCH_BATCHES)
    assert [c["epochs"] for c in r["training"]] == (
        [r["epochs"]] * len(bench_gpu.TRAIN_BATCHES)
        + [bench_gpu.DEFAULT_EPOCHS[True]] * len(bench_gpu.DEFAULT_EPOCH_BATCHES))
    for cell in r["training"]:
        assert cell["sparkae"]["rows_per_s"] > 0 and cell["plain"]["rows_per_s"] > 0
        assert len(cell["sparkae_runs_rows_per_s"]) == bench_gpu.REPEATS
        # the same network and data: the test MSEs over every pixel are close
        assert abs(cell["sparkae_test_mse"] / cell["plain_test_mse"] - 1) < 0.2
    keys = {f"{lay} batch={b}" for lay in bench_gpu.LAYOUTS for b in bench_gpu.SCORE_BATCHES}
    # on the CPU the A/B row is the check moved to the device (a GPU's own way)
    keys |= {f"{lay} batch={bench_gpu.SCORE_BATCHES[0]}, checked on the device"
             for lay in ("array", "dense")}
    assert set(r["scoring"]["sparkae"]) == keys
    assert all(v > 0 for v in r["scoring"]["sparkae"].values())
    names = [t["name"] for t in r["targets"]]
    # the wide sparse paths, here the CPU against itself: every check runs and agrees
    assert [c["ok"] for c in r["paths"]] == [True] * 6
    assert all(c["value"] == 0 for c in r["paths"]), r["paths"]
    assert len(names) == (2 * len(bench_gpu.TRAIN_BATCHES)
                          + len(bench_gpu.DEFAULT_EPOCH_BATCHES) + len(bench_gpu.LAYOUTS)
                          + len(r["paths"]))
    assert sum("(the estimators' default)" in n for n in names) == \
        len(bench_gpu.DEFAULT_EPOCH_BATCHES)
    assert r["device"]["device"] == "cpu" and len(r["tables"]) == 2
