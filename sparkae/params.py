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
ACTIVATIONS = ("tanh", "tanh_with_dropout", "rectifier", "rectifier_with_dropout", "maxout",
               "maxout_with_dropout", "exp_rectifier", "linear")
OUTPUT_ACTIVATIONS = ("linear", "same")
OPTIMIZERS = ("adam", "adadelta", "sgd")
SPARSITY_METHODS = ("kl", "h2o_bias")
NOISE = ("none", "gaussian", "masking", "salt_pepper")
MISSING = ("mean_imputation", "skip")
STANDARDIZE = ("h2o", "minmax", "zscore", "none")
#: Network families (sparkae.nn.families) and the priors of the generative ones.
ARCHITECTURES = ("dense", "convolutional", "variational", "adversarial")
PRIORS = ("gaussian", "uniform")
#: Hidden activations a convolutional network can use.
CONV_ACTIVATIONS = ("tanh", "rectifier", "exp_rectifier", "linear")
#: Forms of training progress (see :mod:`sparkae.progress`).
PROGRESS = ("auto", "bar", "log", "none")
#: Columns that ``transform`` can add.
OUTPUTS = ("deep_features", "reconstruction_mse", "reconstruction", "feature_errors",
           "is_anomaly")


def _p(name: str, doc: str, conv: Callable = TypeConverters.identity) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=conv)


def _to_optional_int(value: Any) -> Any:
    return None if value is None else TypeConverters.toInt(value)


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
    hidden_dropout_ratios = _p("hidden_dropout_ratios", "dropout ratio of each hidden layer for "
                               "the *_with_dropout activations (default 0.5 each, as H2O)",
                               TypeConverters.toListFloat)
    sparsity_beta = _p("sparsity_beta", "weight of the sparsity penalty (0 = off)",
                       TypeConverters.toFloat)
    average_activation = _p("average_activation", "target average activation of the coding "
                            "units, on the activation's own scale (tanh: in (-1, 1))",
                            TypeConverters.toFloat)
    sparsity_method = _p("sparsity_method", "'kl': beta * sum KL(rho || rho_hat); 'h2o_bias': "
                         "H2O's nudge of the coding biases", TypeConverters.toString)
    input_dropout_ratio = _p("input_dropout_ratio", "share of inputs dropped (set to 0) per row "
                             "while training; the target stays the clean input",
                             TypeConverters.toFloat)
    noise = _p("noise", f"input corruption for denoising: {', '.join(NOISE)}",
               TypeConverters.toString)
    noise_level = _p("noise_level", "gaussian: std in scaled units; masking, salt_pepper: share "
                     "of entries corrupted", TypeConverters.toFloat)
    max_w2 = _p("max_w2", "cap on the squared norm of each unit's incoming weights (None = no "
                "cap)", lambda v: None if v is None else TypeConverters.toFloat(v))
    rate_annealing = _p("rate_annealing", "sgd: rate / (1 + rate_annealing * rows seen)",
                        TypeConverters.toFloat)
    momentum_start = _p("momentum_start", "sgd: momentum at the start", TypeConverters.toFloat)
    momentum_ramp = _p("momentum_ramp", "sgd: rows over which momentum ramps to momentum_stable",
                       TypeConverters.toFloat)
    momentum_stable = _p("momentum_stable", "sgd: momentum after the ramp",
                         TypeConverters.toFloat)
    nesterov_accelerated_gradient = _p("nesterov_accelerated_gradient", "sgd: Nesterov momentum",
                                       TypeConverters.toBoolean)
    stopping_rounds = _p("stopping_rounds", "stop after this many scoring rounds without "
                         "improvement (0 = off)", TypeConverters.toInt)
    stopping_tolerance = _p("stopping_tolerance", "relative improvement that counts",
                            TypeConverters.toFloat)
    score_interval = _p("score_interval", "score (validation, early stopping) every this many "
                        "epochs", TypeConverters.toInt)
    overwrite_with_best_model = _p("overwrite_with_best_model", "keep the weights of the best "
                                   "scored epoch", TypeConverters.toBoolean)
    missing_values_handling = _p("missing_values_handling", "'mean_imputation' (NaN -> the "
                                 "training mean) or 'skip' (rows with NaN are left out of "
                                 "training and get null scores)", TypeConverters.toString)
    anomaly_quantile = _p("anomaly_quantile", "set the anomaly threshold to this quantile of "
                          "the training reconstruction errors",
                          lambda v: None if v is None else TypeConverters.toFloat(v))
    anomaly_threshold = _p("anomaly_threshold", "anomaly threshold on reconstruction_mse "
                           "(overrides anomaly_quantile)",
                           lambda v: None if v is None else TypeConverters.toFloat(v))
    # distributed training (issue 4)
    num_workers = _p("num_workers", "training ranks: 1 trains in the driver process; N > 1 "
                     "starts N ranks with TorchDistributor (local processes on a local "
                     "master, barrier tasks on a cluster) under DistributedDataParallel",
                     TypeConverters.toInt)
    use_gpu = _p("use_gpu", "train on GPUs: each rank uses the GPU Spark assigned to its task "
                 "(nccl); False = CPU (gloo)", TypeConverters.toBoolean)
    data_loader = _p("data_loader", "how ranks read the materialized data: 'auto' (petastorm "
                     "where it imports, else arrow), 'petastorm' or 'arrow'",
                     TypeConverters.toString)
    cache_dir = _p("cache_dir", "location for the materialized training data, a path or URI "
                   "(s3a://, hdfs://, dbfs:/, /Volumes/...; default: Spark conf "
                   "spark.sparkae.cacheDir, else the system temp dir on a local master, "
                   "checkpoint_dir/_cache on a cluster); on a cluster, a location every "
                   "executor reads", lambda v: None if v is None else str(v))
    keep_cache = _p("keep_cache", "keep the materialized data after the fit, keyed by the "
                    "DataFrame's plan, so later fits of the same data reuse it "
                    "(sparkae.data.clear_cache() removes it)", TypeConverters.toBoolean)
    checkpoint_dir = _p("checkpoint_dir", "write a checkpoint (safetensors + JSON, committed "
                        "by a manifest) every checkpoint_interval epochs to this path or URI "
                        "(s3a://, hdfs://, ...); fit(..., resume=True) continues from the "
                        "last one", lambda v: None if v is None else str(v))
    checkpoint_interval = _p("checkpoint_interval", "epochs between checkpoints",
                             TypeConverters.toInt)
    # families beyond H2O (issue 7)
    architecture = _p("architecture", f"network family: {', '.join(ARCHITECTURES)}",
                      TypeConverters.toString)
    kl_beta = _p("kl_beta", "variational: weight of the KL term (loss = MSE + kl_beta * KL / "
                 "modelled features)", TypeConverters.toFloat)
    contractive_lambda = _p("contractive_lambda", "dense/convolutional: weight of the "
                            "contractive penalty, the squared Frobenius norm of the encoder's "
                            "Jacobian (0 = off)", TypeConverters.toFloat)
    wta_sparsity = _p("wta_sparsity", "dense/convolutional: winner-take-all; each coding unit "
                      "keeps this share of its activations across a batch while training "
                      "(convolutional: after spatial WTA); None = off",
                      lambda v: None if v is None else TypeConverters.toFloat(v))
    image_shape = _p("image_shape", "convolutional: [channels, height, width] (or [height, "
                     "width]) of each flat row; None = one square channel",
                     lambda v: None if v is None else TypeConverters.toListInt(v))
    conv_filters = _p("conv_filters", "convolutional: channels of each stride-2 encoder "
                      "convolution", TypeConverters.toListInt)
    kernel_size = _p("kernel_size", "convolutional: odd kernel size of every convolution",
                     TypeConverters.toInt)
    prior = _p("prior", f"adversarial: the codings' prior, {' or '.join(PRIORS)} (N(0, I) or "
               "uniform on [-1, 1])", TypeConverters.toString)
    # wide sparse input (issue 4)
    reconstruction_sampling = _p(
        "reconstruction_sampling", "sparse batches: train on each row's stored columns plus "
        "this many columns drawn uniformly from its zero columns, weighted (zero columns / k) "
        "so the loss is an unbiased estimate of the full reconstruction MSE (Dauphin, Glorot "
        "& Bengio 2011); the output layer computes only those entries and, on 1 rank, only "
        "their weights are updated. None = the exact loss. Validation and scoring stay exact",
        _to_sampling)
    # progress (issue 8)
    progress = _p("progress", "training progress: 'bar' (tqdm; a widget in notebooks), "
                  "'log' (one 'sparkae' log line per epoch), 'none', or 'auto' (log under "
                  "spark-submit or when stderr is not a terminal, else bar)",
                  TypeConverters.toString)
    # MLflow (issue 8)
    mlflow_tracking = _p("mlflow_tracking", "log the Params, per-epoch metrics and the model "
                         "(a sparkae directory and an MLflow pyfunc model) to MLflow; needs "
                         "sparkae[mlflow]. A fit inside an active MLflow run logs to it even "
                         "when False", TypeConverters.toBoolean)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            features_col="features", features_cols=None, hidden=[100], activation="tanh",
            output_activation="linear", epochs=10, mini_batch_size=64, seed=None,
            optimizer="adam", rate=0.001, rho=0.99, epsilon=1e-8, l1=0.0, l2=0.0,
            standardize="h2o", ignore_const_cols=True, deep_features_layer=None,
            outputs=["deep_features", "reconstruction_mse"], scoring_batch_size=1024,
            num_threads=None, hidden_dropout_ratios=None, sparsity_beta=0.0,
            average_activation=0.0, sparsity_method="kl", input_dropout_ratio=0.0, noise="none",
            noise_level=0.0, max_w2=None, rate_annealing=1e-6, momentum_start=0.0,
            momentum_ramp=1e6, momentum_stable=0.0, nesterov_accelerated_gradient=True,
            stopping_rounds=5, stopping_tolerance=0.0, score_interval=1,
            overwrite_with_best_model=True, missing_values_handling="mean_imputation",
            anomaly_quantile=None, anomaly_threshold=None,
            num_workers=1, use_gpu=False, data_loader="auto", cache_dir=None, keep_cache=False,
            checkpoint_dir=None, checkpoint_interval=1,
            architecture="dense", kl_beta=1.0, contractive_lambda=0.0, wta_sparsity=None,
            image_shape=None, conv_filters=[16, 32], kernel_size=3, prior="gaussian",
        )
        self._setDefault(progress="auto", reconstruction_sampling=None)
        self._setDefault(mlflow_tracking=False)

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
    "mlflow_tracking": lambda v: None if isinstance(v, bool) else "True or False",
    "reconstruction_sampling": _optional(
        lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 1
        else SAMPLING_ALLOWED),
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
    if "hidden" in values:
        _cross_checks(values)
    _exclusive_checks(values)


def _exclusive_checks(values: Dict[str, Any]) -> None:
    """Settings that cannot be combined: the first one set is named with its partner."""
    optimizer = values.get("optimizer", "adam")
    for name in ("momentum_start", "momentum_stable"):
        if optimizer != "sgd" and (values.get(name) or 0) > 0:
            raise ValueError(f"Autoencoder param '{name}': got {values[name]!r} with optimizer="
                             f"'{optimizer}'; momentum applies only to optimizer='sgd' (set "
                             "optimizer='sgd' or leave momentum at 0)")


def _cross_checks(values: Dict[str, Any]) -> None:
    """Constraints that involve more than one Param."""
    hidden = values["hidden"]
    ratios = values.get("hidden_dropout_ratios")
    if ratios is not None and len(ratios) != len(hidden):
        raise ValueError(f"Autoencoder param 'hidden_dropout_ratios': got {ratios} "
                         f"({len(ratios)} values), expected one ratio per hidden layer "
                         f"({len(hidden)} for hidden={hidden})")
    activation = values.get("activation", "tanh")
    if ratios is not None and any(ratios) and not activation.endswith("_with_dropout"):
        raise ValueError(f"Autoencoder param 'hidden_dropout_ratios': set to {ratios} but "
                         f"activation '{activation}' has no dropout; use "
                         f"'{activation}_with_dropout'")
    if values.get("output_activation") == "same" and activation.startswith("maxout"):
        raise ValueError("Autoencoder param 'output_activation': 'same' is not available for "
                         f"activation '{activation}'; use 'linear'")
    if values.get("sparsity_beta", 0) > 0:
        from sparkae.nn.losses import activation_unit_range

        low, high = activation_unit_range(activation)
        rho = values.get("average_activation", 0.0)
        if not (isinstance(rho, (int, float)) and low < rho < high):
            raise ValueError(f"Autoencoder param 'average_activation': got {rho!r}, expected a "
                             f"number in ({low:g}, {high:g}) for activation '{activation}' "
                             "(the target is on the activation's own scale)")
    if values.get("noise", "none") != "none" and values.get("noise_level", 0) <= 0:
        raise ValueError(f"Autoencoder param 'noise_level': got {values.get('noise_level')!r}, "
                         f"expected a number > 0 with noise='{values['noise']}'")
    if values.get("noise") in ("masking", "salt_pepper") and values.get("noise_level", 0) >= 1:
        raise ValueError(f"Autoencoder param 'noise_level': got {values['noise_level']!r}, "
                         f"expected a share in (0, 1) for noise='{values['noise']}'")
    _family_checks(values)
    layer = values.get("deep_features_layer")
    if (layer is not None and layer > len(values["hidden"])
            and values.get("architecture", "dense") != "convolutional"):
        raise ValueError(f"Autoencoder param 'deep_features_layer': got {layer}, expected a "
                         f"hidden layer number from 1 to {len(values['hidden'])} "
                         f"(hidden={values['hidden']})")


def _family_checks(values: Dict[str, Any]) -> None:
    """Combinations of the families' Params (architecture and the options that need one)."""
    arch = values.get("architecture", "dense")
    for name, on in (("contractive_lambda", values.get("contractive_lambda", 0) > 0),
                     ("wta_sparsity", values.get("wta_sparsity") is not None)):
        if on and arch in ("variational", "adversarial"):
            raise ValueError(f"Autoencoder param '{name}': set to {values[name]!r} but "
                             f"architecture='{arch}'; {name} applies to the dense and "
                             "convolutional architectures only")
    if arch == "dense":
        return
    if values.get("reconstruction_sampling") is not None:
        raise ValueError(f"Autoencoder param 'reconstruction_sampling': set to "
                         f"{values['reconstruction_sampling']!r} but architecture='{arch}', "
                         "whose batches are dense; it applies to the dense architecture only")
    activation = values.get("activation", "tanh")
    if activation.endswith("_with_dropout") or values.get("hidden_dropout_ratios"):
        raise ValueError(f"Autoencoder param 'activation': got {activation!r} (or "
                         f"hidden_dropout_ratios) with architecture='{arch}'; dropout is "
                         "available for the dense architecture only")
    if values.get("sparsity_beta", 0) > 0:
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
