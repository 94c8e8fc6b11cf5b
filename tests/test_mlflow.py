"""MLflow tracking (sparkae.tracking) and the pyfunc model (sparkae.pyfunc), logged to a
local file store. Skipped without MLflow (pip install sparkae[mlflow]), except under CI
(CI=true), where that fails."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

from sparkae import Autoencoder
from sparkae.data.prepare import InputInfo
from sparkae.pyfunc import frame_to_matrix
from tests.conftest import unavailable

pytestmark = pytest.mark.mlflow


@pytest.fixture
def mlflow(tmp_path, monkeypatch):
    """MLflow logging to a file store under ``tmp_path``; no run left active after.
    (MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true; a database store
    would need SQLAlchemy, which mlflow-skinny does not install.)"""
    try:
        import mlflow as mlflow_module
        import mlflow.pyfunc  # noqa: F401
    except ImportError as exc:
        unavailable(f"MLflow is not installed ({exc}); pip install sparkae[mlflow]")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    previous = mlflow_module.get_tracking_uri()
    mlflow_module.set_tracking_uri(f"file:{tmp_path / 'mlruns'}")
    mlflow_module.set_experiment("sparkae-tests")
    try:
        yield mlflow_module
    finally:
        while mlflow_module.active_run() is not None:
            mlflow_module.end_run()
        mlflow_module.set_tracking_uri(previous)


def _history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_fit_logs_params_metrics_and_models(spark, small_dense, mlflow, tmp_path):
    _, df = small_dense
    model = Autoencoder(features_col="arr", hidden=[6, 3, 6], epochs=3, seed=5,
                        anomaly_quantile=0.9, progress="none", mlflow_tracking=True).fit(df)
    assert mlflow.active_run() is None      # the fit started its run and ended it
    run_id = model.tracking["run_id"]
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["hidden"] == "[6, 3, 6]" and params["epochs"] == "3"
    assert params["features_col"] == "arr" and params["features_cols"] == "None"
    assert params["mlflow_tracking"] == "True"
    for key in ("train_mse", "rows_per_s"):
        steps = _history(client, run_id, key)
        assert [s for s, _ in steps] == [1, 2, 3]
    assert _history(client, run_id, "train_mse")[-1][1] == pytest.approx(model.summary.train_mse)
    assert run.data.metrics["threshold"] == pytest.approx(model.threshold)
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"sparkae_model", "summary.json"} <= files
    saved = {a.path for a in client.list_artifacts(run_id, "sparkae_model")}
    assert "sparkae_model/_manifest.json" in saved          # the model, committed (sparkae.io)
    assert [a for a in saved if a.startswith("sparkae_model/g-")]     # and its generation
    assert not [a for a in saved if a.endswith((".pkl", ".pickle"))]

    scorer = mlflow.pyfunc.load_model(model.tracking["model_uri"])
    local = mlflow.artifacts.download_artifacts(model.tracking["model_uri"])
    logged = [os.path.join(b, f) for b, _, fs in os.walk(local) for f in fs]
    assert any(f.endswith("pyfunc_model.py") for f in logged)          # models from code
    assert not [f for f in logged if f.endswith((".pkl", ".pickle"))], logged
    rows = df.orderBy("id").limit(50).toPandas()
    got = scorer.predict(rows[["arr"]])
    want = model.transform(df.orderBy("id").limit(50)).orderBy("id").toPandas()
    np.testing.assert_allclose(got["reconstruction_mse"].to_numpy(),
                               want["reconstruction_mse"].to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.stack(got["deep_features"]),
                               np.stack(want["deep_features"]), rtol=1e-5, atol=1e-5)
    assert list(got["is_anomaly"]) == list(want["is_anomaly"])
    # the sparkae directory logged beside it loads as a model too
    from sparkae import AutoencoderModel

    local = mlflow.artifacts.download_artifacts(model.tracking["artifact_uri"],
                                                dst_path=str(tmp_path / "dl"))
    assert AutoencoderModel.load(local).threshold == pytest.approx(model.threshold)


def test_active_run_logs_without_the_param_and_columns_input(spark, small_dense, mlflow):
    _, df = small_dense
    cols = [f"c{j}" for j in range(12)]
    with mlflow.start_run() as run:
        model = Autoencoder(features_cols=cols, hidden=[4], epochs=2, seed=3,
                            progress="none").fit(df)
        second = Autoencoder(features_cols=cols, hidden=[5], epochs=1, seed=3,
                             progress="none").fit(df)
    assert model.tracking["run_id"] == run.info.run_id
    assert second.tracking["run_id"] != run.info.run_id   # a nested run for the 2nd fit
    client = mlflow.tracking.MlflowClient()
    child = client.get_run(second.tracking["run_id"])
    assert child.data.tags.get("mlflow.parentRunId") == run.info.run_id
    assert child.data.params["hidden"] == "[5]"
    assert [s for s, _ in _history(client, run.info.run_id, "train_mse")] == [1, 2]
    pdf = df.orderBy("id").limit(20).toPandas()
    got = mlflow.pyfunc.load_model(model.tracking["model_uri"]).predict(pdf[cols])
    want = model.anomaly(df.orderBy("id").limit(20)).orderBy("id").toPandas()
    np.testing.assert_allclose(got["reconstruction_mse"], want["reconstruction_mse"],
                               rtol=1e-5, atol=1e-5)
    assert "is_anomaly" not in got.columns


def test_no_tracking_without_param_or_run(spark, small_dense, mlflow):
    _, df = small_dense
    model = Autoencoder(features_col="vec", hidden=[3], epochs=1, seed=1,
                        progress="none").fit(df)
    assert model.tracking is None


def test_missing_mlflow_is_a_clear_error(spark, small_dense, monkeypatch):
    _, df = small_dense
    monkeypatch.setitem(sys.modules, "mlflow", None)   # import mlflow now raises
    with pytest.raises(ImportError, match=r"'mlflow_tracking'.*pip install sparkae\[mlflow\]"):
        Autoencoder(features_col="vec", hidden=[3], epochs=1, mlflow_tracking=True).fit(df)
    # and a fit without the Param does not need it
    assert Autoencoder(features_col="vec", hidden=[3], epochs=1, seed=1,
                       progress="none").fit(df).tracking is None


def test_bad_param_value():
    with pytest.raises(ValueError, match="'mlflow_tracking': got 'yes', expected True or False"):
        from sparkae.validation import validate

        validate({"mlflow_tracking": "yes"})


def test_frame_to_matrix_rows_and_errors():
    info = InputInfo("array", "f", size=3)
    pdf = pd.DataFrame({"f": [[1.0, 2.0, 3.0], None, np.array([0.0, np.inf, 1.0]),
                              [np.nan, 1.0, 1.0]]})
    x, ok = frame_to_matrix(pdf, info)
    assert ok.tolist() == [True, False, False, True]
    assert x[0].tolist() == [1.0, 2.0, 3.0]
    _, ok = frame_to_matrix(pdf, info, skip_missing=True)
    assert ok.tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="row 0 of column 'f' has 2 features; the model expects 3"):
        frame_to_matrix(pd.DataFrame({"f": [[1.0, 2.0]]}), info)
    with pytest.raises(ValueError, match="column 'f' not found"):
        frame_to_matrix(pd.DataFrame({"g": [[1.0, 2.0, 3.0]]}), info)
    cols = InputInfo("columns", None, ["a", "s"], size=3, levels={"s": ["x", "y"]})
    x, ok = frame_to_matrix(pd.DataFrame({"a": [1, None], "s": ["y", None]}), cols)
    assert ok.all() and x[0].tolist() == [1.0, 0.0, 1.0]
    assert np.isnan(x[1, 0]) and x[1, 1:].tolist() == [0.0, 0.0]


def test_train_job_logs_the_report(spark, small_dense, mlflow, tmp_path):
    from sparkae.jobs import train_settings
    from sparkae.jobs.train_job import run_train

    _, df = small_dense
    data = tmp_path / "in.parquet"
    df.select("id", "arr").write.parquet(str(data))
    settings = train_settings.load(None, ["input.source=parquet", f"input.path={data}",
                                  "input.label_col=null", "evaluation.source=none",
                                  "model.features_col=arr", "model.hidden=[4]",
                                  "model.epochs=1", "model.mlflow_tracking=true",
                                  "output.image_shape=null", f"output.dir={tmp_path / 'out'}"])
    run_train(spark, settings)
    runs = mlflow.search_runs(output_format="list")
    assert len(runs) == 1
    files = {a.path for a in mlflow.tracking.MlflowClient().list_artifacts(runs[0].info.run_id)}
    assert {"report.html", "summary.json", "sparkae_model"} <= files
