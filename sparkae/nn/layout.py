"""The layer widths a network spec implies (pure Python): the coding layer of a hidden
stack and the feature-map shapes of a convolutional stack."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple


def coding_layer(hidden: List[int]) -> int:
    """The 1-based coding layer: the narrowest hidden layer (the middle of a symmetric stack)."""
    narrowest = min(hidden)
    middle = (len(hidden) - 1) / 2
    candidates = [i for i, h in enumerate(hidden) if h == narrowest]
    return 1 + min(candidates, key=lambda i: abs(i - middle))


def spec_coding_layer(spec: Dict[str, Any]) -> int:
    """The 1-based coding layer of a network spec (stored, else the narrowest layer)."""
    return int(spec.get("coding_layer") or coding_layer(spec["hidden"]))


def image_chw(image_shape: Sequence[int]) -> Tuple[int, int, int]:
    """``(channels, height, width)`` of an ``image_shape`` given with or without channels."""
    shape = [int(v) for v in image_shape]
    return (1, shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[1], shape[2])


def conv_shapes(image_shape: Sequence[int], filters: Sequence[int],
                kernel_size: int) -> List[Tuple[int, int, int]]:
    """``(channels, height, width)`` after each stride-2 encoder convolution."""
    _, h, w = image_chw(image_shape)
    pad = kernel_size // 2
    shapes = []
    for f in filters:
        h = (h + 2 * pad - kernel_size) // 2 + 1
        w = (w + 2 * pad - kernel_size) // 2 + 1
        if h < 1 or w < 1:
            raise ValueError(f"conv_filters: {list(filters)} halves the image {list(image_shape)} "
                             "below one pixel; use fewer layers")
        shapes.append((int(f), h, w))
    return shapes


def conv_hidden(image_shape: Sequence[int], filters: Sequence[int],
                kernel_size: int) -> List[int]:
    """Flattened widths of every hidden layer: the encoder maps, then the decoder's
    intermediate maps (mirror images of the encoder's, the image itself excluded)."""
    enc = [c * h * w for c, h, w in conv_shapes(image_shape, filters, kernel_size)]
    return enc + enc[-2::-1]
