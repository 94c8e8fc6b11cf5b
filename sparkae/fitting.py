"""A fit's preparation: driver-side checks, the prepared input, the network's spec and the
training loop's settings, from an Autoencoder's Param values.

:func:`prepare_input` is the Spark side of a fit (schema checks, scaling statistics, the
data materialized once); everything after it runs without Spark, so tuning trials share
one preparation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from pyspark.sql import DataFrame

import sparkae.tracking as tracking
from sparkae.data import cache
from sparkae.data.local_prepare import prepare_locally
from sparkae.data.petastorm import resolve_loader
from sparkae.data.prepare import InputInfo, compute_stats, described, prepare_like, resolve
from sparkae.data.training_data import (TrainingData, materialize_for_training,
                                        training_data_from)
from sparkae.io import checks as paths
from sparkae.io.uri import join
from sparkae.nn.families import conv_hidden, spec_coding_layer
from sparkae.nn.models import coding_layer
from sparkae.validation import validate
from sparkae.train.loop import TrainConfig


@dataclass
class PreparedInput:
    """A fit's input, prepared and materialized once (see :func:`prepare_input`): plain,
    picklable values that a process without Spark can train from."""

    info: InputInfo
    stats: Any                 # FeatureStats of the training rows
    valid_rows: int
    data: TrainingData


def check_values(values: Dict[str, Any]) -> None:
    """Driver-side checks of a fit's Param values before any Spark job.

    Raises
    ------
    ValueError
        A bad Param value, an unwritable ``checkpoint_dir``/``cache_dir``, or MLflow
        tracking without MLflow installed.
    """
    validate(values)
    for name in ("checkpoint_dir", "cache_dir"):
        if values[name]:
            paths.check_writable(values[name], name)
    if values["mlflow_tracking"]:
        tracking.require()   # missing MLflow fails here, before any Spark job


#: The Params that decide what :func:`prepare_input` writes; fits that agree on them can
#: share one prepared input.
PREPARATION_PARAMS = ("features_col", "features_cols", "data_loader", "cache_dir",
                      "keep_cache")


def preparation_key(values: Dict[str, Any]) -> str:
    """What fits must agree on to share one :func:`prepare_input` (its settings, and
    whether input noise forces dense batches)."""
    return json.dumps([[values.get(k) for k in PREPARATION_PARAMS], _noisy(values)],
                      default=str)


def prepare_input(dataset: DataFrame, values: Dict[str, Any],
                  validation_df: Optional[DataFrame] = None,
                  in_process: bool = False) -> PreparedInput:
    """Prepare and materialize a fit's training (and validation) input: the Spark side of
    a fit. Release ``result.data`` when done with it.

    Parameters
    ----------
    dataset, validation_df : DataFrame
        As in :meth:`Autoencoder.fit`.
    values : dict
        The estimator's Param values (``features_col(s)``, ``cache_dir``, ``keep_cache``,
        ``data_loader``, ``noise``, ``input_dropout_ratio``).
    in_process : bool, default False
        The only rank trains in this process: a small input prepared on the driver is
        then held in memory rather than written (:mod:`sparkae.data.held`).

    Raises
    ------
    ValueError
        A missing or badly typed feature column, or validation rows of another width.
    """
    vectors, info = resolve(dataset, values["features_col"], values["features_cols"])
    spark = dataset.sparkSession
    loader = resolve_loader(values["data_loader"])
    if not values["keep_cache"] and loader == "arrow" and cache.is_local_master(spark):
        local = _prepare_on_driver(dataset, vectors, info, validation_df, values, in_process)
        if local is not None:
            return local
    stats = described(info, compute_stats(vectors, info))
    valid_vectors, valid_rows, vstats = None, 0, None
    if validation_df is not None:
        valid_vectors = prepare_like(validation_df, info, "validation_df")
        vstats = compute_stats(valid_vectors, info, role="validation_df")
        if len(vstats.mean) != info.size:
            raise ValueError(f"validation_df: vectors have {len(vstats.mean)} features; the "
                             f"training data has {info.size}")
        valid_rows = vstats.count
    data = materialize_for_training(
        dataset.sparkSession, vectors, stats, valid_vectors, vstats, info.size,
        cache_dir=values["cache_dir"], keep=values["keep_cache"],
        loader=loader, noisy=_noisy(values),
        cache_fallback=cache_fallback(values))
    return PreparedInput(info, stats, valid_rows, data)


def _prepare_on_driver(dataset: DataFrame, vectors: DataFrame, info: InputInfo,
                       validation_df: Optional[DataFrame], values: Dict[str, Any],
                       in_process: bool) -> Optional[PreparedInput]:
    """:func:`prepare_input` through :func:`prepare_locally`, for the training rows and the
    validation rows alike; None when either must go through Spark.

    Raises
    ------
    ValueError
        Validation rows of another width than the training rows.
    """
    spark = dataset.sparkSession
    root = cache.cache_root(spark, values["cache_dir"])
    hint = info.size if info.kind == "columns" else None
    local = prepare_locally(vectors, root, hint, source=(dataset, info), hold=in_process)
    if local is None:
        return None
    stats, entry = local
    ventry, vstats = None, None
    handles = [entry]
    try:
        if validation_df is not None:
            vlocal = prepare_locally(prepare_like(validation_df, info, "validation_df"), root,
                                     hint, source=(validation_df, info), hold=in_process)
            if vlocal is None:            # the Spark path prepares both
                entry.release()
                return None
            vstats, ventry = vlocal
            handles.append(ventry)
            if len(vstats.mean) != len(stats.mean):
                raise ValueError(f"validation_df: vectors have {len(vstats.mean)} features; "
                                 f"the training data has {len(stats.mean)}")
    except BaseException:
        for h in handles:
            h.release()
        raise
    described(info, stats)
    data = training_data_from(entry, stats, info.size, _noisy(values), spark, ventry)
    return PreparedInput(info, stats, vstats.count if vstats is not None else 0, data)


def _noisy(values: Dict[str, Any]) -> bool:
    """Input noise is configured (it forces dense batches)."""
    return values["noise"] != "none" or values["input_dropout_ratio"] > 0


def cache_fallback(values: Dict[str, Any]) -> Optional[str]:
    """Where the cache goes when no cache location is set: ``checkpoint_dir/_cache``."""
    return join(values["checkpoint_dir"], "_cache") if values["checkpoint_dir"] else None


def network_spec(values: Dict[str, Any], info: InputInfo, scaling: Any) -> Dict[str, Any]:
    """The JSON-able architecture of the network (what :func:`build_network` takes)."""
    ratios = values["hidden_dropout_ratios"]
    if ratios is None and values["activation"].endswith("_with_dropout"):
        ratios = [0.5] * len(values["hidden"])   # H2O's default hidden dropout
    spec = {"input_size": info.size, "kept": int(len(scaling.keep)), "hidden": values["hidden"],
            "activation": values["activation"], "output_activation": values["output_activation"],
            "hidden_dropout_ratios": ratios,
            "skip_missing": values["missing_values_handling"] == "skip"}
    arch = values["architecture"]
    if arch != "dense":   # dense specs stay as they were: older models load unchanged
        spec["architecture"] = arch
    if values["wta_sparsity"] is not None:
        spec["wta_sparsity"] = float(values["wta_sparsity"])
        spec["coding_layer"] = values["deep_features_layer"] or coding_layer(values["hidden"])
    if arch == "convolutional":
        shape = image_shape_for(values["image_shape"], info.size)
        spec.update(image_shape=shape, conv_filters=list(values["conv_filters"]),
                    kernel_size=int(values["kernel_size"]),
                    hidden=conv_hidden(shape, values["conv_filters"], values["kernel_size"]),
                    coding_layer=len(values["conv_filters"]), hidden_dropout_ratios=None)
    elif arch == "adversarial":
        spec["prior"] = values["prior"]
    return spec


def image_shape_for(image_shape: Optional[List[int]], width: int) -> List[int]:
    """``[channels, height, width]`` of rows ``width`` wide: ``image_shape`` checked
    against the width, or one square channel when it is None.

    Raises
    ------
    ValueError
        The shape's product differs from the width, or no shape is given and the width is
        not a square.
    """
    if image_shape is None:
        side = int(round(width ** 0.5))
        if side * side != width:
            raise ValueError(f"Autoencoder param 'image_shape': not set, and the rows' width "
                             f"{width} is not a square; set image_shape=[channels, height, "
                             "width] for architecture='convolutional'")
        return [1, side, side]
    shape = [1] + list(image_shape) if len(image_shape) == 2 else list(image_shape)
    product = shape[0] * shape[1] * shape[2]
    if product != width:
        raise ValueError(f"Autoencoder param 'image_shape': got {list(image_shape)} ({product} "
                         f"values per row), but the rows have {width} features")
    return shape


def train_config(values: Dict[str, Any], seed: int,
                  spec: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Loop settings from Param values (and the network ``spec``, whose coding layer a
    convolutional network fixes)."""
    if spec is not None and spec.get("architecture") == "convolutional":
        layer = spec_coding_layer(spec)
    else:
        layer = values["deep_features_layer"] or coding_layer(values["hidden"])
    max_w2 = values["max_w2"]
    return TrainConfig(
        epochs=values["epochs"], optimizer=values["optimizer"], rate=values["rate"],
        rho=values["rho"], epsilon=values["epsilon"], l1=values["l1"], l2=values["l2"],
        rate_annealing=values["rate_annealing"], momentum_start=values["momentum_start"],
        momentum_ramp=values["momentum_ramp"], momentum_stable=values["momentum_stable"],
        nesterov=values["nesterov_accelerated_gradient"],
        max_w2=float("inf") if max_w2 is None else max_w2,
        sparsity_beta=values["sparsity_beta"], average_activation=values["average_activation"],
        sparsity_method=values["sparsity_method"], activation=values["activation"],
        coding_layer=layer, input_dropout_ratio=values["input_dropout_ratio"],
        noise=values["noise"], noise_level=values["noise_level"],
        stopping_rounds=values["stopping_rounds"],
        stopping_tolerance=values["stopping_tolerance"],
        score_interval=values["score_interval"],
        overwrite_with_best_model=values["overwrite_with_best_model"],
        skip_missing=values["missing_values_handling"] == "skip", seed=seed,
        architecture=values["architecture"], kl_beta=values["kl_beta"],
        contractive_lambda=values["contractive_lambda"],
        reconstruction_sampling=values["reconstruction_sampling"])
