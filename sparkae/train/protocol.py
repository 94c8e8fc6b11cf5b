"""The messages between training ranks and the driver, both ends of each.

- Rank 0's result: the weights as safetensors bytes and the history as JSON text (never a
  pickled module): :func:`pack_result` / :func:`unpack_result`.
- A failing rank's report: one line ``SPARKAE_RANK_FAILED {json}`` (rank, world size,
  error type and message, time, the last lines of its output) on its stdout and, in local
  mode, a file ``error-rank<N>.json`` in the run directory: :func:`write_report` /
  :func:`read_reports`.
- A failed barrier task's error names the host its ranks ran on:
  :func:`task_failure_header` / :data:`FAILED_HOST`.
- A local run's rendezvous: the ``file://`` store named by :data:`STORE_ENV`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

import torch

#: Prefix of the line a failing rank prints.
MARKER = "SPARKAE_RANK_FAILED "
#: Lines of a failing rank's output that travel with its error.
TAIL_LINES = 40
#: Env var naming the rendezvous store of a local run (a ``file://`` URL).
STORE_ENV = "SPARKAE_RENDEZVOUS"
#: The host :func:`task_failure_header` names in a failed task's error (not the source line
#: of the ``raise`` that a Python traceback in the same text quotes).
FAILED_HOST = re.compile(r"sparkae: training ranks failed on host ([^{}\n]+?) \(return code")


def pack_result(state: Dict[str, torch.Tensor], history: List[Dict]) -> Dict[str, Any]:
    """Rank 0's result as plain data: safetensors bytes and JSON text.

    Parameters
    ----------
    state : dict
        The trained weights.
    history : list of dict
        The per-epoch history.

    Returns
    -------
    dict
        ``{"weights": bytes, "history": str}``.
    """
    from safetensors.torch import save

    return {"weights": save({k: v.detach().cpu().contiguous() for k, v in state.items()}),
            "history": json.dumps(history)}


def unpack_result(result: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], List[Dict]]:
    """Inverse of :func:`pack_result`: ``(state_dict, history)``."""
    from safetensors.torch import load

    return load(result["weights"]), json.loads(result["history"])


def lost_peer(message: str) -> bool:
    """True for a collective's error message saying another rank went away (gloo/nccl),
    i.e. this rank's failure is a consequence, not the cause."""
    return any(s in message for s in ("Connection closed by peer", "Connection reset by peer",
                                   "remote worker crashing", "NCCL communicator was aborted"))


def write_report(info: Dict[str, Any], run_dir: Optional[str]) -> None:
    """Send a failing rank's report ``info`` (JSON-able, with ``rank``) to the driver.

    It goes to the process's real stdout as one :data:`MARKER` line and, when ``run_dir``
    is given (local mode), to ``run_dir/error-rank<N>.json`` as well.
    """
    text = json.dumps(info)
    if run_dir:
        try:
            with open(os.path.join(run_dir, f"error-rank{info['rank']}.json"), "w") as f:
                f.write(text)
        except OSError:
            pass
    sys.__stdout__.write(MARKER + text + "\n")
    sys.__stdout__.flush()


def read_reports(run_dir: Optional[str], output: str) -> List[Dict[str, Any]]:
    """The ranks' reports: the files in ``run_dir`` when there are any, else the
    :data:`MARKER` lines in ``output`` (the launcher's error text)."""
    reports: List[Dict[str, Any]] = []
    for path in glob.glob(os.path.join(run_dir or "", "error-rank*.json")) if run_dir else []:
        try:
            with open(path) as f:
                reports.append(json.load(f))
        except (OSError, ValueError):
            pass
    if not reports:
        for line in output.split("\n"):
            idx = line.find(MARKER)
            if idx >= 0:
                try:
                    reports.append(json.loads(line[idx + len(MARKER):]))
                except ValueError:
                    pass
    return reports


def task_failure_header(host: str, returncode: Optional[int]) -> str:
    """The first line of a failed barrier task's error (:data:`FAILED_HOST` reads it)."""
    return f"sparkae: training ranks failed on host {host} (return code {returncode}):\n"
