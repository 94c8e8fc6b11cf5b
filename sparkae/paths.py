"""Driver-side checks of the paths a job writes, run before any Spark job starts.

A job must not start work whose result it cannot write, and must never write over the data
it reads. Both checks apply to local paths (``file:`` URIs included); other schemes are
compared as strings only.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Optional

__all__ = ["local_path", "check_writable", "check_not_input"]


def local_path(path: str) -> Optional[str]:
    """The absolute local path of ``path`` (``file:`` stripped), or None for other schemes."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif path.startswith("file:"):
        path = path[len("file:"):]
    elif "://" in path:
        return None
    return os.path.realpath(os.path.abspath(path))


def check_writable(path: str, what: str) -> None:
    """Raise a clear error when the local directory ``path`` cannot be created and written.

    The nearest existing ancestor must be a directory in which a file can be created; a
    probe file is created there and removed at once (this works for root too, where
    permission bits say nothing).

    Raises
    ------
    ValueError
        ``path`` or one of its ancestors is a file, or the location is not writable.
    """
    local = local_path(path)
    if local is None:
        return
    probe = local
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"{what}: '{path}' cannot be written: '{probe}' is a file, not a "
                         "directory")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".sparkae-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{what}: '{path}' cannot be written: {exc.strerror or exc} in "
                         f"'{probe}'") from None


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def check_not_input(output: str, inputs: Iterable[Optional[str]], what: str) -> None:
    """Raise when ``output`` is, contains or lies inside one of the ``inputs``.

    Writing there would overwrite or delete the data the job is reading.
    """
    out = local_path(output) or output.rstrip("/")
    for src in inputs:
        if not src:
            continue
        inp = local_path(src) or src.rstrip("/")
        if _inside(out, inp) or _inside(inp, out):
            raise ValueError(f"{what}: '{output}' would overwrite the input '{src}'; write "
                             "the output somewhere else")
