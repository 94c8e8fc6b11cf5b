"""AnomalyDetectorModel: scores rows with the fitted ensemble; saves as JSON plus the
members' own model directories (safetensors weights, never pickle)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
from pyspark.ml import Model
from pyspark.ml.util import MLReader, MLWriter
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkae.anomaly.params import AnomalyDetectorParams, validate
from sparkae.io import fs
from sparkae.model import AutoencoderModel
from sparkae.persistence import DirectoryPersistence
from sparkae.spark_private import reset_uid

log = logging.getLogger(__name__)

CLASS = "sparkae.anomaly.model.AnomalyDetectorModel"
FORMAT_VERSION = 1
DETECTOR_JSON = "detector.json"
_TMP = "__sparkae_anomaly_"


class AnomalyDetectorModel(Model, AnomalyDetectorParams, DirectoryPersistence):
    """A fitted :class:`~sparkae.anomaly.AnomalyDetector`.

    ``transform`` adds the ``outputs`` columns: ``anomaly_score`` (double, higher = more
    anomalous: the mean over members of three robust z-scores, the member's
    ``reconstruction_mse``, its code distance and the squared distance of its standardised
    codes to the nearest of its k-means centres, each minus its training median over its
    training IQR / 1.349), ``is_anomaly`` (boolean, score above :attr:`threshold`), and on
    request ``feature_errors`` (array<double>: each feature's squared error averaged over
    members, each member's divided by its error scale and the width; they sum to the
    reconstruction part of the score plus a constant, so the largest name the features that
    made a row anomalous) and ``deep_features`` (the first member's codings).
    """

    def __init__(self) -> None:
        super().__init__()
        self._members: List[Any] = []
        self._stats: List[Dict[str, Any]] = []
        self._threshold: Optional[float] = None
        self._width = 0
        self._fit_info: Dict[str, Any] = {}

    @classmethod
    def _create(cls, members: List[Any], stats: List[Dict[str, Any]],
                threshold: Optional[float], width: int, uid: Optional[str] = None
                ) -> "AnomalyDetectorModel":
        model = cls()
        if uid:
            reset_uid(model, uid)   # Spark ML: a fitted model has its estimator's uid
        model._members, model._stats = list(members), [dict(s) for s in stats]
        model._threshold, model._width = threshold, width
        return model

    @property
    def threshold(self) -> Optional[float]:
        """``is_anomaly``'s threshold on ``anomaly_score``: the ``1 - contamination``
        quantile of the training rows' scores."""
        return self._threshold

    @property
    def members(self) -> List[Any]:
        """The ensemble's :class:`sparkae.AutoencoderModel` members."""
        return list(self._members)

    @property
    def fit_info(self) -> Dict[str, Any]:
        """Rows, training rows, epochs, architectures and seconds of the fit."""
        return dict(self._fit_info)

    # -- scoring ------------------------------------------------------------------------
    def score(self, dataset: DataFrame, outputs: List[str]) -> DataFrame:
        """Add ``outputs`` (see the class docstring) to ``dataset``.

        Raises
        ------
        ValueError
            ``outputs`` has an unknown name, or ``dataset`` already has an output column.
        """
        validate({"outputs": list(outputs)})
        clash = [c for c in outputs if c in dataset.columns]
        if clash:
            raise ValueError(f"the DataFrame already has column(s) {', '.join(clash)} that "
                             "transform would add; rename or drop them first")
        want_fe, want_df = "feature_errors" in outputs, "deep_features" in outputs
        cur, tmp = dataset, []
        for i, member in enumerate(self._members):
            outs = ["reconstruction_mse", "deep_features"] + \
                (["feature_errors"] if want_fe else [])
            cur = member.transform(cur, {member.outputs: outs})
            for name in outs:
                cur = cur.withColumnRenamed(name, f"{_TMP}{name}_{i}")
                tmp.append(f"{_TMP}{name}_{i}")
        k = len(self._members)
        terms = [member_term_udf(st)(F.col(f"{_TMP}reconstruction_mse_{i}"),
                                     F.col(f"{_TMP}deep_features_{i}"))
                 for i, st in enumerate(self._stats)]
        score = sum(terms[1:], terms[0]) / F.lit(float(k))
        cur = cur.withColumn("anomaly_score", score.cast("double"))
        if "is_anomaly" in outputs:
            cur = cur.withColumn("is_anomaly", F.col("anomaly_score") > F.lit(self._threshold)
                                 if self._threshold is not None else F.lit(None).cast("boolean"))
        if want_fe:
            arrays = F.struct(*[F.col(f"{_TMP}feature_errors_{i}").alias(f"m{i}")
                                for i in range(k)])
            weights = [1.0 / (k * st["error_scale"]) for st in self._stats]
            cur = cur.withColumn("feature_errors", feature_errors_udf(weights)(arrays))
        if want_df:
            cur = cur.withColumn("deep_features", F.col(f"{_TMP}deep_features_0"))
        drop = tmp + ([] if "anomaly_score" in outputs else ["anomaly_score"])
        return cur.select(*[F.col(f"`{c}`") for c in cur.columns if c not in drop])

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return self.score(dataset, list(self.getOrDefault("outputs")))

    def score_quantile(self, dataset: DataFrame, quantile: float) -> float:
        """The ``quantile`` of ``anomaly_score`` over ``dataset`` (``percentile_approx``)."""
        value = (self.score(dataset, ["anomaly_score"])
                 .agg(F.percentile_approx("anomaly_score", float(quantile), 10000)).first()[0])
        if value is None:
            raise ValueError("the DataFrame has no scorable rows")
        return float(value)

    # -- report -------------------------------------------------------------------------
    def write_report(self, df: DataFrame, path: str, top_rows: int = 10,
                     sample_rows: int = 100_000, **kwargs: Any) -> str:
        """Write a self-contained HTML report of this model's scores on ``df`` to ``path``.

        The score distribution with :attr:`threshold` and ``contamination`` (and the share of
        rows above it), the largest per-feature errors of the ``top_rows`` highest-scoring
        rows, and a summary table; see :func:`sparkae.anomaly.report.write_report`.

        Parameters
        ----------
        df : DataFrame
            Rows with the model's input column(s); a seeded sample of about ``sample_rows``
            rows is scored (the table is never collected).
        path : str
            A local path or any URI :mod:`sparkae.io` reaches (written atomically).
        top_rows : int, default 10
            Rows whose top features are shown.
        sample_rows : int, default 100000
            About how many rows are scored.
        **kwargs
            ``k`` (features per row), ``id_col`` (names the rows), ``image_shape`` (pixel
            names and per-pixel error maps).

        Returns
        -------
        str
            ``path``.
        """
        from sparkae.anomaly.report import write_report as _write

        return _write(self, df, path, top_rows=top_rows, sample_rows=sample_rows, **kwargs)

    # -- persistence --------------------------------------------------------------------
    def _metadata(self) -> Dict[str, Any]:
        return {"class": CLASS, "format_version": FORMAT_VERSION, "uid": self.uid,
                "params": self.param_values(), "stats": self._stats,
                "threshold": self._threshold, "width": self._width,
                "members": len(self._members), "fit_info": self._fit_info}


def member_term_udf(st: Dict[str, Any]) -> Any:
    """A pandas UDF ``(reconstruction_mse, deep_features) -> double``: a member's part of
    ``anomaly_score`` (:func:`sparkae.anomaly.stats.member_term` with the member's training
    statistics ``st``), computed on each Arrow batch with NumPy; null when either input is
    null."""
    from pyspark.sql.functions import pandas_udf

    from sparkae.anomaly.stats import as_matrix, member_term

    @pandas_udf("double")
    def term(err: pd.Series, codes: pd.Series) -> pd.Series:
        ok = (err.notna() & codes.notna()).to_numpy()
        out = pd.Series(np.nan, index=err.index, dtype="float64")   # NaN: null in Spark
        if ok.any():
            out[ok] = member_term(err[ok].to_numpy(np.float64), as_matrix(codes[ok]), st)
        return out

    return term


def feature_errors_udf(weights: List[float]) -> Any:
    """A pandas UDF ``struct<m0, m1, ...> -> array<double>``: the members' per-feature
    squared errors (one array column each), member ``i``'s times ``weights[i]``, added and
    divided by the width; null when any member's is null. NumPy per Arrow batch (Spark SQL's
    ``zip_with`` is interpreted per element)."""
    from pyspark.sql.functions import pandas_udf

    from sparkae.anomaly.stats import as_matrix

    w = [float(v) for v in weights]

    @pandas_udf("array<double>")
    def combine(members: pd.DataFrame) -> pd.Series:
        cols = [members[c] for c in members.columns]
        ok = np.logical_and.reduce([c.notna().to_numpy() for c in cols])
        rows = iter(())
        if ok.any():
            total = sum(wi * as_matrix(c[ok]) for wi, c in zip(w, cols))
            rows = iter(total / max(total.shape[1], 1))
        return pd.Series([next(rows) if good else None for good in ok], index=members.index,
                         dtype=object)

    return combine


def _join(path: str, *parts: str) -> str:
    return "/".join([path.rstrip("/")] + list(parts))


class _Writer(MLWriter):
    def __init__(self, model: AnomalyDetectorModel) -> None:
        super().__init__()
        self.model = model

    def save(self, path: str) -> None:
        """Write ``path/members/<i>`` (each member's own format), ``path/detector.json``,
        and last Spark ML's ``path/metadata/part-00000`` (so Pipelines can load it)."""
        import pyspark


        if not isinstance(path, str):
            raise TypeError(f"path: got {type(path).__name__}, expected a str")
        if fs.exists(path, "model path"):
            if not self.shouldOverwrite:
                raise FileExistsError(f"model path '{path}' already exists; use "
                                      "model.write().overwrite().save(path) to replace it")
            fs.delete(path, "model path")
        for i, member in enumerate(self.model._members):
            member.write().save(_join(path, "members", str(i)))
        meta = self.model._metadata()
        fs.write_bytes(_join(path, DETECTOR_JSON),
                       json.dumps(meta, indent=1, sort_keys=True).encode(), "model path")
        line = json.dumps({"class": CLASS, "uid": self.model.uid,
                           "timestamp": int(time.time() * 1000),
                           "sparkVersion": pyspark.__version__,
                           "paramMap": {}, "defaultParamMap": {}})
        fs.write_bytes(_join(path, "metadata", "part-00000"), (line + "\n").encode(),
                       "model path")
        log.info("saved AnomalyDetectorModel (%d members) to %s", len(self.model._members),
                 path)

    def saveImpl(self, path: str) -> None:   # pragma: no cover - save() is overridden
        self.save(path)


class _Reader(MLReader):
    def load(self, path: str) -> AnomalyDetectorModel:

        meta_path = _join(path, DETECTOR_JSON)
        if not fs.exists(meta_path, "model path"):
            raise FileNotFoundError(f"no AnomalyDetectorModel at '{path}' "
                                    f"({DETECTOR_JSON} not found)")
        meta = json.loads(fs.read_bytes(meta_path, "model path").decode())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"'{path}': format_version {meta.get('format_version')!r}, this "
                             f"version of sparkae reads {FORMAT_VERSION}")
        members = [AutoencoderModel.load(_join(path, "members", str(i)))
                   for i in range(meta["members"])]
        model = AnomalyDetectorModel._create(members, meta["stats"], meta["threshold"],
                                             meta["width"], meta["uid"])
        model._set(**{k: v for k, v in meta["params"].items() if model.hasParam(k)})
        model._fit_info = meta.get("fit_info", {})
        return model


AnomalyDetectorModel.writer_class, AnomalyDetectorModel.reader_class = _Writer, _Reader

