"""Unsupervised anomaly detection with autoencoders: :class:`AnomalyDetector` (a Spark ML
Estimator) and :class:`AnomalyDetectorModel`; development data sets in
:mod:`sparkae.anomaly.datasets`."""

from sparkae.anomaly.detector import AnomalyDetector
from sparkae.anomaly.model import AnomalyDetectorModel

__all__ = ["AnomalyDetector", "AnomalyDetectorModel"]
