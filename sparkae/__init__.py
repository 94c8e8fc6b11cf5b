"""sparkae: autoencoders at cluster scale on Apache Spark and PyTorch."""

import logging

from sparkae.estimator import Autoencoder, AutoencoderModel

__version__ = "0.1.0"
__all__ = ["Autoencoder", "AutoencoderModel", "__version__"]

logging.getLogger("sparkae").addHandler(logging.NullHandler())
