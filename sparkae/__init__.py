"""sparkae: autoencoders at cluster scale on Apache Spark and PyTorch.

The public classes load on first use (PEP 562): a process that only needs part of the
package -- a training rank, a Spark Python worker that scores -- does not import Spark ML,
pandas and the anomaly detector (about 2 s of CPU per process on 2 cores) with it.
"""

import importlib
import logging
from typing import Any, List

__version__ = "0.1.0"
#: Public name -> the module that defines it.
_EXPORTS = {"AnomalyDetector": "sparkae.anomaly", "AnomalyDetectorModel": "sparkae.anomaly",
            "Autoencoder": "sparkae.estimator", "AutoencoderModel": "sparkae.estimator",
            "TableInfo": "sparkae.tables", "read_table": "sparkae.tables"}
__all__ = sorted(_EXPORTS) + ["__version__"]

logging.getLogger("sparkae").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparkae' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(__all__) | {"__doc__", "__file__", "__name__", "__path__"})
