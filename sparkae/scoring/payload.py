"""The model as it travels to the scoring workers: one ``bytes`` value, no pickle.

Layout: ``len(json) | json | safetensors``, where the JSON is the network's architecture
spec (what :func:`sparkae.nn.models.build_network` takes) and the safetensors blob holds
every tensor of its state, the input scaling's statistics included (they are buffers of
the network's scaler). This value is what the driver broadcasts (or captures in a
closure under Spark Connect); :mod:`sparkae.scoring.worker` rebuilds the network from it.
"""

from __future__ import annotations

import json
from typing import Any, Dict

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sparkae.nn.models import AutoencoderNet, build_network

#: Bytes of the little-endian length that precedes the JSON spec.
_HEAD = 8


def pack(spec: Dict[str, Any], state: Dict[str, torch.Tensor]) -> bytes:
    """Serialize a network as ``len(json) | json | safetensors`` bytes (no pickle).

    Parameters
    ----------
    spec : dict
        The architecture spec (:func:`sparkae.nn.models.build_network`'s argument).
    state : dict of str to Tensor
        The network's ``state_dict()`` (weights and scaling statistics).

    Returns
    -------
    bytes
        The payload :func:`unpack` reads back.
    """
    head = json.dumps(spec, sort_keys=True).encode()
    return len(head).to_bytes(_HEAD, "little") + head + st_save(
        {k: v.detach().contiguous().cpu() for k, v in state.items()})


def read_spec(payload: bytes) -> Dict[str, Any]:
    """The architecture spec of a :func:`pack` payload, without reading its tensors."""
    n = int.from_bytes(payload[:_HEAD], "little")
    return json.loads(payload[_HEAD:_HEAD + n])


def unpack(payload: bytes) -> AutoencoderNet:
    """Rebuild an evaluation-mode network from :func:`pack` bytes.

    Parameters
    ----------
    payload : bytes
        What :func:`pack` returned.

    Returns
    -------
    AutoencoderNet
        The network on the CPU, in evaluation mode.
    """
    n = int.from_bytes(payload[:_HEAD], "little")
    net = build_network(json.loads(payload[_HEAD:_HEAD + n]))
    net.load_state_dict(st_load(payload[_HEAD + n:]))
    return net.eval()
