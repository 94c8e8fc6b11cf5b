"""Spark ML Params of the autoencoder: names, documentation, choices and defaults.

Every Param is declared once, in the table ``sparkae/resources/params.yaml`` (name, how a
value converts, default, choices, doc); this module builds the Spark ML Params of
:class:`AutoencoderParams` from it. Names are snake_case and follow H2O's
``h2o.deeplearning`` arguments where H2O has one (``hidden``, ``activation``, ``epochs``,
``mini_batch_size``, ``rate``, ``rho``, ``epsilon``, ``l1``, ``l2``, ``standardize``,
``ignore_const_cols``, ``seed``). :mod:`sparkae.validation` holds the rules checked on the
driver before any Spark job.
"""

from __future__ import annotations

import copy
import math
from importlib.resources import files
from typing import Any, Callable, Dict, Tuple

import yaml
from pyspark.ml.param import Param, Params, TypeConverters

from sparkae.spark_private import dummy_parent


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


#: What ``reconstruction_sampling`` accepts (its error messages say it).
SAMPLING_ALLOWED = ("None (the exact loss) or an integer >= 1: the zero columns sampled per "
                    "row of a sparse batch")


def _to_sampling(value: Any) -> Any:
    """``reconstruction_sampling``: None, or a whole number (3 or 3.0) as an int; anything
    else is a ValueError naming the Param."""
    integral = (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value == int(value))
    if value is None:
        return None
    if not integral or value < 1:
        raise ValueError(f"Autoencoder param 'reconstruction_sampling': got {value!r}, "
                         f"expected {SAMPLING_ALLOWED}")
    return int(value)


#: How a value of each ``type`` of the table converts.
CONVERTERS: Dict[str, Callable[[Any], Any]] = {
    "any": TypeConverters.identity, "string": TypeConverters.toString,
    "int": TypeConverters.toInt, "float": TypeConverters.toFloat,
    "boolean": TypeConverters.toBoolean, "list_int": TypeConverters.toListInt,
    "list_float": TypeConverters.toListFloat, "list_string": TypeConverters.toListString,
    "optional_int": _optional(TypeConverters.toInt),
    "optional_float": _optional(TypeConverters.toFloat),
    "optional_string": _optional(str),
    "optional_list_int": _optional(TypeConverters.toListInt),
    "sampling": _to_sampling,
}


def _read_table() -> Dict[str, Dict[str, Any]]:
    text = files("sparkae").joinpath("resources", "params.yaml").read_text()
    table = yaml.safe_load(text)
    for entry in table.values():
        # a default is a value the Param takes (floats as 1.0e-08: YAML 1.1 reads 1e-08 as text)
        if entry["default"] is not None:
            CONVERTERS[entry["type"]](entry["default"])
    return table


#: The table of sparkae/resources/params.yaml, by Param name.
TABLE: Dict[str, Dict[str, Any]] = _read_table()
#: The default of every Param (the Params, ``explainParams()``, the job settings' ``--help``
#: and the validation of partial settings all read it).
DEFAULTS: Dict[str, Any] = {name: entry["default"] for name, entry in TABLE.items()}


def _choices(name: str) -> Tuple[str, ...]:
    return tuple(TABLE[name]["choices"])


ACTIVATIONS = _choices("activation")
OUTPUT_ACTIVATIONS = _choices("output_activation")
OPTIMIZERS = _choices("optimizer")
SPARSITY_METHODS = _choices("sparsity_method")
NOISE = _choices("noise")
MISSING = _choices("missing_values_handling")
STANDARDIZE = _choices("standardize")
#: Network families (sparkae.nn.builder) and the priors of the generative ones.
ARCHITECTURES = _choices("architecture")
PRIORS = _choices("prior")
#: Forms of training progress (see :mod:`sparkae.progress`).
PROGRESS = _choices("progress")
#: Columns that ``transform`` can add.
OUTPUTS = _choices("outputs")
#: Hidden activations a convolutional network can use.
CONV_ACTIVATIONS = ("tanh", "rectifier", "exp_rectifier", "linear")


def _param(name: str, entry: Dict[str, Any]) -> Param:
    choices = entry.get("choices") or ()
    doc = entry["doc"].format(choices=", ".join(choices), choices_or=" or ".join(choices))
    return Param(dummy_parent(), name, doc, typeConverter=CONVERTERS[entry["type"]])


class AutoencoderParams(Params):
    """Params shared by :class:`~sparkae.Autoencoder` and :class:`~sparkae.AutoencoderModel`:
    one class attribute per entry of :data:`TABLE` (``explainParams()`` lists them)."""

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(**copy.deepcopy(DEFAULTS))

    def param_values(self) -> Dict[str, Any]:
        """Return every Param's current value (set or default) by name."""
        return {p.name: self.getOrDefault(p) for p in self.params if self.isDefined(p)}


for _name, _entry in TABLE.items():
    setattr(AutoencoderParams, _name, _param(_name, _entry))
