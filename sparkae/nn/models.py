"""Network builders (pure Torch, no Spark imports).

An :class:`AutoencoderNet` owns its input scaling (an :class:`InputScaler` whose buffers
hold the training statistics), so the same saved tensors scale, encode and decode
everywhere: in the training loop, in the scoring UDF and after a save/load round trip.
All reconstruction errors are computed in the scaled space, as H2O's Reconstruction.MSE.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from sparkae.nn import sparse

class Maxout(nn.Module):
    """H2O's maxout: the max over ``channels`` linear pieces per unit."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, self.channels).amax(dim=2)


#: H2O activation name -> (module factory, pieces per unit, output range (low, high)).
ACTIVATIONS = {
    "tanh": (nn.Tanh, 1, (-1.0, 1.0)),
    "rectifier": (nn.ReLU, 1, (0.0, float("inf"))),
    "maxout": (Maxout, 2, (float("-inf"), float("inf"))),
    "exp_rectifier": (nn.ELU, 1, (-1.0, float("inf"))),
    "linear": (nn.Identity, 1, (float("-inf"), float("inf"))),  # not H2O's: PCA-equivalent
}


def base_activation(name: str) -> str:
    """``tanh_with_dropout`` -> ``tanh``: the activation without its dropout suffix."""
    return name[: -len("_with_dropout")] if name.endswith("_with_dropout") else name


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for an H2O activation name (dropout forms too)."""
    try:
        return ACTIVATIONS[base_activation(name)][0]()
    except KeyError:
        raise ValueError(f"activation: got {name!r}, expected one of "
                         f"{', '.join(sorted(ACTIVATIONS))} (or a *_with_dropout form)") from None


def coding_layer(hidden: List[int]) -> int:
    """The 1-based coding layer: the narrowest hidden layer (the middle of a symmetric stack)."""
    narrowest = min(hidden)
    middle = (len(hidden) - 1) / 2
    candidates = [i for i, h in enumerate(hidden) if h == narrowest]
    return 1 + min(candidates, key=lambda i: abs(i - middle))


class InputScaler(nn.Module):
    """Select the kept input features and scale them: ``(x[:, keep] - shift) * scale``.

    ``fill`` holds, for every input feature, the value that :meth:`unscale` reports for a
    feature left out of the network (its constant training value).
    """

    def __init__(self, input_size: int, kept: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.register_buffer("keep", torch.arange(kept, dtype=torch.long))
        self.register_buffer("shift", torch.zeros(kept))
        self.register_buffer("scale", torch.ones(kept))
        self.register_buffer("fill", torch.zeros(input_size))
        # scaled value that replaces a missing (NaN) input: the training mean
        self.register_buffer("impute", torch.zeros(kept))
        # scaled training minimum and maximum of each kept feature (salt-and-pepper noise)
        self.register_buffer("lo", torch.zeros(kept))
        self.register_buffer("hi", torch.ones(kept))

    def set_statistics(self, keep, shift, scale, fill, impute=None, lo=None, hi=None) -> None:
        """Load scaling statistics (array-likes) into the buffers."""
        for name, value in (("keep", keep), ("shift", shift), ("scale", scale), ("fill", fill),
                            ("impute", impute), ("lo", lo), ("hi", hi)):
            if value is not None:
                buf = getattr(self, name)
                buf.copy_(torch.as_tensor(value, dtype=buf.dtype))

    @property
    def all_kept(self) -> bool:
        return self.keep.numel() == self.input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if sparse.is_sparse(x):  # stays sparse: S = x * scale, see sparkae.nn.sparse
            return sparse.scale(self, x)
        if not self.all_kept:
            x = x.index_select(1, self.keep)
        z = (x - self.shift) * self.scale
        return torch.where(torch.isnan(z), self.impute, z)

    def unscale(self, y: torch.Tensor) -> torch.Tensor:
        """Map network outputs (scaled, kept features) back to the full input width and units."""
        y = y / self.scale + self.shift
        if self.all_kept:
            return y
        out = self.fill.expand(y.shape[0], -1).clone()
        out[:, self.keep] = y
        return out


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
        pieces = ACTIVATIONS[base_activation(activation)][1]
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


def build_network(spec: Dict[str, Any]) -> nn.Module:
    """Build an untrained network from a JSON-able architecture ``spec``.

    ``spec["architecture"]`` (default ``"dense"``, so older specs build as before) picks
    the family; non-dense families and dense networks with ``wta_sparsity`` come from
    :mod:`sparkae.nn.families`.
    """
    if spec.get("architecture", "dense") != "dense" or spec.get("wta_sparsity"):
        from sparkae.nn.families import build_family

        return build_family(spec)
    return AutoencoderNet(spec["input_size"], spec["kept"], spec["hidden"], spec["activation"],
                          spec.get("output_activation", "linear"),
                          spec.get("hidden_dropout_ratios"))
