"""The rules every Autoencoder Param value must pass, checked on the driver before any
Spark job: each rule returns None when the value is fine, or the text of what is allowed;
:func:`validate` names the first bad Param, the value found and what is allowed."""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Dict, List, Optional

from sparkae.nn.losses import activation_unit_range
from sparkae.params import (ACTIVATIONS, ARCHITECTURES, CONV_ACTIVATIONS, DEFAULTS, MISSING, NOISE,
                            OPTIMIZERS, OUTPUT_ACTIVATIONS, OUTPUTS, PRIORS, PROGRESS,
                            SAMPLING_ALLOWED, SPARSITY_METHODS, STANDARDIZE)


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
    ok = isinstance(v, list) and len(v) > 0 and all(o in OUTPUTS for o in v)
    return None if ok else "a non-empty list of " + ", ".join(OUTPUTS)


def _ratio(v: Any) -> Optional[str]:
    return None if isinstance(v, (int, float)) and 0 <= v < 1 else "a number in [0, 1)"


def _positive_ints(example: str) -> Callable[[Any], Optional[str]]:
    def rule(v: Any) -> Optional[str]:
        ok = isinstance(v, list) and len(v) > 0 and all(isinstance(h, int) and h > 0 for h in v)
        return None if ok else f"a non-empty list of positive integers, e.g. {example}"
    return rule


def _image_shape(v: Any) -> Optional[str]:
    ok = _positive_ints("")(v) is None and len(v) in (2, 3)
    return None if ok else "[channels, height, width] or [height, width], positive integers"


def _optional(rule: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v is None else rule(v)


def _flag(v: Any) -> Optional[str]:
    return None if isinstance(v, bool) else "True or False"


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
    "epoch_memory": _optional(_int_at_least(0)),
    "features_cols": _optional(lambda v: None if len(v) > 0 else "a non-empty list of columns"),
    "hidden_dropout_ratios": _optional(lambda v: None if all(_ratio(r) is None for r in v)
                                       else "a list of numbers in [0, 1)"),
    "sparsity_beta": _float_at_least(0.0),
    "sparsity_method": _one_of(SPARSITY_METHODS),
    "input_dropout_ratio": _ratio,
    "noise": _one_of(NOISE),
    "noise_level": _float_at_least(0.0),
    "max_w2": _optional(_float_at_least(0.0, strict=True)),
    "rate_annealing": _float_at_least(0.0),
    "momentum_start": _ratio,
    "momentum_ramp": _float_at_least(0.0),
    "momentum_stable": _ratio,
    "stopping_rounds": _int_at_least(0),
    "stopping_tolerance": _float_at_least(0.0),
    "score_interval": _int_at_least(1),
    "missing_values_handling": _one_of(MISSING),
    "anomaly_quantile": _optional(_open_unit),
    "anomaly_threshold": _optional(_float_at_least(0.0)),
    "clip_to_training_range": _flag,
    "num_workers": _int_at_least(1),
    "data_loader": _one_of(("auto", "petastorm", "arrow")),
    "cache_dir": _optional(lambda v: None if isinstance(v, str) and v else "a directory path"),
    "checkpoint_dir": _optional(lambda v: None if isinstance(v, str) and v
                                else "a directory path"),
    "checkpoint_interval": _int_at_least(1),
    "architecture": _one_of(ARCHITECTURES),
    "kl_beta": _float_at_least(0.0),
    "contractive_lambda": _float_at_least(0.0),
    "wta_sparsity": _optional(lambda v: None if isinstance(v, (int, float)) and 0 < v <= 1
                              else "a number in (0, 1]"),
    "image_shape": _optional(_image_shape),
    "conv_filters": _positive_ints("[16, 32]"),
    "kernel_size": lambda v: None if isinstance(v, int) and v >= 1 and v % 2 == 1
    else "an odd integer >= 1",
    "prior": _one_of(PRIORS),
    "progress": _one_of(PROGRESS),
    "mlflow_tracking": _flag,
    "reconstruction_sampling": _optional(
        lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 1
        else SAMPLING_ALLOWED),
}


def validate(values: Dict[str, Any]) -> None:
    """Check Param values against :data:`RULES` and their cross-constraints.

    Parameters
    ----------
    values : dict
        Param name to value, as returned by :meth:`AutoencoderParams.param_values`
        (or some of them: the others are taken at their defaults).

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
    values = {**DEFAULTS, **values}   # a partial mapping: the others at their defaults
    _cross_checks(values)
    _exclusive_checks(values)


def _exclusive_checks(values: Dict[str, Any]) -> None:
    """Settings that cannot be combined: the first one set is named with its partner."""
    optimizer = values["optimizer"]
    for name in ("momentum_start", "momentum_stable"):
        if optimizer != "sgd" and (values.get(name) or 0) > 0:
            raise ValueError(f"Autoencoder param '{name}': got {values[name]!r} with optimizer="
                             f"'{optimizer}'; momentum applies only to optimizer='sgd' (set "
                             "optimizer='sgd' or leave momentum at 0)")


def _cross_checks(values: Dict[str, Any]) -> None:
    """Constraints that involve more than one Param."""
    hidden = values["hidden"]
    ratios = values["hidden_dropout_ratios"]
    if ratios is not None and len(ratios) != len(hidden):
        raise ValueError(f"Autoencoder param 'hidden_dropout_ratios': got {ratios} "
                         f"({len(ratios)} values), expected one ratio per hidden layer "
                         f"({len(hidden)} for hidden={hidden})")
    activation = values["activation"]
    if ratios is not None and any(ratios) and not activation.endswith("_with_dropout"):
        raise ValueError(f"Autoencoder param 'hidden_dropout_ratios': set to {ratios} but "
                         f"activation '{activation}' has no dropout; use "
                         f"'{activation}_with_dropout'")
    if values["output_activation"] == "same" and activation.startswith("maxout"):
        raise ValueError("Autoencoder param 'output_activation': 'same' is not available for "
                         f"activation '{activation}'; use 'linear'")
    if values["sparsity_beta"] > 0:
        low, high = activation_unit_range(activation)
        rho = values["average_activation"]
        if not (isinstance(rho, (int, float)) and low < rho < high):
            raise ValueError(f"Autoencoder param 'average_activation': got {rho!r}, expected a "
                             f"number in ({low:g}, {high:g}) for activation '{activation}' "
                             "(the target is on the activation's own scale)")
    if values["noise"] != "none" and values["noise_level"] <= 0:
        raise ValueError(f"Autoencoder param 'noise_level': got {values['noise_level']!r}, "
                         f"expected a number > 0 with noise='{values['noise']}'")
    if values["noise"] in ("masking", "salt_pepper") and values["noise_level"] >= 1:
        raise ValueError(f"Autoencoder param 'noise_level': got {values['noise_level']!r}, "
                         f"expected a share in (0, 1) for noise='{values['noise']}'")
    _family_checks(values)
    layer = values["deep_features_layer"]
    if (layer is not None and layer > len(values["hidden"])
            and values["architecture"] != "convolutional"):
        raise ValueError(f"Autoencoder param 'deep_features_layer': got {layer}, expected a "
                         f"hidden layer number from 1 to {len(values['hidden'])} "
                         f"(hidden={values['hidden']})")


def _family_checks(values: Dict[str, Any]) -> None:
    """Combinations of the families' Params (architecture and the options that need one)."""
    arch = values["architecture"]
    for name, on in (("contractive_lambda", values["contractive_lambda"] > 0),
                     ("wta_sparsity", values["wta_sparsity"] is not None)):
        if on and arch in ("variational", "adversarial"):
            raise ValueError(f"Autoencoder param '{name}': set to {values[name]!r} but "
                             f"architecture='{arch}'; {name} applies to the dense and "
                             "convolutional architectures only")
    if arch == "dense":
        return
    if values["reconstruction_sampling"] is not None:
        raise ValueError(f"Autoencoder param 'reconstruction_sampling': set to "
                         f"{values['reconstruction_sampling']!r} but architecture='{arch}', "
                         "whose batches are dense; it applies to the dense architecture only")
    activation = values["activation"]
    if activation.endswith("_with_dropout") or values["hidden_dropout_ratios"]:
        raise ValueError(f"Autoencoder param 'activation': got {activation!r} (or "
                         f"hidden_dropout_ratios) with architecture='{arch}'; dropout is "
                         "available for the dense architecture only")
    if values["sparsity_beta"] > 0:
        raise ValueError(f"Autoencoder param 'sparsity_beta': set to {values['sparsity_beta']!r} "
                         f"but architecture='{arch}'; the KL sparsity penalty applies to the "
                         "dense architecture only (use wta_sparsity for convolutional)")
    if arch == "convolutional" and activation not in CONV_ACTIVATIONS:
        raise ValueError(f"Autoencoder param 'activation': got {activation!r} with "
                         f"architecture='convolutional', expected one of "
                         f"{', '.join(CONV_ACTIVATIONS)}")


def check_known(names: List[str], known: List[str], where: str) -> None:
    """Raise a ValueError for the first name not in ``known``, suggesting the closest one."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"{where}: unknown setting '{name}'{hint} "
                             f"(allowed: {', '.join(sorted(known))})")
