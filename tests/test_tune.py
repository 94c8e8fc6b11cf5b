"""Ray Tune grids: a real local Ray on 127.0.0.1, started once for the module."""

from __future__ import annotations

import json
import os
import uuid

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported
ray = pytest.importorskip("ray")

from sparkae import Autoencoder, AutoencoderModel  # noqa: E402
from sparkae.tune import RECORD, expand_grid, grid_search, trial_key  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2,
             include_dashboard=False, log_to_driver=False, object_store_memory=256 * 1024**2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def split(small_dense):
    _, df = small_dense
    train, valid = df.randomSplit([0.75, 0.25], seed=3)
    return train.cache(), valid.cache()


def _est(**kw):
    return Autoencoder(**dict(dict(features_col="vec", epochs=2, seed=5, mini_batch_size=32),
                              **kw))


def test_expand_grid_errors():
    assert len(expand_grid({"hidden": [[4], [6, 3, 6]], "rate": [0.1, 0.01]})) == 4
    assert len(expand_grid({"hidden": [[4], [6]], "rate": [0.1, 0.01]}, "random",
                           num_samples=3, seed=1)) == 3
    with pytest.raises(ValueError, match="did you mean 'hidden'"):
        expand_grid({"hiden": [[4]]})
    with pytest.raises(ValueError, match="give a list of lists"):
        expand_grid({"hidden": [4, 6]})
    with pytest.raises(ValueError, match="expected a non-empty list"):
        expand_grid({"rate": 0.1})
    with pytest.raises(ValueError, match="num_samples"):
        expand_grid({"rate": [0.1]}, "random")


def test_grid_leaderboard_best_model_failed_trials_and_input_prepared_once(local_ray, split,
                                                                          tmp_path, caplog):
    """One grid (a Ray Tune run costs a minute of CI on shared cores) for the leaderboard's
    order, the best model, trials that fail on a bad Param or a bad column, and the input
    prepared once per feature setting."""
    train, valid = split
    with caplog.at_level("INFO", logger="sparkae"):
        res = grid_search(_est(hidden=[4], anomaly_quantile=0.9), train,
                          {"features_col": ["vec", "nope"],
                           "activation": ["tanh", "rectifier", "bogus"]},
                          validation_df=valid, max_concurrent_trials=2)
    # 6 trials, 2 feature settings: the driver prepared each once, the trials trained on it
    assert "prepared the input once" in caplog.text and "(2 preparation(s))" in caplog.text
    board = res.leaderboard
    assert list(board["status"]) == ["ok", "ok", "error", "error", "error", "error"]
    ok = board[board["status"] == "ok"]
    assert (ok["features_col"] == "vec").all()
    assert sorted(ok["activation"]) == ["rectifier", "tanh"]
    assert ok["validation_mse"].is_monotonic_increasing
    assert (ok["epochs"] == 2).all() and (ok["train_mse"] > 0).all()
    failed = board[board["status"] == "error"]
    bogus = failed[(failed["features_col"] == "vec")]
    assert list(bogus["activation"]) == ["bogus"]
    assert "Autoencoder param 'activation': got 'bogus'" in bogus.iloc[0]["error"]
    assert all("nope" in e for e in failed[failed["features_col"] == "nope"]["error"])
    assert res.best_params == {"features_col": "vec",
                               "activation": board.iloc[0]["activation"]}
    scored = res.best_model.transform(valid).select("reconstruction_mse").toPandas()
    assert len(scored) == valid.count() and scored["reconstruction_mse"].notna().all()
    res.best_model.save(str(tmp_path / "best"))
    assert AutoencoderModel.load(str(tmp_path / "best")).input_size == 12
    # trials train without Spark; the best model's quantile threshold is taken once here
    errors = res.best_model.transform(train).select("reconstruction_mse").toPandas()
    expected = errors["reconstruction_mse"].quantile(0.9)
    assert res.best_model.threshold == pytest.approx(expected, rel=0.05)


def test_resume_skips_finished_trials(local_ray, split, tmp_path):
    train, _ = split
    store = str(tmp_path / "store")
    # "interrupted" after one trial: only the first combination got recorded
    first = grid_search(_est(), train, {"hidden": [[4]]}, storage_path=store)
    assert list(first.leaderboard["status"]) == ["ok"]
    res = grid_search(_est(), train, {"hidden": [[4], [6]]}, storage_path=store)
    assert sorted(map(tuple, res.leaderboard["hidden"])) == [(4,), (6,)]
    assert (res.leaderboard["status"] == "ok").all()
    assert res.leaderboard["train_mse"].is_monotonic_increasing
    lines = [json.load(open(p)) for p in sorted((tmp_path / "store" / RECORD).glob("*.json"))]
    key4 = trial_key(dict(_est().param_values(), hidden=[4]))
    assert sum(r["key"] == key4 for r in lines) == 1   # not rerun
    assert len(lines) == 2
    again = grid_search(_est(), train, {"hidden": [[4], [6]]}, storage_path=store)
    assert len(list((tmp_path / "store" / RECORD).glob("*.json"))) == 2   # nothing rerun
    assert again.best_model is not None


def test_asha_reports_every_epoch(local_ray, split):
    train, valid = split
    res = grid_search(_est(epochs=3, stopping_rounds=0), train, {"hidden": [[4], [6]]},
                      validation_df=valid, scheduler="asha")
    board = res.leaderboard
    assert set(board["status"]) <= {"ok", "stopped"} and "ok" in set(board["status"])
    done = board[board["status"] == "ok"]
    assert (done["epochs"] == 3).all()        # trained epoch by epoch to the end
    assert res.best_model.summary.epochs == 3
    assert len(res.best_model.summary.history) == 3


def test_bad_arguments_fail_before_ray(split):
    train, _ = split
    with pytest.raises(ValueError, match="scheduler"):
        grid_search(_est(), train, {"hidden": [[4]]}, scheduler="hyperband")
    with pytest.raises(ValueError, match="did you mean 'activation'"):
        grid_search(_est(), train, {"activaton": ["tanh"]})


def test_tune_configs():
    from sparkae.jobs import tune_settings

    hidden = tune_settings.load("conf/grid_hidden.yaml")
    assert hidden["grid"]["hidden"][2] == [300, 100, 300] and len(hidden["grid"]["hidden"]) == 5
    assert hidden["model"]["activation"] == "tanh"
    sparsity = tune_settings.load("conf/grid_sparsity.yaml", ["tune.scheduler=asha"])
    assert sparsity["grid"]["sparsity_beta"] == [0.01, 0.05, 0.1, 0.2]
    assert sparsity["model"]["average_activation"] == -0.1
    with pytest.raises(ValueError, match="give a list of lists"):
        tune_settings.load("conf/grid_hidden.yaml", ["grid.hidden=[50, 100]"])
    with pytest.raises(ValueError, match="did you mean 'scheduler'"):
        tune_settings.load("conf/grid_hidden.yaml", ["tune.schedular=asha"])
    with pytest.raises(ValueError, match="tune.cpus_per_trial"):
        tune_settings.load("conf/grid_hidden.yaml", ["tune.cpus_per_trial=0"])


@pytest.mark.s3
def test_tune_job_writes_its_results_to_s3(local_ray, s3_server, s3_spark):
    """jobs/tune.py's run with everything on s3a://: the trial store (record objects and
    every trial's model, written by Ray workers through pyarrow), the leaderboard, the best
    model and the report; a second run resumes and reruns nothing."""
    from sparkae.jobs import tune_job, tune_settings
    from sparkae.io import fs

    name = f"tunejob-{uuid.uuid4().hex[:8]}"
    s3_server.bucket(name)
    out = f"s3a://{name}/grid"
    settings = tune_settings.load("conf/grid_hidden.yaml", [
        "grid.hidden=[[4], [6]]", "model.epochs=1", "evaluation.fraction=0.5",
        f"output.dir={out}"])
    summary = tune_job.run(s3_spark, settings)
    assert summary["trials"] == 2 and summary["failed"] == 0
    assert summary["best_model"] == f"{out}/best_model"
    names = fs.listdir(out)
    for expected in ("leaderboard.csv", "leaderboard.md", "leaderboard.png", "best_params.json",
                     "best_model", "report.html", "trials"):
        assert expected in names
    assert AutoencoderModel.load(f"{out}/best_model").summary.epochs == 1
    best = json.loads(fs.read_bytes(f"{out}/best_params.json"))
    assert best["hidden"] in ([4], [6])
    records = fs.listdir(f"{out}/trials/{RECORD}")
    assert len(records) == 2 and len(fs.listdir(f"{out}/trials/models")) == 2
    settings["output"]["overwrite"] = True
    again = tune_job.run(s3_spark, settings)
    assert fs.listdir(f"{out}/trials/{RECORD}") == records       # nothing rerun
    assert json.loads(fs.read_bytes(f"{out}/best_params.json")) == best
    assert again["trials"] == 2
