"""Spark Connect: fit (one rank and two ranks through TorchDistributor) and transform
against a real Spark Connect server started on 127.0.0.1 from the pyspark installation.

The client runs in its own process (tests/connect_client.py): a process with a Connect
session routes all of ``pyspark.sql`` to Connect and could not share the classic session
of the other tests. Its scores are checked here against a plain Torch forward pass of the
saved model on the same rows. Skipped without Java or the Connect client's packages
(``pip install sparkae[connect]``), except under CI (CI=true), where that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, _free_port, unavailable

pytestmark = pytest.mark.connect


def _missing() -> str:
    if shutil.which("java") is None:
        return "Java is not installed"
    try:
        from pyspark.sql.connect.utils import check_dependencies

        check_dependencies()
    except Exception as exc:  # noqa: BLE001 - any missing client package
        return f"the Spark Connect client packages are missing ({exc}); pip install sparkae[connect]"
    return ""


@pytest.fixture(scope="session")
def connect_url(tmp_path_factory):
    """A Spark Connect server (``local[2]``, every port on 127.0.0.1) for the session;
    yields ``sc://127.0.0.1:PORT`` and stops the server by pid at the end."""
    reason = _missing()
    if reason:
        unavailable(reason)
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    work = tmp_path_factory.mktemp("spark-connect")
    port = _free_port()
    env = dict(os.environ, SPARK_HOME=home, SPARK_LOCAL_IP="127.0.0.1",
               SPARK_NO_DAEMONIZE="1", PYSPARK_PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    conf = {"spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port),
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2",
            "spark.task.maxFailures": "1", "spark.ui.showConsoleProgress": "false"}
    cmd = [os.path.join(home, "bin", "spark-submit"), "--class",
           "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
           "--name", "sparkae-connect-tests"]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd.append("spark-internal")
    log_path = work / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the Spark Connect server did not start within 120 s (exit code "
                        f"{proc.poll()}):\n{log_path.read_text()[-3000:]}")
        yield f"sc://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def connect_run(connect_url, tmp_path_factory):
    """Run tests/connect_client.py against the server once; return its results and folder."""
    out = tmp_path_factory.mktemp("connect-client")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "connect_client.py"),
                           connect_url, str(out)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    results = out / "results.json"
    if proc.returncode != 0 or not results.exists():
        pytest.fail(f"the Spark Connect client failed (exit code {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(results.read_text()), out


def _step(run, name):
    results, out = run
    step = results[name]
    assert step["ok"], f"step {name} failed under Spark Connect:\n{step.get('error')}"
    return step, out


def _torch_scores(model_dir, ids, outputs, layer=None):
    """The saved model's outputs for the sample rows ``ids``, by a plain Torch forward."""
    from sparkae import AutoencoderModel
    from sparkae.datasets import load_mnist_arrays, mnist_sample_paths
    from sparkae.scoring import score_matrix

    images, _ = load_mnist_arrays(*mnist_sample_paths())
    model = AutoencoderModel.load(str(model_dir))
    layer = layer or model.resolve_layer()
    return model, score_matrix(model.network(), images[ids].astype(np.float64), outputs, layer,
                               model.threshold)


def test_session_is_connect(connect_run):
    results, _ = connect_run
    assert results["session"]["remote"] is True
    assert results["session"]["has_spark_context"] is False


def test_fit_and_transform_match_torch(connect_run):
    step, out = _step(connect_run, "fit_one_rank")
    assert step["epochs"] == 2 and step["train_rows"] == 1000
    s = np.load(out / "scores1.npz")
    assert list(s["id"]) == list(range(0, 5000, 5))
    model, ref = _torch_scores(out / "model1", s["id"],
                               ["reconstruction_mse", "deep_features"])
    np.testing.assert_allclose(s["mse"], ref["reconstruction_mse"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s["deep"], ref["deep_features"], rtol=1e-5, atol=1e-5)
    assert model.threshold == pytest.approx(step["threshold"])
    np.testing.assert_array_equal(s["flag"], s["mse"] > model.threshold)
    assert np.mean(s["mse"] <= step["quantile"]) == pytest.approx(0.5, abs=0.02)


def test_deep_features_and_anomaly_match_torch(connect_run):
    _, out = _step(connect_run, "fit_one_rank")
    s = np.load(out / "scores1.npz")
    _, ref = _torch_scores(out / "model1", s["layer1_id"], ["deep_features"], layer=1)
    np.testing.assert_allclose(s["layer1"], ref["deep_features"], rtol=1e-5, atol=1e-5)
    _, ref = _torch_scores(out / "model1", s["errors_id"], ["feature_errors"])
    np.testing.assert_allclose(s["errors"], ref["feature_errors"], rtol=1e-5, atol=1e-5)


def test_two_rank_fit(connect_run):
    step, out = _step(connect_run, "fit_two_ranks")
    assert step["epochs"] == 1 and step["train_rows"] == 1000
    s = np.load(out / "scores2.npz")
    _, ref = _torch_scores(out / "model2", s["id"], ["reconstruction_mse"])
    np.testing.assert_allclose(s["mse"], ref["reconstruction_mse"], rtol=1e-5, atol=1e-5)


def test_materialized_data_removed(connect_run):
    results, _ = connect_run
    assert results["cache_left"] == []


def test_the_scoring_job_runs_under_connect(connect_run, connect_url, mnist_sample, tmp_path):
    """jobs/score.py with SPARK_REMOTE set: the job's session is a Connect session and the
    run-date partition it writes holds the saved model's scores."""
    import pandas as pd

    _, out = _step(connect_run, "fit_one_rank")
    src = tmp_path / "input.parquet"
    mnist_sample.where("id < 200").select("id", "features").write.parquet(str(src))
    env = dict(os.environ, SPARK_REMOTE=connect_url,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    scores = tmp_path / "scores"
    proc = subprocess.run([sys.executable, "jobs/score.py", "--model", str(out / "model1"),
                           "--input", str(src), "--output", str(scores), "--id-cols", "id",
                           "--run-date", "2024-05-01", "--outputs", "reconstruction_mse",
                           "--log-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "scored 200 of 200 rows for 2024-05-01" in proc.stdout
    got = pd.read_parquet(scores / "run_date=2024-05-01").sort_values("id")
    _, ref = _torch_scores(out / "model1", np.arange(200), ["reconstruction_mse"])
    np.testing.assert_allclose(got["reconstruction_mse"].to_numpy(), ref["reconstruction_mse"],
                               rtol=1e-5, atol=1e-5)
