"""sparkae: autoencoders at cluster scale on Apache Spark and PyTorch."""

import logging

from sparkae.anomaly import AnomalyDetector, AnomalyDetectorModel
from sparkae.estimator import Autoencoder, AutoencoderModel
from sparkae.tables import TableInfo, read_table

__version__ = "0.1.0"
__all__ = ["AnomalyDetector", "AnomalyDetectorModel", "Autoencoder", "AutoencoderModel",
           "TableInfo", "read_table", "__version__"]

logging.getLogger("sparkae").addHandler(logging.NullHandler())
