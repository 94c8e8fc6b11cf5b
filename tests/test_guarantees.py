"""The README's guarantees: bad input caught with a clear error naming the thing,
the value found and what is allowed; safe model files and configs; loopback-only services;
private temporary files; checkpoints that fail loudly."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors

from sparkae import Autoencoder, AutoencoderModel
from sparkae.jobs import score_settings, train_settings
from sparkae.train.checkpoint import CheckpointError
from tests.conftest import ROOT, listening_sockets


@pytest.fixture(scope="module")
def vec_df(spark):
    return spark.createDataFrame([(i, Vectors.dense([float(i), float(i % 3), float(i % 5)]))
                                  for i in range(40)], ["id", "features"])


@pytest.fixture(scope="module")
def small_model(vec_df):
    return Autoencoder(hidden=[2], epochs=2, seed=1, mini_batch_size=8).fit(vec_df)


# -- features -------------------------------------------------------------------------------

def test_a_single_row_is_refused(spark):
    one = spark.createDataFrame([(Vectors.dense([1.0, 2.0]),)], ["features"])
    with pytest.raises(ValueError, match=r"the training DataFrame has a single row: features_col "
                                         r"'features' needs at least 2 rows"):
        Autoencoder(epochs=1).fit(one)


def test_duplicate_column_names_are_named(spark):
    dup = spark.createDataFrame([(1.0, 2.0, 3.0), (2.0, 1.0, 0.0)], ["a", "a", "b"])
    with pytest.raises(ValueError, match=r"features_cols: the DataFrame has 2 columns named 'a'; "
                                         r"column names must be unique"):
        Autoencoder(features_cols=["a", "b"]).fit(dup)
    with pytest.raises(ValueError, match=r"features_cols: columns \['b'\] are listed more than "
                                         r"once"):
        Autoencoder(features_cols=["b", "b"]).fit(dup)


def _out_of_range_vector():
    """A SparseVector of size 3 holding index 5 (pyspark refuses to build one, but a
    Parquet file written elsewhere can hold it)."""
    v = Vectors.sparse(3, [1], [1.0])
    v.indices = np.array([5], dtype=np.int32)
    return v


def test_sparse_indices_out_of_range(spark, small_model):
    rows = [(_out_of_range_vector(),)] + [(Vectors.sparse(3, [i % 3], [float(i + 1)]),)
                                          for i in range(10)]
    bad = spark.createDataFrame(rows, ["features"])
    with pytest.raises(ValueError, match=r"features_col 'features' has a sparse vector with index "
                                         r"5 outside \[0, 3\)"):
        Autoencoder(epochs=1).fit(bad)
    with pytest.raises(Exception, match=r"scoring input: a sparse vector has an index outside "
                                        r"\[0, 3\)"):
        small_model.transform(bad).collect()


def test_extreme_values_train_when_scaled_and_fail_clearly_when_not(spark):
    rows = [(Vectors.dense([float(i), float(i % 3)]),) for i in range(30)]
    big = spark.createDataFrame(rows + [(Vectors.dense([1e30, 1.0]),)], ["features"])
    model = Autoencoder(hidden=[2], epochs=2, seed=3).fit(big)
    assert all(np.isfinite(h["train_mse"]) for h in model.summary.history)
    mse = [r.reconstruction_mse for r in model.transform(big).collect()]
    assert all(np.isfinite(mse))
    with pytest.raises(FloatingPointError, match=r"training diverged in epoch 1: the loss is inf; "
                                                 r"lower 'rate' or check the input scaling"):
        Autoencoder(hidden=[2], epochs=2, standardize="none", seed=3).fit(big)


def test_nan_and_infinity_never_reach_the_scores(spark, small_model):
    df = spark.createDataFrame([(0, Vectors.dense([float("nan"), 1.0, 2.0])),
                                (1, Vectors.dense([float("inf"), 1.0, 1.0])),
                                (2, Vectors.dense([1.0, 1.0, 1.0]))], ["id", "features"])
    got = {r.id: r.reconstruction_mse for r in small_model.transform(df).collect()}
    assert np.isfinite(got[0]) and np.isfinite(got[2])   # NaN: imputed with the training mean
    assert got[1] is None                                  # infinity: no score, never a number
    skip = small_model.copy({small_model.missing_values_handling: "skip"})
    got = {r.id: r.reconstruction_mse for r in skip.transform(df).collect()}
    assert got[0] is None and got[1] is None and np.isfinite(got[2])


# -- params and configs -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizer="adam", momentum_start=0.5), r"'momentum_start': got 0.5 with "
                                                  r"optimizer='adam'; momentum applies only to "
                                                  r"optimizer='sgd'"),
    (dict(anomaly_quantile=1.5), r"'anomaly_quantile': got 1.5, expected"),
    (dict(sparsity_beta=0.1, average_activation=-0.5, activation="rectifier"),
     r"'average_activation': got -0.5, expected a number in \(0, 1\) for activation "
     r"'rectifier'"),
    (dict(input_dropout_ratio=1.0), r"'input_dropout_ratio': got 1.0"),
])
def test_params_out_of_range_or_exclusive(vec_df, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Autoencoder(**kwargs).fit(vec_df)


def test_unknown_config_keys_get_a_suggestion(tmp_path):
    with pytest.raises(ValueError, match=r"did you mean 'epochs'"):
        train_settings.load(None, ["model.epoch=3"])
    with pytest.raises(ValueError, match=r"did you mean"):
        score_settings.load(None, ["scoring.batchsize=3"], {})


# -- models ------------------------------------------------------------------------------

def test_model_files_newer_truncated_or_escaping_are_refused(tmp_path, small_model):
    path = tmp_path / "m"
    small_model.save(str(path))
    manifest_path = path / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    gen = path / manifest["generation"]
    meta_path = gen / "metadata.json"
    original = meta_path.read_bytes()
    meta = json.loads(original)

    newer = json.dumps(dict(meta, format_version=meta["format_version"] + 1)).encode()
    meta_path.write_bytes(newer)
    files = dict(manifest["files"], **{"metadata.json": {
        "sha256": hashlib.sha256(newer).hexdigest(), "size": len(newer)}})
    manifest_path.write_text(json.dumps(dict(manifest, files=files)))
    with pytest.raises(ValueError, match=r"has format version \d+; this sparkae reads versions up "
                                         r"to \d+: upgrade sparkae"):
        AutoencoderModel.load(str(path))

    escaping = dict(manifest, files={"../../outside.safetensors": {"sha256": "0" * 64}})
    manifest_path.write_text(json.dumps(escaping))
    with pytest.raises(ValueError, match=r"names the file '../../outside.safetensors'; files "
                                         r"must be plain names inside the directory"):
        AutoencoderModel.load(str(path))

    manifest_path.write_text(json.dumps(manifest))
    meta_path.write_bytes(original)
    weights = gen / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])          # truncated
    with pytest.raises(ValueError, match="truncated or altered"):
        AutoencoderModel.load(str(path))
    weights.write_bytes(data[:-4] + b"\0\0\0\0")         # same size, altered
    with pytest.raises(ValueError, match="corrupt or was altered: sha256"):
        AutoencoderModel.load(str(path))
    manifest_path.unlink()                               # a save killed before its manifest
    with pytest.raises(ValueError, match="has no _manifest.json"):
        AutoencoderModel.load(str(path))


class _Plant:
    """Unpickling this writes a marker file: proof that something unpickled it."""

    marker = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


def test_nothing_is_ever_unpickled_from_a_model_directory(tmp_path, small_model, vec_df):
    path = tmp_path / "m"
    small_model.save(str(path))
    marker = tmp_path / "pwned"
    _Plant.marker = str(marker)
    evil = pickle.dumps(_Plant())
    for name in ("model.pt", "weights.pt", "model.pkl", "state.pickle"):
        (path / name).write_bytes(evil)
    loaded = AutoencoderModel.load(str(path))
    loaded.transform(vec_df).collect()
    gen = json.loads((path / "_manifest.json").read_text())["generation"]
    (path / gen / "weights.safetensors").write_bytes(evil)      # a pickle in place of the weights
    with pytest.raises(ValueError, match="truncated or altered"):
        AutoencoderModel.load(str(path))
    assert not marker.exists()


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_the_code_never_unpickles_builds_shell_commands_or_loads_unsafe_yaml():
    found = []
    for path in sorted((ROOT / "sparkae").rglob("*.py")) + sorted((ROOT / "jobs").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "shelve",
                                           "marshal") for n in names):
                    found.append(f"{path.name}:{node.lineno} imports a pickle module")
        for call in _calls(tree):
            fn = ast.unparse(call.func)
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if fn == "torch.load" and kw.get("weights_only") != "True":
                found.append(f"{path.name}:{call.lineno} torch.load without weights_only=True")
            if fn in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                found.append(f"{path.name}:{call.lineno} {fn}")
            if fn in ("os.system", "os.popen", "eval", "exec"):
                found.append(f"{path.name}:{call.lineno} {fn}")
            if kw.get("shell") == "True":
                found.append(f"{path.name}:{call.lineno} shell=True")
    assert not found, found


def test_yaml_tags_that_run_code_are_refused(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model:\n  epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    for load in (lambda: train_settings.load(str(bad), []),
                 lambda: score_settings.load(str(bad), [], {})):
        with pytest.raises(ValueError, match=r"bad.yaml"):
            load()
    with pytest.raises(ValueError):
        train_settings.load(None, [f"model.epochs=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


# -- jobs --------------------------------------------------------------------------------

def _train_job(*sets, timeout=300):
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
    args = [sys.executable, "jobs/train.py", "--log-level", "WARNING"]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_jobs_refuse_unwritable_outputs_and_outputs_over_their_input(spark, tmp_path,
                                                                     small_model, vec_df):
    from sparkae.jobs import score_job

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    src = tmp_path / "input"
    vec_df.write.parquet(str(src))
    small_model.save(str(tmp_path / "model"))
    before = sorted(p.name for p in src.iterdir())

    proc = _train_job(f"output.dir={blocker / 'out'}", "model.epochs=1")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"train: output.dir: '{blocker / 'out'}' cannot be written: '{blocker}' is a file, " \
           "not a directory" in proc.stderr
    proc = _train_job("input.source=parquet", f"input.path={src}", f"output.dir={src}/out",
                      "model.epochs=1", "model.features_col=features", "input.label_col=null")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"would overwrite the input '{src}'" in proc.stderr

    def score(out):
        flags = {"model": str(tmp_path / "model"), "input": str(src), "output": str(out),
                 "run_date": "2024-01-01"}
        return score_job.run_score(spark, score_settings.load(None, [], flags))

    with pytest.raises(ValueError, match=r"output.path: '.*a-file/scores' cannot be written: "
                                         r"'.*a-file' is a file"):
        score(blocker / "scores")
    with pytest.raises(ValueError, match=r"output.path: '.*input' would overwrite the input"):
        score(src)
    with pytest.raises(ValueError, match=r"would overwrite the input '.*model'"):
        score(tmp_path / "model" / "scores")
    assert sorted(p.name for p in src.iterdir()) == before


# -- checkpoints ---------------------------------------------------------------------------

def test_an_unwritable_checkpoint_dir_fails_before_training(vec_df, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint_dir: '.*file/ck' cannot be written: "
                                         r"'.*file' is a file, not a directory"):
        Autoencoder(epochs=1, checkpoint_dir=str(blocker / "ck")).fit(vec_df)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_training_with_a_clear_error(vec_df, tiny_disk):
    # each checkpoint of this network (weights and Adam state) is ~40 KiB: the disk fills up
    df = vec_df.sparkSession.createDataFrame(
        [(Vectors.dense(np.random.default_rng(i).random(40).tolist()),) for i in range(64)],
        ["features"])
    ck = tiny_disk / "ck"
    with pytest.raises(CheckpointError) as err:
        Autoencoder(hidden=[40], epochs=6, seed=2, checkpoint_dir=str(ck)).fit(df)
    text = str(err.value)
    assert "checkpoint_dir: could not write the checkpoint of epoch" in text
    assert "No space left on device" in text and "resume=True" in text
    assert not [p for p in os.listdir(ck) if p.startswith(".")], "a partial checkpoint was left"
    for name in os.listdir(ck):   # what is there is complete
        assert {"state.json", "tensors.safetensors"} <= set(os.listdir(ck / name))


# -- services and temporary files ---------------------------------------------------------

def _tree(pid):
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(c) for c in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            continue
    return out


def test_local_mode_listens_on_loopback_only_and_leaves_no_temp_files(spark, mnist_sample,
                                                                      tmp_path, monkeypatch):
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.update(listening_sockets(_tree(os.getpid())))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        model = Autoencoder(hidden=[8], epochs=1, num_workers=2, seed=1,
                            mini_batch_size=256).fit(mnist_sample.limit(1000))
        model.transform(mnist_sample.limit(200)).collect()
    finally:
        stop.set()
        watcher.join()
    assert seen, "no listening socket was seen (the watcher is broken)"
    import ipaddress

    def loopback(addr):
        ip = ipaddress.ip_address(addr)
        return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None
                                  and ip.ipv4_mapped.is_loopback)

    outside = sorted(a for a in seen if not loopback(a[0]))
    assert not outside, f"listeners beyond loopback: {outside}"
    leftovers = [str(p.relative_to(tmp)) for p in tmp.rglob("*")
                 if not p.name.startswith("sparkae-cache-")]
    assert not leftovers, leftovers
    private = [p for p in tmp.iterdir() if p.name.startswith("sparkae-cache-")]
    for p in private:
        assert (p.stat().st_mode & 0o077) == 0 and not list(p.iterdir())


def test_ray_dashboard_is_off_by_default():
    import inspect

    from sparkae import tune

    assert inspect.signature(tune.grid_search).parameters["include_dashboard"].default is False
    assert inspect.signature(tune.ray_for).parameters["include_dashboard"].default is False


def test_a_rank_killed_by_a_signal_is_named_before_the_ranks_that_failed_after_it():
    from sparkae.train.distributed import rank_failure

    torchrun = (
        'SPARKAE_RANK_FAILED {"rank": 0, "world_size": 2, "type": "RuntimeError", '
        '"message": "Connection closed by peer", "tail": [], "time": 2.0}\n'
        "Root Cause (first observed failure):\n[0]:\n  time      : 2026-11-28_13:27:26\n"
        "  host      : localhost\n  rank      : 1 (local_rank: 0)\n"
        "  exitcode  : -9 (pid: 887)\n  error_file: <N/A>\n"
        "  traceback : Signal 9 (SIGKILL) received by PID 887\n")
    err = rank_failure(RuntimeError(torchrun), None, 2)
    assert err.rank == 1
    assert str(err).startswith("training failed on rank 1 of 2: its process was killed by "
                               "signal 9 (SIGKILL)")
    assert "rank(s) 0 failed after it" in str(err) and "resume=True" in str(err)


def test_a_rank_that_only_lost_its_peer_is_not_named_as_the_cause():
    from sparkae.train.distributed import rank_failure
    from sparkae.train.worker import MARKER

    lost = ('{"rank": 0, "world_size": 2, "type": "RuntimeError", "message": "[pair.cc:553] '
            'Connection closed by peer [127.0.0.1]:12707", "tail": [], "time": 1.0}')
    own = ('{"rank": 1, "world_size": 2, "type": "ValueError", "message": "bad batch", '
           '"tail": ["x"], "time": 2.0}')
    # rank 0 reported first, but only because rank 1 went away: rank 1's own error leads
    err = rank_failure(RuntimeError(f"{MARKER}{lost}\n{MARKER}{own}\n"), None, 2)
    assert err.rank == 1 and str(err).startswith("training failed on rank 1 of 2: ValueError: "
                                                 "bad batch (rank(s) 0 failed after it)")
    # only the consequence reached the driver: the message says so
    err = rank_failure(RuntimeError(f"{MARKER}{lost}\n"), None, 2)
    assert err.rank == 0
    assert "lost its connection to another rank, which failed or was killed first" in str(err)
