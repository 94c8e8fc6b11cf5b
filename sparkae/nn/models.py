"""The dense network and the network builder under their long-standing import path.

The code lives in :mod:`sparkae.nn.activations` (activation names),
:mod:`sparkae.nn.input_scaler` (:class:`InputScaler`), :mod:`sparkae.nn.dense`
(:class:`AutoencoderNet`), :mod:`sparkae.nn.layout` (:func:`coding_layer`) and
:mod:`sparkae.nn.builder` (:func:`build_network`); this module only re-exports them.
"""

from __future__ import annotations

from sparkae.nn.activations import ACTIVATIONS, Maxout, base_activation, make_activation
from sparkae.nn.builder import build_network
from sparkae.nn.dense import AutoencoderNet
from sparkae.nn.input_scaler import InputScaler
from sparkae.nn.layout import coding_layer

__all__ = ["ACTIVATIONS", "AutoencoderNet", "InputScaler", "Maxout", "base_activation",
           "build_network", "coding_layer", "make_activation"]
