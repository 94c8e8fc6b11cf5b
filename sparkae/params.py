"""Spark ML Params of the autoencoder and their declarative validation.

Names are snake_case and follow H2O's ``h2o.deeplearning`` arguments where H2O has one
(``hidden``, ``activation``, ``epochs``, ``mini_batch_size``, ``rate``, ``rho``,
``epsilon``, ``l1``, ``l2``, ``standardize``, ``ignore_const_cols``, ``seed``).
This module holds no training logic: only the Params, their defaults and the rules that
:func:`validate` applies on the driver before any Spark job starts.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Dict, List, Optional

from pyspark.ml.param import Param, Params, TypeConverters

#: Hidden activations and what their outputs range over (used by later sparsity checks).
ACTIVATIONS = ("tanh", "rectifier")
OUTPUT_ACTIVATIONS = ("linear", "same")
OPTIMIZERS = ("adam", "adadelta")
STANDARDIZE = ("h2o", "minmax", "zscore", "none")
#: Columns that ``transform`` can add.
OUTPUTS = ("deep_features", "reconstruction_mse", "reconstruction", "feature_errors")


def _p(name: str, doc: str, conv: Callable = TypeConverters.identity) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=conv)


def _to_optional_int(value: Any) -> Any:
    return None if value is None else TypeConverters.toInt(value)


class AutoencoderParams(Params):
    """Params shared by :class:`~sparkae.Autoencoder` and :class:`~sparkae.AutoencoderModel`."""

    features_col = _p("features_col", "input column: a vector (dense or sparse) or an "
                      "array<float|double> column; ignored when features_cols is set",
                      TypeConverters.toString)
    features_cols = _p("features_cols", "numeric input columns, used instead of features_col "
                       "when set", TypeConverters.toListString)
    hidden = _p("hidden", "sizes of every hidden layer, encoder and decoder: [300, 100, 300] is "
                "a stacked autoencoder whose coding layer is the middle one",
                TypeConverters.toListInt)
    activation = _p("activation", f"hidden activation, one of {', '.join(ACTIVATIONS)}",
                    TypeConverters.toString)
    output_activation = _p("output_activation", "output layer activation: 'linear' or 'same' "
                           "(the hidden activation, as H2O does)", TypeConverters.toString)
    epochs = _p("epochs", "passes over the training data", TypeConverters.toInt)
    mini_batch_size = _p("mini_batch_size", "rows per gradient step", TypeConverters.toInt)
    seed = _p("seed", "random seed for weights and shuffling; None draws one and records it",
              _to_optional_int)
    optimizer = _p("optimizer", f"one of {', '.join(OPTIMIZERS)}", TypeConverters.toString)
    rate = _p("rate", "learning rate of adam", TypeConverters.toFloat)
    rho = _p("rho", "ADADELTA decay factor (H2O's rho)", TypeConverters.toFloat)
    epsilon = _p("epsilon", "ADADELTA epsilon (H2O's epsilon)", TypeConverters.toFloat)
    l1 = _p("l1", "L1 penalty on the weights", TypeConverters.toFloat)
    l2 = _p("l2", "L2 penalty on the weights", TypeConverters.toFloat)
    standardize = _p("standardize", "input scaling: 'h2o' (x - mean) / (max - min), 'minmax' "
                     "to [0, 1], 'zscore', or 'none'", TypeConverters.toString)
    ignore_const_cols = _p("ignore_const_cols", "leave features that are constant in the "
                           "training data out of the network (H2O's default)",
                           TypeConverters.toBoolean)
    deep_features_layer = _p("deep_features_layer", "hidden layer (1-based) whose codings "
                             "transform returns; None = the coding (narrowest) layer",
                             _to_optional_int)
    outputs = _p("outputs", f"columns transform adds, any of {', '.join(OUTPUTS)}",
                 TypeConverters.toListString)
    scoring_batch_size = _p("scoring_batch_size", "rows per forward pass when scoring",
                            TypeConverters.toInt)
    num_threads = _p("num_threads", "Torch threads for training on the driver; None = all cores",
                     _to_optional_int)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            features_col="features", features_cols=None, hidden=[100], activation="tanh",
            output_activation="linear", epochs=10, mini_batch_size=64, seed=None,
            optimizer="adam", rate=0.001, rho=0.99, epsilon=1e-8, l1=0.0, l2=0.0,
            standardize="h2o", ignore_const_cols=True, deep_features_layer=None,
            outputs=["deep_features", "reconstruction_mse"], scoring_batch_size=1024,
            num_threads=None,
        )

    def param_values(self) -> Dict[str, Any]:
        """Return every Param's current value (set or default) by name."""
        return {p.name: self.getOrDefault(p) for p in self.params if self.isDefined(p)}


# ---------------------------------------------------------------------------------------
# Declarative validation: each rule returns None when the value is fine, or the text of
# what is allowed.

def _one_of(options) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v in options else "one of " + ", ".join(repr(o) for o in options)


def _int_at_least(low: int) -> Callable[[Any], Optional[str]]:
    return lambda v: None if isinstance(v, int) and v >= low else f"an integer >= {low}"


def _float_at_least(low: float, strict: bool = False) -> Callable[[Any], Optional[str]]:
    def rule(v: Any) -> Optional[str]:
        ok = isinstance(v, (int, float)) and math.isfinite(v) and (v > low if strict else v >= low)
        return None if ok else f"a finite number {'>' if strict else '>='} {low}"
    return rule


def _open_unit(v: Any) -> Optional[str]:
    return None if isinstance(v, (int, float)) and 0 < v < 1 else "a number in (0, 1)"


def _hidden(v: Any) -> Optional[str]:
    ok = isinstance(v, list) and len(v) > 0 and all(isinstance(h, int) and h > 0 for h in v)
    return None if ok else "a non-empty list of positive integers, e.g. [100] or [300, 100, 300]"


def _outputs(v: Any) -> Optional[str]:
    ok = isinstance(v, list) and len(v) > 0 and all(o in OUTPUTS + ("is_anomaly",) for o in v)
    return None if ok else "a non-empty list of " + ", ".join(OUTPUTS + ("is_anomaly",))


def _optional(rule: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v is None else rule(v)


RULES: Dict[str, Callable[[Any], Optional[str]]] = {
    "hidden": _hidden,
    "activation": _one_of(ACTIVATIONS),
    "output_activation": _one_of(OUTPUT_ACTIVATIONS),
    "epochs": _int_at_least(1),
    "mini_batch_size": _int_at_least(1),
    "optimizer": _one_of(OPTIMIZERS),
    "rate": _float_at_least(0.0, strict=True),
    "rho": _open_unit,
    "epsilon": _float_at_least(0.0, strict=True),
    "l1": _float_at_least(0.0),
    "l2": _float_at_least(0.0),
    "standardize": _one_of(STANDARDIZE),
    "deep_features_layer": _optional(_int_at_least(1)),
    "outputs": _outputs,
    "scoring_batch_size": _int_at_least(1),
    "num_threads": _optional(_int_at_least(1)),
    "features_cols": _optional(lambda v: None if len(v) > 0 else "a non-empty list of columns"),
}


def validate(values: Dict[str, Any]) -> None:
    """Check Param values against :data:`RULES` and their cross-constraints.

    Parameters
    ----------
    values : dict
        Param name to value, as returned by :meth:`AutoencoderParams.param_values`.

    Raises
    ------
    ValueError
        Naming the first bad Param, the value found and what is allowed.
    """
    for name, rule in RULES.items():
        if name in values:
            allowed = rule(values[name])
            if allowed is not None:
                raise ValueError(f"Autoencoder param '{name}': got {values[name]!r}, "
                                 f"expected {allowed}")
    layer = values.get("deep_features_layer")
    if layer is not None and layer > len(values["hidden"]):
        raise ValueError(f"Autoencoder param 'deep_features_layer': got {layer}, expected a "
                         f"hidden layer number from 1 to {len(values['hidden'])} "
                         f"(hidden={values['hidden']})")


def check_known(names: List[str], known: List[str], where: str) -> None:
    """Raise a ValueError for the first name not in ``known``, suggesting the closest one."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"{where}: unknown setting '{name}'{hint} "
                             f"(allowed: {', '.join(sorted(known))})")
