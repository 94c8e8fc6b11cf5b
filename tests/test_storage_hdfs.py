"""Cluster storage on a real HDFS (Hadoop's MiniDFSCluster on 127.0.0.1): the driver through
Spark's own HDFS client (Hadoop's FileSystem in the JVM), the ranks, which run without
Spark and without libhdfs here, through WebHDFS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparkae import Autoencoder, AutoencoderModel
from sparkae.io import commit, fs
from sparkae.train import checkpoint

pytestmark = pytest.mark.hdfs


def _scores(m, df):
    return np.array(sorted(r.reconstruction_mse for r in m.transform(df).collect()))


def test_model_save_load_and_killed_overwrite_on_hdfs(small_dense, hdfs_server, hdfs_spark):
    _, df = small_dense
    model = Autoencoder(features_col="vec", hidden=[4], epochs=1, seed=3).fit(df)
    path = f"{hdfs_server.uri}/models/m1"
    model.save(path)
    assert fs.listdir(path)[0] == "_manifest.json" and len(commit.generations(path)) == 1
    loaded = AutoencoderModel.load(path)
    np.testing.assert_array_equal(_scores(loaded, df), _scores(model, df))
    model.write().overwrite().save(path)
    manifest = commit.read_manifest(path)
    fs.delete(f"{path}/_manifest.json")
    with pytest.raises(ValueError, match="has no _manifest.json"):
        AutoencoderModel.load(path)
    fs.write_bytes(f"{path}/_manifest.json", json.dumps(manifest).encode())
    assert AutoencoderModel.load(path).summary.epochs == 1


def test_two_ranks_train_from_a_cache_and_checkpoints_on_hdfs(small_dense, hdfs_server,
                                                              hdfs_spark):
    """The ranks are processes without Spark: they read the cache and rank 0 writes the
    checkpoints through WebHDFS; the resumed fit reads them back on the driver."""
    _, df = small_dense
    root = f"{hdfs_server.uri}/fits/two"
    est = Autoencoder(features_col="vec", hidden=[6], epochs=2, seed=5, num_workers=2,
                      mini_batch_size=32, cache_dir=f"{root}/cache",
                      checkpoint_dir=f"{root}/ck")
    model = est.fit(df)
    assert model.summary.epochs == 2
    assert checkpoint.latest(f"{root}/ck") == f"{root}/ck/epoch-0002"
    assert fs.listdir(f"{root}/cache") == []          # the fit's private entry is gone
    again = est.copy({est.epochs: 3}).fit(df, resume=True)
    assert again.summary.epochs == 3
    model.save(f"{root}/model")
    assert AutoencoderModel.load(f"{root}/model").summary.epochs == 2
