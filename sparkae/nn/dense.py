"""H2O's dense autoencoder, and its winner-take-all variant (pure Torch, no Spark imports).

An :class:`AutoencoderNet` owns its input scaling (an :class:`InputScaler` whose buffers
hold the training statistics), so the same saved tensors scale, encode and decode
everywhere: in the training loop, in the scoring UDF and after a save/load round trip.
All reconstruction errors are computed in the scaled space, as H2O's Reconstruction.MSE.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn

from sparkae.nn import sparse, wta
from sparkae.nn.activations import activation_pieces, make_activation
from sparkae.nn.input_scaler import InputScaler


class AutoencoderNet(nn.Module):
    """A dense autoencoder: one Linear layer per entry of ``hidden``, then a Linear output.

    Parameters
    ----------
    input_size : int
        Width of the rows the network receives (before feature selection).
    kept : int
        Number of input features the network models (after ``ignore_const_cols``).
    hidden : list of int
        Every hidden layer, encoder and decoder.
    activation : str
        Hidden activation name (H2O's, ``*_with_dropout`` forms included).
    output_activation : str
        ``"linear"`` or ``"same"`` (the hidden activation).
    hidden_dropout_ratios : list of float, optional
        Dropout after each hidden layer (training only); used by ``*_with_dropout``.
    """

    def __init__(self, input_size: int, kept: int, hidden: List[int], activation: str,
                 output_activation: str = "linear",
                 hidden_dropout_ratios: Optional[List[float]] = None) -> None:
        super().__init__()
        self.scaler = InputScaler(input_size, kept)
        self.hidden = list(hidden)
        pieces = activation_pieces(activation)
        sizes = [kept] + list(hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b * pieces) for a, b in zip(sizes[:-1], sizes[1:]))
        self.acts = nn.ModuleList(make_activation(activation) for _ in hidden)
        ratios = hidden_dropout_ratios or [0.0] * len(hidden)
        self.dropouts = nn.ModuleList(nn.Dropout(r) if r > 0 else nn.Identity() for r in ratios)
        self.output = nn.Linear(sizes[-1], kept)
        self.output_act: Optional[nn.Module] = None
        if output_activation == "same":
            if pieces != 1:
                raise ValueError("output_activation: 'same' is not available for maxout; use "
                                 "'linear'")
            self.output_act = make_activation(activation)
        for layer in list(self.layers) + [self.output]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def hidden_activations(self, z: torch.Tensor, upto: Optional[int] = None,
                           first: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                           ) -> List[torch.Tensor]:
        """Activations of hidden layers 1..upto (all by default) for scaled inputs ``z``;
        ``first(z)``, when given, computes the first layer's pre-activation instead of its
        weights (the lazy sparse step of :mod:`sparkae.train.lazy`)."""
        outs = []
        for i, (layer, act, drop) in enumerate(zip(self.layers, self.acts, self.dropouts)):
            if upto is not None and i >= upto:
                break
            if i == 0 and first is not None:
                h = act(first(z))
            elif i == 0 and sparse.is_sparse(z):
                h = act(sparse.first_layer(layer, z, sparse.offset(self.scaler)))
            else:
                h = act(layer(z))
            h = self.after_activation(i, h)
            outs.append(h)
            z = drop(h)
        return outs

    def after_activation(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """Hook on hidden layer ``index``'s (0-based) activations; identity here
        (winner-take-all networks mask the coding layer)."""
        return h

    def decode_from_last(self, h: torch.Tensor) -> torch.Tensor:
        """The reconstruction (rows x kept) from the last hidden layer's activations."""
        y = self.output(self.dropouts[-1](h))
        return self.output_act(y) if self.output_act is not None else y

    def decode_entries(self, h: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                       dot: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                       bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The reconstruction of the ``(rows[e], cols[e])`` entries only, in the unshifted
        space of a sparse batch (:mod:`sparkae.nn.sampling`): the output weight's rows of
        those columns are gathered, never a batch x width output. ``dot(h)`` (each entry's
        row of ``h`` times its output weight row) and ``bias`` (entries) replace the
        output layer's own weights (the lazy sparse step of :mod:`sparkae.train.lazy`)."""
        h = self.dropouts[-1](h)
        if dot is None:   # embedding: a gather whose backward is a fast scatter
            y = ((nn.functional.embedding(rows, h)
                  * nn.functional.embedding(cols, self.output.weight)).sum(dim=1)
                 + self.output.bias.index_select(0, cols))
        else:
            y = dot(h) + bias
        if self.output_act is not None:
            y = self.output_act(y)
        return y + sparse.offset(self.scaler).index_select(0, cols)

    def forward(self, z: torch.Tensor, entries: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Reconstruct scaled inputs ``z``; return ``(reconstruction, hidden activations)``.

        ``entries = (rows, cols)`` (a sparse ``z`` only) returns the reconstruction of those
        entries alone (:meth:`decode_entries`), for reconstruction sampling."""
        if entries is not None:
            if not sparse.is_sparse(z):
                raise ValueError("entries: a sampled reconstruction needs a sparse CSR batch")
            acts = self.hidden_activations(z)
            return self.decode_entries(acts[-1], *entries), acts
        acts = self.hidden_activations(z)
        y = self.decode_from_last(acts[-1])
        if sparse.is_sparse(z):  # the reconstruction in the sparse batch's unshifted space
            y = sparse.unshift(y, sparse.offset(self.scaler))
        return y, acts

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction of scaled inputs ``z``."""
        return self.forward(z)[0]

    def weight_matrices(self) -> List[torch.Tensor]:
        """The weight matrices (no biases), for L1/L2 penalties and ``max_w2``."""
        return [m.weight for m in list(self.layers) + [self.output]]


class WTADenseNet(AutoencoderNet):
    """:class:`AutoencoderNet` with lifetime WTA on coding layer ``coding`` (1-based) while
    training: each coding unit keeps its top ``wta_sparsity`` share of the batch (Makhzani
    and Frey 2015)."""

    def __init__(self, *args: Any, wta_sparsity: float, coding: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wta_sparsity, self.coding = float(wta_sparsity), int(coding)

    def after_activation(self, index: int, h: torch.Tensor) -> torch.Tensor:
        if self.training and index == self.coding - 1:
            return wta.lifetime(h, self.wta_sparsity)
        return h
