"""The autoencoder families beyond H2O's dense network under their long-standing import
path; each family lives in its own module and this one only re-exports them.

- :mod:`sparkae.nn.dense`: :class:`WTADenseNet`, a dense network whose coding layer has
  lifetime winner-take-all sparsity in training (Makhzani and Frey 2015).
- :mod:`sparkae.nn.convolutional`: :class:`ConvAutoencoderNet` (Masci et al. 2011).
- :mod:`sparkae.nn.variational`: :class:`VariationalNet` (Kingma and Welling 2014).
- :mod:`sparkae.nn.adversarial`: :class:`AdversarialNet` (Makhzani et al. 2015), its
  phases' losses and :func:`mmd`.
- :mod:`sparkae.nn.layout`: the widths a spec implies (:func:`conv_hidden`,
  :func:`spec_coding_layer`); :mod:`sparkae.nn.builder`: :func:`build_family`.
"""

from __future__ import annotations

from sparkae.nn.adversarial import (DISCRIMINATOR_HIDDEN, PRIORS, AdversarialNet,
                                    adversarial_losses, generator_loss, mmd)
from sparkae.nn.builder import ARCHITECTURES, build_family, parameter_count
from sparkae.nn.coding import CodingNet
from sparkae.nn.convolutional import ConvAutoencoderNet
from sparkae.nn.dense import WTADenseNet
from sparkae.nn.layout import conv_hidden, conv_shapes, spec_coding_layer
from sparkae.nn.variational import VariationalNet

__all__ = ["ARCHITECTURES", "AdversarialNet", "CodingNet", "ConvAutoencoderNet",
           "DISCRIMINATOR_HIDDEN", "PRIORS", "VariationalNet", "WTADenseNet",
           "adversarial_losses", "build_family", "conv_hidden", "conv_shapes",
           "generator_loss", "mmd", "parameter_count", "spec_coding_layer"]
