"""MLflow tracking of a fit (extra ``sparkae[mlflow]``); MLflow is imported only when used.

A fit is logged when the ``mlflow_tracking`` Param is True, or when an MLflow run is
active in this process (then even with the Param False). Logged when the fit ends:

- every Param as an MLflow param (lists and None as their text);
- the per-epoch history as metrics with ``step=epoch`` (``train_mse``,
  ``validation_mse``, ``rows_per_s``, ``seconds`` and the families' terms, e.g. ``kl``),
  and ``fit_wall_time_s``, ``train_rows``, ``validation_rows``, ``threshold``;
- ``summary.json`` (the training summary);
- the model directory (:meth:`AutoencoderModel.save`: JSON + safetensors) as the
  artifact ``sparkae_model``;
- an MLflow pyfunc model named ``model`` (:class:`sparkae.pyfunc.AutoencoderPyfunc`),
  which ``mlflow.pyfunc.load_model`` loads to score pandas DataFrames without Spark.

Without an active run a run is started and ended; inside an active run the fit logs to
it, or to a nested run when the active run already holds other sparkae params (a second
fit in the same run).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional

#: Name of the model directory among the pyfunc model's artifacts.
ARTIFACT = "sparkae_model"

log = logging.getLogger("sparkae")

#: What to install for tracking.
INSTALL_HINT = "pip install sparkae[mlflow]"


def require() -> Any:
    """The ``mlflow`` module.

    Raises
    ------
    ImportError
        MLflow is not installed (the message names the Param and what to install).
    """
    try:
        import mlflow
        import mlflow.pyfunc  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"Autoencoder param 'mlflow_tracking': got True, but MLflow is not "
                          f"installed ({exc}); {INSTALL_HINT}, or set mlflow_tracking=False"
                          ) from None
    return mlflow


def tracker(enabled: bool) -> Optional[Any]:
    """The ``mlflow`` module when this fit is logged, else None: ``enabled`` (the Param),
    or an active run in an ``mlflow`` already imported here (never imported just to look)."""
    if enabled:
        return require()
    mlflow = sys.modules.get("mlflow")
    try:
        return mlflow if mlflow is not None and mlflow.active_run() is not None else None
    except Exception:  # noqa: BLE001 - a half-imported or odd mlflow: no tracking
        return None


def mlflow_params(values: Dict[str, Any]) -> Dict[str, str]:
    """Param values as MLflow params: text, lists as ``[a, b]``, None as ``None``."""
    out = {}
    for name, value in sorted(values.items()):
        text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
        out[name] = text[:6000]   # MLflow's limit on a param value
    return out


def epoch_metrics(entry: Dict[str, Any]) -> Dict[str, float]:
    """The numeric, finite values of one history entry (not ``epoch`` nor flags)."""
    return {k: float(v) for k, v in entry.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def requirements() -> List[str]:
    """pip requirements of the pyfunc model: sparkae and what its forward pass imports."""
    from importlib import metadata

    reqs = []
    for name in ("sparkae", "torch", "safetensors", "numpy", "pandas", "pyspark"):
        try:
            version = metadata.version(name).split("+")[0]
            reqs.append(f"{name}=={version}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def _start(mlflow: Any, params: Dict[str, str]):
    """``(run, owned)``: the run to log to, and whether this fit started it."""
    active = mlflow.active_run()
    if active is None:
        return mlflow.start_run(run_name="sparkae-autoencoder"), True
    logged = mlflow.get_run(active.info.run_id).data.params
    if any(k in logged and logged[k] != v for k, v in params.items()):
        log.info("mlflow: run %s already holds another fit's params; logging to a nested run",
                 active.info.run_id)
        return mlflow.start_run(run_name="sparkae-autoencoder", nested=True), True
    return active, False


def log_fit(model: Any, values: Dict[str, Any]) -> Optional[Dict[str, str]]:
    """Log a fitted model to MLflow when tracking is on (see the module docstring).

    Parameters
    ----------
    model : AutoencoderModel
        The fitted model (its summary, threshold and ``save``).
    values : dict
        The fit's Param values.

    Returns
    -------
    dict or None
        ``run_id``, ``model_uri`` (the pyfunc model) and ``artifact_uri`` (the sparkae
        directory), or None when nothing was logged.
    """
    mlflow = tracker(bool(values.get("mlflow_tracking")))
    if mlflow is None:
        return None
    params = mlflow_params(values)
    run, owned = _start(mlflow, params)
    tmp = tempfile.mkdtemp(prefix="sparkae-mlflow-")
    status = "FAILED"
    try:
        mlflow.log_params(params)
        for entry in model.summary.history:
            metrics = epoch_metrics(entry)
            if metrics:
                mlflow.log_metrics(metrics, step=int(entry["epoch"]))
        s = model.summary
        totals = {"fit_wall_time_s": s.wall_time_s, "train_rows": s.train_rows,
                  "validation_rows": s.validation_rows}
        if model.threshold is not None:
            totals["threshold"] = model.threshold
        mlflow.log_metrics({k: float(v) for k, v in totals.items()})
        mlflow.log_dict(s.to_json(), "summary.json")
        path = os.path.join(tmp, ARTIFACT)
        model.save(path)
        mlflow.log_artifacts(path, artifact_path=ARTIFACT)
        # models from code: MLflow keeps the entry file, not a pickled PythonModel
        code = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyfunc_model.py")
        kwargs = dict(python_model=code, artifacts={ARTIFACT: path},
                      pip_requirements=requirements())
        named = "name" in inspect.signature(mlflow.pyfunc.log_model).parameters
        kwargs["name" if named else "artifact_path"] = "model"
        info = mlflow.pyfunc.log_model(**kwargs)
        status = "FINISHED"
        result = {"run_id": run.info.run_id, "model_uri": info.model_uri,
                  "artifact_uri": f"runs:/{run.info.run_id}/{ARTIFACT}"}
        log.info("mlflow: logged the fit to run %s (pyfunc model %s)", run.info.run_id,
                 info.model_uri)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if owned:
            mlflow.end_run(status=status)


def log_files(run_id: str, paths: List[str]) -> None:
    """Add files (a job's report.html, summary.json) to a logged run's artifacts; files on
    cluster storage (s3a://, hdfs://, ...) are staged through a private temporary folder,
    since MLflow logs local files."""
    from sparkae.io import fs
    from sparkae.io.uri import parse

    mlflow = require()
    client = mlflow.tracking.MlflowClient()
    stage = tempfile.mkdtemp(prefix="sparkae-mlflow-")
    try:
        for path in paths:
            uri = parse(path, "artifact")
            if not uri.is_local:
                local = os.path.join(stage, uri.path.rsplit("/", 1)[-1])
                with open(local, "wb") as f:
                    f.write(fs.read_bytes(path, "artifact"))
                path = local
            client.log_artifact(run_id, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
