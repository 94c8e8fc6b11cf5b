"""AnomalyDetectorModel: scores rows with the fitted ensemble; saves as JSON plus the
members' own model directories (safetensors weights, never pickle)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict, List, Optional

from pyspark.ml import Model
from pyspark.ml.util import MLReader, MLWriter
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sparkae.anomaly.ensemble import ORDER, EnsembleScorer
from sparkae.anomaly.params import AnomalyDetectorParams, validate
from sparkae.io import fs
from sparkae.model import AutoencoderModel
from sparkae.persistence import DirectoryPersistence
from sparkae.scoring import score_with
from sparkae.spark_private import reset_uid

log = logging.getLogger(__name__)

CLASS = "sparkae.anomaly.model.AnomalyDetectorModel"
FORMAT_VERSION = 1
DETECTOR_JSON = "detector.json"


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
        want_fe = "feature_errors" in outputs
        spark = dataset.sparkSession
        outs = ["reconstruction_mse", "deep_features"] + (["feature_errors"] if want_fe else [])
        members = tuple(m.batch_scorer(spark, outs) for m in self._members)
        names = [o for o in ORDER if o in outputs]
        types = {"anomaly_score": T.DoubleType(), "is_anomaly": T.BooleanType(),
                 "feature_errors": T.ArrayType(T.DoubleType()),
                 "deep_features": T.ArrayType(T.FloatType())}
        k = len(self._members)
        job = EnsembleScorer(members, tuple(dict(st) for st in self._stats), tuple(names),
                             self._threshold,
                             tuple(1.0 / (k * st["error_scale"]) for st in self._stats),
                             tuple(T.StructField(o, types[o]) for o in names))
        return score_with(dataset, job, self._members[0].input_info)

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

