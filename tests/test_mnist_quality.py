"""The foundation's quality bar on real data: train on the bundled sample with hidden [100],
tanh, 10 epochs; reconstruct the official MNIST test set (10,000 images)."""

from __future__ import annotations

import numpy as np
import pytest

from sparkae import Autoencoder
from sparkae.datasets import read_mnist_idx


@pytest.mark.slow
def test_mnist_test_set_reconstruction_mse_at_most_0_010(spark, mnist_sample, mnist_test_paths):
    model = Autoencoder(hidden=[100], activation="tanh", epochs=10, seed=123).fit(mnist_sample)
    test = read_mnist_idx(spark, *mnist_test_paths)
    model.set(model.outputs, ["reconstruction", "reconstruction_mse"])
    pdf = model.transform(test).select("id", "features", "reconstruction").toPandas()
    assert len(pdf) == 10_000
    x = np.stack([v.toArray() for v in pdf.features]) / 255.0
    rec = np.stack(pdf.reconstruction.to_numpy()) / 255.0
    mse = float(((rec - x) ** 2).mean())
    # H2O-3 3.46 reaches 0.0147 with these settings; a plain Torch loop 0.0061
    print(f"MNIST test-set reconstruction MSE (pixels in [0, 1]): {mse:.5f}")
    assert mse <= 0.010, mse
    assert model.summary.history[-1]["train_mse"] < model.summary.history[0]["train_mse"] / 2
