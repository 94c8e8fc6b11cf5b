"""The MLflow pyfunc form of a model: a saved sparkae directory scored without Spark.

:class:`AutoencoderPyfunc` is what :mod:`sparkae.tracking` logs with
``mlflow.pyfunc.log_model``: it holds no weights (the model travels as its sparkae
directory, JSON + safetensors, an MLflow artifact) and scores a pandas DataFrame with a
plain Torch forward pass (:func:`sparkae.scoring.score_matrix`), the same numbers as
``AutoencoderModel.transform``. The helpers here need neither MLflow nor Spark.

Examples
--------
>>> import mlflow                                                     # doctest: +SKIP
>>> scorer = mlflow.pyfunc.load_model(model.tracking["model_uri"])    # doctest: +SKIP
>>> scorer.predict(pdf)[["reconstruction_mse"]]                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sparkae.data.prepare import InputInfo
from sparkae.scoring.forward import PASS_ELEMENTS, score_matrix
from sparkae.tracking import ARTIFACT

try:  # the base class only where MLflow is installed: sparkae imports without it
    from mlflow.pyfunc import PythonModel as _Base
except ImportError:  # pragma: no cover - exercised in environments without MLflow
    _Base = object



def frame_to_matrix(pdf: Any, info: InputInfo, skip_missing: bool = False
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Feature rows of a pandas DataFrame laid out like the model's training input.

    Parameters
    ----------
    pdf : pandas.DataFrame
        For vector or array input, a column named like the model's ``features_col``
        holding lists, NumPy arrays or ``pyspark.ml.linalg`` vectors; for
        ``features_cols`` input, those columns (numbers; strings one-hot encoded with
        the training levels).
    info : InputInfo
        The model's input description.
    skip_missing : bool
        Rows with a missing (NaN) value are not scored (``missing_values_handling="skip"``).

    Returns
    -------
    x : ndarray of float64, rows x input width (zeros in rows that are not scored)
    ok : ndarray of bool, the rows to score (False: null features or an infinite value)

    Raises
    ------
    ValueError
        A column is missing, or a row has another width than the model's input.
    """
    import pandas as pd

    if not isinstance(pdf, pd.DataFrame):
        raise TypeError(f"model_input: got {type(pdf).__name__}, expected a pandas DataFrame")
    n = len(pdf)
    if info.kind == "columns":
        missing = [c for c in info.columns if c not in pdf.columns]
        if missing:
            raise ValueError(f"model_input: column '{missing[0]}' not found; the model was "
                             f"trained on features_cols {info.columns} and the input has "
                             f"columns {list(pdf.columns)}")
        parts: List[np.ndarray] = []
        for c in info.columns:
            if c in info.levels:
                values = pdf[c]
                parts += [(values == lv).fillna(False).to_numpy(dtype=np.float64)[:, None]
                          for lv in info.levels[c]]
            else:
                parts.append(pd.to_numeric(pdf[c], errors="raise").to_numpy(
                    dtype=np.float64, na_value=np.nan)[:, None])
        x = np.hstack(parts) if parts else np.zeros((n, 0))
        ok = np.ones(n, dtype=bool)
    else:
        if info.column not in pdf.columns:
            raise ValueError(f"model_input: column '{info.column}' not found (the model's "
                             f"features_col); the input has columns {list(pdf.columns)}")
        x = np.zeros((n, info.size), dtype=np.float64)
        ok = np.zeros(n, dtype=bool)
        for i, value in enumerate(pdf[info.column].tolist()):
            if value is None or (np.isscalar(value) and pd.isna(value)):
                continue
            row = np.asarray(value.toArray() if hasattr(value, "toArray") else value,
                             dtype=np.float64).ravel()
            if row.shape[0] != info.size:
                raise ValueError(f"model_input: row {i} of column '{info.column}' has "
                                 f"{row.shape[0]} features; the model expects {info.size}")
            x[i], ok[i] = row, True
    if x.shape[1] != info.size:
        raise ValueError(f"model_input: the columns give {x.shape[1]} features; the model "
                         f"expects {info.size}")
    ok &= ~np.isinf(x).any(axis=1)
    if skip_missing:
        ok &= ~np.isnan(x).any(axis=1)
    x[~ok] = 0.0
    return x, ok


def score_frame(net: Any, pdf: Any, info: InputInfo, layer: int,
                threshold: Optional[float] = None, skip_missing: bool = False,
                clip: bool = False) -> Any:
    """Score a pandas DataFrame with a Torch network, without Spark (``clip``: the
    model's ``clip_to_training_range``).

    Returns
    -------
    pandas.DataFrame
        ``reconstruction_mse`` (float64, NaN for rows not scored), ``deep_features``
        (float32 arrays of hidden ``layer``, None for rows not scored) and, when
        ``threshold`` is set, ``is_anomaly`` (nullable boolean); same index as ``pdf``.
    """
    import pandas as pd

    x, ok = frame_to_matrix(pdf, info, skip_missing)
    outputs = ["deep_features", "reconstruction_mse"]
    rows = np.flatnonzero(ok)
    mse = np.full(len(x), np.nan)
    deep: List[Any] = [None] * len(x)
    step = max(1, PASS_ELEMENTS // max(1, info.size))
    for lo in range(0, len(rows), step):
        idx = rows[lo:lo + step]
        res = score_matrix(net, x[idx], outputs, layer, clip=clip)
        mse[idx] = res["reconstruction_mse"]
        for j, i in enumerate(idx):
            deep[i] = res["deep_features"][j]
    out: Dict[str, Any] = {"reconstruction_mse": mse, "deep_features": deep}
    if threshold is not None:
        flags = pd.array([bool(m > threshold) if k else None for m, k in zip(mse, ok)],
                         dtype="boolean")
        out["is_anomaly"] = flags
    return pd.DataFrame(out, index=pdf.index)


class AutoencoderPyfunc(_Base):
    """An MLflow ``PythonModel`` scoring pandas DataFrames with a saved sparkae model.

    ``load_context`` loads the sparkae directory of the ``sparkae_model`` artifact;
    ``predict(context, model_input)`` returns :func:`score_frame`'s DataFrame.
    """

    def load_context(self, context: Any) -> None:
        from sparkae.model import AutoencoderModel

        model = AutoencoderModel.load(context.artifacts[ARTIFACT])
        self._net = model.network()
        self._info = model.input_info
        self._layer = model.resolve_layer()
        self._threshold = model.threshold
        self._skip = model.getOrDefault("missing_values_handling") == "skip"
        self._clip = model.getOrDefault("clip_to_training_range")

    def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow's hook
        """Score ``model_input`` (a pandas DataFrame; see :func:`frame_to_matrix`)."""
        return score_frame(self._net, model_input, self._info, self._layer, self._threshold,
                           self._skip, self._clip)
