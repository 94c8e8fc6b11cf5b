"""AnomalyDetector: unsupervised anomaly detection with an ensemble of autoencoders.

The method (chosen by measurements across data sets, ``bench/anomaly_research.py``):

1. train on a seeded sample of at most ``max_samples`` rows;
2. ``n_estimators`` :class:`sparkae.Autoencoder` members on z-scored inputs, tanh, each with
   its own width and depth drawn from the input width (RandNet's varied architectures, Chen
   et al. 2017) and its own seed; on small data each runs at least ``min_steps`` gradient
   steps; on sparse inputs of :data:`WIDE_SPARSE` features or more each row's loss covers
   its stored columns plus :data:`SAMPLED_COLUMNS` sampled zeros (reconstruction sampling);
3. optionally (``inlier_quantile``, off by default: it doubles the cost and the
   measurements do not support it across data sets) each member is retrained on the rows
   within that quantile of its first fit's errors (the chapter's "retrain on inliers");
4. a member's score adds three terms, each standardised by the median and IQR of its
   training values: its ``reconstruction_mse`` (how far a row lies off what the member
   learned), its code distance, the mean squared z-score of the row's codings (how far
   along it lies), and the squared distance of the standardised codings to the nearest of
   ``n_clusters`` k-means centres fitted on the training rows' codings (how far it lies
   from every group: on clustered data the global code distance alone calls the rows of a
   small group anomalous); ``n_clusters="auto"`` (the default) fits sqrt(rows / 2) centres
   (2 to 100) of the rows the statistics come from; ``anomaly_score`` is the mean over
   members;
5. the threshold is the ``1 - contamination`` quantile of the training rows' scores.

The members share one preparation of the training sample (:func:`sparkae.fitting.prepare_input`,
then :meth:`sparkae.Autoencoder.fit_prepared`) and are scored (together, in one pass:
:meth:`sparkae.AutoencoderModel.batch_scorer`, :mod:`sparkae.anomaly.ensemble`) and saved
through the Autoencoder's public API only.

Evidence (``bench/anomaly_research.py``, the ``m_*`` candidates: the same five trained
members scored by different rules; the runs are stored in
``bench/results/anomaly_research/``). The default is ``m_rec_dist_kmA``. Its predecessors:

- ``m_rec_dist`` (reconstruction plus code distance) had mean AUROC 0.782 over the first six
  sets and a worst gap of 0.193 below the best competitor (IForest on mnist-0);
- ``m_rec_dist_km10`` (10 centres) raised that mean to 0.788 and cut the worst gap to
  0.154, but scored 0.33 on a scale run of the clustered sparse set (100,000 x 1,000, 50
  topics; a hand run whose result was not stored): fewer centres than groups, and an
  anomaly mixing two topics lies *between* groups, nearer a centre and nearer the codes'
  mean than an inlier. On the ``topics`` set (that layout at 10,000 rows, 3 draws) the
  10-centre rule scores 0.41 and the code distance alone 0.17, the reconstruction error
  alone 0.71.

Over seven sets (``-centres-*`` runs: 3 draws of topics, wdbc, wine, digits-0; 1 of
synthetic, sparse, mnist-0) the auto rule scores topics 0.88, wdbc 0.91, wine 0.84, digits-0
0.43, synthetic 0.995, sparse 0.78, mnist-0 0.71: mean 0.793 against 0.733 for 10 centres
and 0.725 for IForest (0.51 on topics). It loses on digits-0 (0.58 with 10 centres) and
mnist-0 (0.74): a rare class that forms a group of its own gets a centre once there are more
centres than classes. Other rules measured: without the code distance (``m_rec_kmA``: topics
0.97 but wine 0.71, mean 0.785), 50 centres (0.800 mean, wine 0.79, digits-0 0.43), CBLOF's
rule (distance to the nearest *large* cluster, He et al. 2003: 0.789), both 10 and auto
centres (0.780-0.784).

Findings of the earlier rounds:

- which term carries depends on the data: the code distance on wdbc and wine (wine 0.94
  alone against 0.81 for the reconstruction error), the reconstruction error on the
  synthetic set (0.998; the code distance alone is 0.16 there, anomalies lie *inside* the
  codes' spread) and on the clustered sparse set (0.74 against 0.54);
- a k-nearest-neighbour distance between codes (to all rows, or to a sampled reference,
  Sugiyama and Borgwardt 2013) wins on clustered data (sparse 0.83-0.96) but loses on
  digits-0 (0.37-0.49); rank, median and max combinations of the members or terms improve
  neither the mean nor the worst set;
- digits-0 (about 0.54 for every autoencoder rule, PyOD's AutoEncoder and VAE included,
  against IForest's 0.72) is a cluster of anomalies: the 49 zeros share one trait, an
  empty centre (per-pixel AUROC 0.03-0.05) where every other digit has ink, and they are
  3 % of the training rows, so every member learns to reconstruct them; the largest
  squared z-scores belong instead to inliers with ink in the 14 pixels inked in under 5 %
  of rows (the row's largest |z| ranks zeros *below* inliers, AUROC 0.43). IForest, which
  splits at feature extremes on 256-row subsamples, isolates them.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Dict, List, Tuple

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkae.anomaly.model import AnomalyDetectorModel
from sparkae.anomaly.params import DEFAULTS, AnomalyDetectorParams, validate
from sparkae.anomaly.stats import as_matrix, member_stats
from sparkae.estimator import Autoencoder
from sparkae.fitting import PreparedInput, prepare_input


log = logging.getLogger(__name__)

#: Most epochs a member runs when ``min_steps`` raises ``epoch_num`` on small data.
MAX_EPOCHS = 200
#: Widest coding and hidden layer a member draws.
MAX_CODE, MAX_HIDDEN = 64, 256
#: k-means centres of each member's standardised codings (the third term of its score):
#: the ``n_clusters`` Param's default ("auto": :func:`sparkae.anomaly.stats.auto_centres`).
CODE_CLUSTERS = DEFAULTS["n_clusters"]
#: Input width from which members train with reconstruction sampling (the Autoencoder's
#: ``reconstruction_sampling``, Dauphin, Glorot and Bengio 2011) when the batches are sparse:
#: the loss of a row covers its stored columns plus :data:`SAMPLED_COLUMNS` drawn from its
#: zeros, so a step never computes a batch x width output (on 100,000 columns a full output
#: costs about 10 GFLOP a step of 64 rows through a 256-wide layer). Scoring stays exact
#: (:mod:`sparkae.scoring.sparse_mse`).
WIDE_SPARSE = 10_000
#: Zero columns each row's loss samples on wide sparse inputs.
SAMPLED_COLUMNS = 128
#: Most training rows whose scores and codings a member's statistics come from (a seeded
#: sample beyond it; ``max_samples`` already caps the training rows at 20,000 by default).
STATS_ROWS = 100_000


def member_architectures(width: int, n: int, seed: int) -> List[List[int]]:
    """The hidden layers of ``n`` members for inputs of ``width`` features.

    Each member draws a coding width of 10-60 % of the input (2 to :data:`MAX_CODE`) and,
    with probability 1/2, a wider encoder/decoder layer around it (50-100 % of the input, at
    least twice the coding, at most :data:`MAX_HIDDEN`): ``[code]`` or ``[mid, code, mid]``.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        code = min(MAX_CODE, int(max(2, round(width * rng.uniform(0.1, 0.6)))))
        if rng.random() < 0.5:
            out.append([code])
        else:
            mid = int(min(max(code * 2, round(width * rng.uniform(0.5, 1.0))), MAX_HIDDEN))
            out.append([mid, code, mid])
    return out


def member_epochs(rows: int, epoch_num: int, min_steps: int, batch_size: int) -> int:
    """Epochs of a member: ``epoch_num``, raised so that a member runs at least
    ``min_steps`` gradient steps of ``batch_size`` rows over ``rows`` rows (small data),
    capped at :data:`MAX_EPOCHS`."""
    steps_per_epoch = max(1, math.ceil(rows / batch_size))
    return int(min(MAX_EPOCHS, max(epoch_num, math.ceil(min_steps / steps_per_epoch))))


class AnomalyDetector(Estimator, AnomalyDetectorParams, DefaultParamsReadable,
                      DefaultParamsWritable):
    """Unsupervised anomaly detection with an ensemble of autoencoders (Spark ML Estimator).

    Parameters
    ----------
    features_col : str, default "features"
        A vector column (dense or sparse) or an ``array<float|double>`` column.
    features_cols : list of str, optional
        Columns to use instead: numeric (a null becomes the column's training mean) or
        string (one-hot encoded, one feature per level seen in training; a null or a level
        not seen in training is all zeros).
    contamination : float, default 0.1
        Expected share of anomalies in (0, 0.5] (PyOD's name): the threshold of
        ``is_anomaly`` is the ``1 - contamination`` quantile of the training scores.
    n_estimators : int, default 5
        Autoencoders in the ensemble.
    max_samples : int or float, default 20000
        Rows each member trains on (a seeded sample of larger inputs, as IForest's
        max_samples; it bounds the fit's cost, scoring still covers every row); a float in
        (0, 1] is a share of the rows.
    epoch_num, min_steps, batch_size, lr : int, int, int, float
        10 epochs (raised to reach 500 gradient steps on small data), batches of 64, Adam
        at 0.001.
    inlier_quantile : float or None, default None
        Retrain each member on the rows within this quantile of its errors (None: one fit).
    n_clusters : int or "auto", default "auto"
        k-means centres of each member's standardised codings (PyOD's name): a member's
        score adds the distance to the nearest centre; "auto" fits sqrt(rows / 2) centres
        (2 to 100) of the training rows the statistics come from; 0 leaves that term out.
    seed : int, default 0
        Seed of the sample, the architectures and the weights.
    num_workers : int, default 1
        Training ranks of each member (as :class:`sparkae.Autoencoder`'s).
    outputs : list of str, default ["anomaly_score", "is_anomaly"]
        Columns ``transform`` adds; also ``feature_errors`` and ``deep_features``.

    Raises
    ------
    TypeError
        An unknown Param name.
    ValueError
        A bad Param value (naming the Param, the value and what is allowed).

    Examples
    --------
    >>> det = AnomalyDetector(features_cols=["a", "b", "c"], contamination=0.05, seed=1)
    >>> model = det.fit(df)                                        # doctest: +SKIP
    >>> model.transform(df).orderBy("anomaly_score", ascending=False).show()  # doctest: +SKIP
    """

    @keyword_only
    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        validate(kwargs)
        self._set(**kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> "AnomalyDetector":
        """Set Params by keyword, as in ``pyspark.ml`` estimators."""
        validate(kwargs)
        return self._set(**kwargs)

    def _fit(self, dataset: DataFrame) -> "AnomalyDetectorModel":
        t0 = time.perf_counter()
        values = self.param_values()
        validate(values)
        columns = input_columns(dataset, values)
        rows = dataset.count()
        if rows < 2:
            raise ValueError(f"the input has {rows} row(s); AnomalyDetector needs at least 2")
        train, n_train = _sample(dataset.select(*[F.col(f"`{c}`") for c in columns]),
                                 rows, values)
        try:
            width = _input_width(train, columns, values)
            archs = member_architectures(width, values["n_estimators"], values["seed"])
            epochs = member_epochs(n_train, values["epoch_num"], values["min_steps"],
                                   values["batch_size"])
            log.info("AnomalyDetector: %d rows (%d for training), width %d, %d members "
                     "%s, %d epochs", rows, n_train, width, len(archs), archs, epochs)
            members, stats = [], []
            estimators = [_member_estimator(values, hidden, epochs, values["seed"] + i, width)
                          for i, hidden in enumerate(archs)]
            # the members share one preparation: the input's checks, scaling statistics
            # and training shards are computed once, not once per member
            prepared = prepare_input(train, estimators[0].param_values())
            try:
                fitted = [_fit_member(ae, prepared, train, values) for ae in estimators]
            finally:
                prepared.data.release()
            for i, (hidden, member) in enumerate(zip(archs, fitted)):
                members.append(member)
                stats.append(_score_stats(member, train, n_train, values["n_clusters"],
                                          values["seed"] + i))
                log.info("member %d %s: error median %.4g scale %.4g, code distance median "
                         "%.4g scale %.4g, %d centres", i, hidden, stats[-1]["error_median"],
                         stats[-1]["error_scale"], stats[-1]["distance_median"],
                         stats[-1]["distance_scale"], len(stats[-1]["centres"]))
            model = AnomalyDetectorModel._create(members, stats, None, width, self.uid)
            model._set(**{k: v for k, v in values.items() if model.hasParam(k)})
            model._threshold = model.score_quantile(train, 1.0 - values["contamination"])
            model._fit_info = {"rows": rows, "training_rows": n_train, "epochs": epochs,
                               "architectures": archs,
                               "fit_seconds": round(time.perf_counter() - t0, 2)}
        finally:
            train.unpersist()
        return model


def input_columns(dataset: DataFrame, values: Dict[str, Any]) -> List[str]:
    """The input columns the Params name; checked against the schema before any job.

    Raises
    ------
    ValueError
        A named column is missing (the message lists the columns present).
    """
    cols = values.get("features_cols")
    names = list(cols) if cols else [values["features_col"]]
    param = "features_cols" if cols else "features_col"
    missing = [c for c in names if c not in dataset.columns]
    if missing:
        raise ValueError(f"{param}: column(s) {', '.join(repr(c) for c in missing)} not found; "
                         f"the DataFrame has {', '.join(dataset.columns)}")
    return names


def _sample(df: DataFrame, rows: int, values: Dict[str, Any]) -> Tuple[DataFrame, int]:
    cap = values["max_samples"]
    cap = max(2, int(round(cap * rows))) if isinstance(cap, float) else cap
    if rows > cap:
        df = df.sample(fraction=min(1.0, cap / rows), seed=values["seed"])
    df = df.persist()
    n = df.count()
    if n < 2:
        raise ValueError(f"max_samples: got {values['max_samples']!r}, which leaves {n} "
                         "training row(s); expected a value that keeps at least 2")
    return df, n


def _input_width(df: DataFrame, columns: List[str], values: Dict[str, Any]) -> int:
    """Features the members see: the vector's or array's size, or the numeric columns plus
    one per level of each string column (approximate distinct counts, one aggregation)."""
    from pyspark.sql.types import StringType

    if not values.get("features_cols"):
        first = df.select(F.col(f"`{columns[0]}`")).where(F.col(f"`{columns[0]}`").isNotNull()
                                                          ).first()
        if first is None:
            raise ValueError(f"features_col: column '{columns[0]}' holds only nulls")
        v = first[0]
        return int(v.size) if hasattr(v, "size") and not isinstance(v, list) else len(v)
    types = {f.name: f.dataType for f in df.schema.fields}
    strings = [c for c in columns if isinstance(types[c], StringType)]
    width = len(columns) - len(strings)
    if strings:
        counts = df.agg(*[F.approx_count_distinct(F.col(f"`{c}`")).alias(f"n{i}")
                          for i, c in enumerate(strings)]).first()
        width += int(sum(counts))
    return max(1, width)


def _member_estimator(values: Dict[str, Any], hidden: List[int], epochs: int, seed: int,
                      width: int) -> Autoencoder:
    """The Autoencoder of one member (z-scored inputs, tanh, no early stopping; sampled
    reconstruction on inputs of :data:`WIDE_SPARSE` features or more, where sparse)."""
    inputs = ({"features_cols": list(values["features_cols"])} if values.get("features_cols")
              else {"features_col": values["features_col"]})
    return Autoencoder(hidden=hidden, activation="tanh", standardize="zscore", epochs=epochs,
                       mini_batch_size=values["batch_size"], rate=values["lr"], seed=seed,
                       num_workers=values["num_workers"], ignore_const_cols=False,
                       stopping_rounds=0, outputs=["reconstruction_mse"], progress="none",
                       reconstruction_sampling=SAMPLED_COLUMNS if width >= WIDE_SPARSE
                       else None, **inputs)


def _fit_member(ae: Autoencoder, prepared: PreparedInput, train: DataFrame,
                values: Dict[str, Any]):
    """Train one member on the shared preparation (and, with ``inlier_quantile``, again
    on the training rows within that quantile of its errors)."""
    model = ae.fit_prepared(prepared, track=False)
    q = values.get("inlier_quantile")
    if q is not None:
        model = ae.fit(model.inliers(train, q))
    return model


def _score_stats(member: Any, train: DataFrame, n_train: int, clusters: int,
                 seed: int) -> Dict[str, Any]:
    """A member's training statistics (:func:`sparkae.anomaly.stats.member_stats`), from
    one Spark job: the member scores the training rows (a seeded sample of
    :data:`STATS_ROWS` when there are more) and their ``reconstruction_mse`` and codings
    come to the driver through Arrow. Rows that score null (all-null inputs) are left out."""
    rows = train
    if n_train > STATS_ROWS:
        rows = train.sample(fraction=min(1.0, 1.1 * STATS_ROWS / n_train), seed=seed) \
            .limit(STATS_ROWS)
    pdf = (member.transform(rows, {member.outputs: ["reconstruction_mse", "deep_features"]})
           .select("reconstruction_mse", "deep_features")
           .where(F.col("reconstruction_mse").isNotNull() & F.col("deep_features").isNotNull())
           .toPandas())
    if pdf.empty:
        raise ValueError("no training row could be scored (every row's inputs are null)")
    return member_stats(pdf["reconstruction_mse"].to_numpy(np.float64),
                        as_matrix(pdf["deep_features"]), clusters, seed)
