"""MLflow "models from code" entry point of the sparkae pyfunc model.

:mod:`sparkae.tracking` logs this file as the pyfunc model's code, so MLflow stores no
pickled object: loading the model runs this file, which names
:class:`sparkae.pyfunc.AutoencoderPyfunc`, and that class reads the weights from the
model's sparkae directory (JSON + safetensors).
"""

import mlflow

from sparkae.pyfunc import AutoencoderPyfunc

mlflow.models.set_model(AutoencoderPyfunc())
