"""Build an untrained network from its JSON-able spec (pure Torch, no Spark imports).

``spec["architecture"]`` picks the family (default ``"dense"``, so older specs build as
before); every network has the interface the training loop and the scorer use:
``scaler`` (an :class:`~sparkae.nn.input_scaler.InputScaler`), ``hidden`` (the width of
every hidden layer), ``forward(z) -> (reconstruction, hidden activations)``,
``hidden_activations(z, upto)``, ``decode_from_last(h)``, ``reconstruct`` and
``weight_matrices()``. Inputs ``z`` are scaled, dense rows of the kept features.
"""

from __future__ import annotations

from typing import Any, Dict

from torch import nn

from sparkae.nn.adversarial import AdversarialNet
from sparkae.nn.convolutional import ConvAutoencoderNet
from sparkae.nn.dense import AutoencoderNet, WTADenseNet
from sparkae.nn.layout import spec_coding_layer
from sparkae.nn.variational import VariationalNet

ARCHITECTURES = ("dense", "convolutional", "variational", "adversarial")


def build_network(spec: Dict[str, Any]) -> nn.Module:
    """Build an untrained network from a JSON-able architecture ``spec``.

    Parameters
    ----------
    spec : dict
        ``input_size``, ``kept``, ``activation`` and the family's own entries
        (``hidden``, ``image_shape``, ``conv_filters``, ...); ``architecture`` defaults to
        ``"dense"``.

    Returns
    -------
    torch.nn.Module
        A plain :class:`AutoencoderNet` for a dense spec without ``wta_sparsity``, else
        the network of :func:`build_family`.
    """
    if spec.get("architecture", "dense") != "dense" or spec.get("wta_sparsity"):
        return build_family(spec)
    return AutoencoderNet(spec["input_size"], spec["kept"], spec["hidden"], spec["activation"],
                          spec.get("output_activation", "linear"),
                          spec.get("hidden_dropout_ratios"))


def build_family(spec: Dict[str, Any]) -> nn.Module:
    """The network of a non-dense ``spec`` (or a dense one with ``wta_sparsity``)."""
    arch = spec.get("architecture", "dense")
    common = (spec["input_size"], spec["kept"])
    out_act = spec.get("output_activation", "linear")
    if arch == "dense":
        return WTADenseNet(*common, spec["hidden"], spec["activation"], out_act,
                           spec.get("hidden_dropout_ratios"), wta_sparsity=spec["wta_sparsity"],
                           coding=spec_coding_layer(spec))
    if arch == "convolutional":
        return ConvAutoencoderNet(*common, spec["image_shape"], spec["conv_filters"],
                                  spec["kernel_size"], spec["activation"], out_act,
                                  spec.get("wta_sparsity"))
    if arch == "variational":
        return VariationalNet(*common, spec["hidden"], spec["activation"], out_act,
                              spec.get("coding_layer"))
    if arch == "adversarial":
        return AdversarialNet(*common, spec["hidden"], spec["activation"], out_act,
                              spec.get("coding_layer"), prior=spec.get("prior", "gaussian"))
    raise ValueError(f"architecture: got {arch!r}, expected one of {', '.join(ARCHITECTURES)}")


def parameter_count(net: nn.Module) -> int:
    """Trainable parameters of ``net`` (the discriminator included)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
