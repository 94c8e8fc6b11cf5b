"""The driver's account of a failed distributed run: which rank failed first, and why.

:func:`rank_failure` turns the launcher's error (torchrun's root-cause lines, the ranks'
reports, the failing task's host; see :mod:`sparkae.train.protocol`) into one
:class:`RankFailedError` that names the rank that caused the failure, not the ranks that
failed because it went away.
"""

from __future__ import annotations

import re
import signal
from typing import List, Optional, Tuple

from sparkae.train.protocol import FAILED_HOST, lost_peer, read_reports

#: torchrun's report of a failed rank: its global rank and exit code (negative: a signal).
_ROOT_CAUSE = re.compile(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)"
                         r"[^\n]*?(?:\((SIG\w+)\))?\s*$", re.M)


class RankFailedError(RuntimeError):
    """A training rank failed; ``rank``, ``error`` (type and message) and ``log_tail``."""

    def __init__(self, message: str, rank: Optional[int] = None, error: str = "",
                 log_tail: Optional[List[str]] = None) -> None:
        super().__init__(message)
        self.rank, self.error, self.log_tail = rank, error, log_tail or []


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def rank_failure(exc: BaseException, run_dir: Optional[str], world: int) -> Exception:
    """The error to raise for a failed distributed run.

    Parameters
    ----------
    exc : BaseException
        What the launcher raised (its text carries torchrun's and the ranks' reports).
    run_dir : str, optional
        The local run's directory, where failing ranks leave their reports.
    world : int
        The number of ranks.

    Returns
    -------
    RankFailedError
        The first failing rank, its error and the last lines of its log when known, else
        the launcher's own error.
    """
    text = str(exc)
    reports = read_reports(run_dir, text)
    reported = {r.get("rank") for r in reports}
    found = FAILED_HOST.search(text)
    host = f" on host {found.group(1)}" if found else ""   # the failing task's ranks' host
    killed: List[Tuple[int, int, str]] = []
    for m in _ROOT_CAUSE.finditer(text):
        rank, code, name = int(m.group(1)), int(m.group(2)), m.group(3)
        if code < 0 and rank not in reported and rank not in [k[0] for k in killed]:
            killed.append((rank, -code, name or _signal_name(-code)))
    if killed:
        rank, signum, name = killed[0]
        others = sorted(reported | {k[0] for k in killed[1:]})
        also = f" (rank(s) {', '.join(map(str, others))} failed after it)" if others else ""
        return RankFailedError(
            f"training failed on rank {rank} of {world}: its process was killed by signal "
            f"{signum} ({name}){host}, e.g. out of memory or killed by a user or the "
            f"system{also}. "
            "Checkpoints (checkpoint_dir) let fit(..., resume=True) continue from the last "
            "complete epoch.", rank=rank, error=f"killed by {name}")
    if not reports:
        return RankFailedError(f"distributed training with {world} ranks failed before a rank "
                               f"reported an error: {type(exc).__name__}: "
                               f"{text.strip()[-3000:]}")
    # the earliest report, but a rank that only lost its peer is a consequence: a rank
    # with its own error comes first
    reports.sort(key=lambda r: (lost_peer(r.get("message", "")),
                                r.get("time", 0)))
    first = reports[0]
    tail = "\n".join("    " + line for line in first.get("tail", [])[-40:])
    others = sorted({r["rank"] for r in reports[1:]} - {first["rank"]})
    also = f" (rank(s) {', '.join(map(str, others))} failed after it)" if others else ""
    if lost_peer(first.get("message", "")):
        also += (" (this rank lost its connection to another rank, which failed or was "
                 "killed first; that rank's own error did not reach the driver)")
    where = f"rank {first['rank']} ran{host}\n" if host else ""
    message = (f"training failed on rank {first['rank']} of {first.get('world_size', world)}: "
               f"{first['type']}: {first['message']}{also}\n{where}"
               f"last lines of rank {first['rank']}'s log:\n{tail}")
    return RankFailedError(message, rank=first["rank"],
                           error=f"{first['type']}: {first['message']}",
                           log_tail=first.get("tail", []))
