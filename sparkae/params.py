"""Spark ML Params of the autoencoder: names, documentation, choices and defaults.

Names are snake_case and follow H2O's ``h2o.deeplearning`` arguments where H2O has one
(``hidden``, ``activation``, ``epochs``, ``mini_batch_size``, ``rate``, ``rho``,
``epsilon``, ``l1``, ``l2``, ``standardize``, ``ignore_const_cols``, ``seed``).
This module holds no logic: the Params, their choices and their defaults;
:mod:`sparkae.validation` holds the rules checked on the driver before any Spark job.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict

from pyspark.ml.param import Param, Params, TypeConverters

from sparkae.spark_private import dummy_parent

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
    return Param(dummy_parent(), name, doc, typeConverter=conv)


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


#: The default of every Param, declared once (the Params, ``explainParams()``, the job
#: settings' ``--help`` and the validation of partial settings all read it).
DEFAULTS: Dict[str, Any] = dict(
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
    progress="auto", reconstruction_sampling=None,
    mlflow_tracking=False,
)


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
    # distributed training
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
    # families beyond H2O
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
    # wide sparse input
    reconstruction_sampling = _p(
        "reconstruction_sampling", "sparse batches: train on each row's stored columns plus "
        "this many columns drawn uniformly from its zero columns, weighted (zero columns / k) "
        "so the loss is an unbiased estimate of the full reconstruction MSE (Dauphin, Glorot "
        "& Bengio 2011); the output layer computes only those entries and, on 1 rank, only "
        "their weights are updated. None = the exact loss. Validation and scoring stay exact",
        _to_sampling)
    # progress
    progress = _p("progress", "training progress: 'bar' (tqdm; a widget in notebooks), "
                  "'log' (one 'sparkae' log line per epoch), 'none', or 'auto' (log under "
                  "spark-submit or when stderr is not a terminal, else bar)",
                  TypeConverters.toString)
    # MLflow
    mlflow_tracking = _p("mlflow_tracking", "log the Params, per-epoch metrics and the model "
                         "(a sparkae directory and an MLflow pyfunc model) to MLflow; needs "
                         "sparkae[mlflow]. A fit inside an active MLflow run logs to it even "
                         "when False", TypeConverters.toBoolean)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(**copy.deepcopy(DEFAULTS))

    def param_values(self) -> Dict[str, Any]:
        """Return every Param's current value (set or default) by name."""
        return {p.name: self.getOrDefault(p) for p in self.params if self.isDefined(p)}
