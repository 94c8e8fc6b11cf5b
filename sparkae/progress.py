"""Training progress people can follow: a bar in notebooks and terminals, log lines elsewhere.

The ``progress`` Param picks the form:

- ``"bar"``: a tqdm bar over the epochs with the last MSE and rows/s (tqdm's ETA);
  ``tqdm.auto`` gives the notebook widget inside Jupyter and Databricks.
- ``"log"``: one line per epoch through the "sparkae" logger (epoch, MSE, rows/s, ETA),
  for spark-submit and log files (no carriage-return bar spam).
- ``"none"``: nothing per epoch.
- ``"auto"`` (the default): ``log`` under spark-submit or when stderr is not a terminal,
  ``bar`` in a notebook or a terminal (see :func:`resolve_mode`).

Only rank 0 reports; other ranks stay quiet. Without tqdm, ``bar`` falls back to ``log``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Dict, Optional, TextIO

log = logging.getLogger("sparkae")

#: Values of the ``progress`` Param.
MODES = ("auto", "bar", "log", "none")


def _in_notebook() -> bool:
    """True inside a Jupyter/IPython kernel (Databricks notebooks included)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _under_spark_submit() -> bool:
    """True when the driver was started by spark-submit (its launcher hands the Python
    driver the gateway port through the environment; a notebook's PySpark starts its own)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def resolve_mode(mode: str, stream: Optional[TextIO] = None) -> str:
    """Turn ``"auto"`` into ``"bar"`` or ``"log"``; other modes are returned as they are.

    Parameters
    ----------
    mode : {"auto", "bar", "log", "none"}
    stream : file-like, optional
        Where a bar would go (default ``sys.stderr``).

    Returns
    -------
    str
        ``"log"`` under spark-submit or when ``stream`` is not a terminal (outside a
        notebook); ``"bar"`` in a notebook or a terminal.

    Raises
    ------
    ValueError
        ``mode`` is not one of :data:`MODES`.

    Examples
    --------
    >>> resolve_mode("none")
    'none'
    """
    if mode not in MODES:
        raise ValueError(f"Autoencoder param 'progress': got {mode!r}, expected one of "
                         + ", ".join(repr(m) for m in MODES))
    if mode != "auto":
        return mode
    if _under_spark_submit():
        return "log"
    if _in_notebook():
        return "bar"
    return "bar" if _isatty(stream if stream is not None else sys.stderr) else "log"


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds (``?`` when unknown)."""
    if seconds is None or not seconds == seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _make_bar(total: int, initial: int, stream: Optional[TextIO]) -> Any:
    """A tqdm bar (the notebook widget via tqdm.auto when no stream is given), or None
    when tqdm is missing or cannot draw here."""
    try:
        if stream is None:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
    except ImportError:
        log.debug("tqdm is not installed: progress as log lines")
        return None
    kwargs = dict(total=total, initial=initial, unit="epoch", desc="sparkae",
                  dynamic_ncols=True, leave=True, mininterval=0)
    try:
        return tqdm(file=stream, **kwargs) if stream is not None else tqdm(**kwargs)
    except Exception:  # noqa: BLE001 - e.g. tqdm.notebook without ipywidgets
        try:
            from tqdm.std import tqdm as plain

            return plain(file=sys.stderr, **kwargs)
        except Exception:  # noqa: BLE001 - progress must never fail a fit
            return None


class EpochProgress:
    """The ``on_epoch`` hook of the training loop that reports progress.

    Parameters
    ----------
    mode : {"auto", "bar", "log", "none"}
        See the module docstring; ``"auto"`` is resolved with :func:`resolve_mode`.
    epochs : int
        Epochs the fit runs (the bar's total and the ETA's horizon).
    rank : int, default 0
        Ranks other than 0 report nothing.
    start_epoch : int, default 0
        Epochs already done (a resumed fit).
    stream : file-like, optional
        Where the bar goes (default: ``tqdm.auto``'s choice, stderr or the notebook).

    Examples
    --------
    >>> hook = EpochProgress("log", epochs=2)
    >>> hook({"epoch": 1, "train_mse": 0.5, "validation_mse": None, "rows": 100,
    ...       "seconds": 1.0, "rows_per_s": 100.0})
    >>> hook.close()
    """

    def __init__(self, mode: str, epochs: int, rank: int = 0, start_epoch: int = 0,
                 stream: Optional[TextIO] = None) -> None:
        mode = resolve_mode(mode, stream)
        self.mode = mode if rank == 0 else "none"
        self.epochs, self.stream = epochs, stream
        self.start_epoch = start_epoch
        self.seconds = 0.0
        self.done = 0
        self.bar = None
        if self.mode == "bar":
            self.bar = _make_bar(epochs, start_epoch, stream)
            if self.bar is None:
                self.mode = "log"

    def eta(self, epoch: int) -> float:
        """Seconds left: the mean epoch time of this run times the epochs left."""
        if not self.done:
            return float("nan")
        return self.seconds / self.done * max(0, self.epochs - epoch)

    def __call__(self, entry: Dict[str, Any]) -> None:
        if self.mode == "none":
            return
        self.done += 1
        self.seconds += float(entry.get("seconds", 0.0))
        epoch, valid = entry["epoch"], entry.get("validation_mse")
        if self.bar is not None:
            post = {"mse": f"{entry['train_mse']:.5g}"}
            if valid is not None:
                post["val_mse"] = f"{valid:.5g}"
            post["rows/s"] = f"{entry['rows_per_s']:.0f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
            return
        log.info("epoch %d/%d  train_mse=%.6f%s  %.0f rows/s  ETA %s", epoch, self.epochs,
                 entry["train_mse"], "" if valid is None else f"  validation_mse={valid:.6f}",
                 entry["rows_per_s"], format_eta(self.eta(epoch)))

    def close(self) -> None:
        """End the bar (the loop may stop early); safe to call more than once."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
