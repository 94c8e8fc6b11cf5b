"""Numba kernels of the lazy sparse step (NumPy + Numba; no Spark, no Torch): in-place
Adam updates of chosen rows of a packed buffer, and the sampled decoder's row dots.

The lazy sparse step (:mod:`sparkae.train.lazy`) keeps each wide matrix and its Adam
moments in one ``(rows, 3, ...)`` buffer: slot 0 the parameter, slots 1 and 2
``exp_avg`` and ``exp_avg_sq``. With Torch ops an update of a batch's rows is a gather of
the three slots, the fused Adam kernel and a scatter back: the rows cross memory three
times. :func:`adam_rows` updates them where they lie, in one parallel pass, by the
formulas of ``torch.optim.Adam`` (``fused=True``)::

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

:func:`row_dot` computes a sampled decoder's entries ``h[rows[e]] . w[cols[e]]`` (and
:func:`row_dot_backward` their gradients) without the entries x width products that
Torch's gather-multiply-sum allocates, reads and frees at every step.

Numba is optional (``pip install sparkae[fast]``): :func:`available` is False without it
and the lazy step keeps its Torch path.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Callable, Optional

import numpy as np

log = logging.getLogger("sparkae")

#: (adam_rows, row_dot, row_dot_backward) once compiled; None before or without Numba
_KERNELS: Optional[tuple] = None
_SET_THREADS: Optional[Callable[[int], None]] = None
_MAX_THREADS = 1
_TRIED = False

#: ``SPARKAE_ROW_KERNEL=torch`` turns the Numba kernel off (the Torch path is used).
ENV = "SPARKAE_ROW_KERNEL"


def _build() -> tuple:
    import numba as nb

    @nb.njit(parallel=True, cache=True)
    def adam_rows(buf, idx, grad, delta, lr, b1, b2, eps, c1, c2_sqrt):  # pragma: no cover
        n = grad.shape[0]
        width = grad.shape[1]
        step = lr / c1
        for i in nb.prange(n):
            j = idx[i]
            for k in range(width):
                g = grad[i, k]
                m = buf[j, 1, k] + (1.0 - b1) * (g - buf[j, 1, k])   # torch's lerp
                v = buf[j, 2, k] * b2 + (1.0 - b2) * g * g
                buf[j, 1, k] = m
                buf[j, 2, k] = v
                d = -step * m / (math.sqrt(v) / c2_sqrt + eps)
                buf[j, 0, k] += d
                delta[i, k] = d

    @nb.njit(parallel=True, cache=True)
    def row_dot(h, rows, w, cols, out):  # pragma: no cover
        for e in nb.prange(rows.shape[0]):
            r, c = rows[e], cols[e]
            acc = 0.0
            for k in range(h.shape[1]):
                acc += h[r, k] * w[c, k]
            out[e] = acc

    @nb.njit(cache=True)
    def row_dot_backward(gy, h, rows, w, cols, dh, dw):  # pragma: no cover
        # serial: entries of one row (and of one column) may be anywhere in the list
        dh[:] = 0.0
        dw[:] = 0.0
        for e in range(rows.shape[0]):
            r, c, g = rows[e], cols[e], gy[e]
            for k in range(h.shape[1]):
                dh[r, k] += g * w[c, k]
                dw[c, k] += g * h[r, k]

    return adam_rows, row_dot, row_dot_backward


def available() -> bool:
    """Whether the kernels can be used: Numba imports, they compile, and
    ``SPARKAE_ROW_KERNEL`` is not ``torch``. The first call compiles them, or loads them
    from Numba's cache, and runs them once on two rows, so that a fit's first epoch does not
    pay for it."""
    return os.environ.get(ENV, "").lower() != "torch" and _load() is not None


def _load() -> Optional[tuple]:
    global _KERNELS, _SET_THREADS, _MAX_THREADS, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            fn, dot, dot_back = _build()
            for dtype in (np.float32, np.float64):   # compile (or load) and start threads
                two, idx = np.zeros((2, 1), dtype), np.arange(2)
                fn(np.zeros((2, 3, 1), dtype), idx, two, two.copy(), 0.0, 0.9, 0.999, 1e-8,
                   1.0, 1.0)
                dot(two, idx, two, idx, np.zeros(2, dtype))
                dot_back(np.zeros(2, dtype), two, idx, two, idx, two.copy(), two.copy())
            import numba

            _KERNELS, _SET_THREADS = (fn, dot, dot_back), numba.set_num_threads
            _MAX_THREADS = numba.config.NUMBA_NUM_THREADS
        except Exception as exc:   # ImportError, or a Numba that cannot compile here
            log.info("lazy sparse step: Numba row kernel unavailable (%s); using Torch ops",
                     exc)
    return _KERNELS


def _kernels() -> tuple:
    kernels = _load()
    if kernels is None:
        raise RuntimeError("the Numba kernels are unavailable; install sparkae[fast]")
    return kernels


def adam_rows(buf: np.ndarray, idx: np.ndarray, grad: np.ndarray, delta: np.ndarray,
              step: int, lr: float, betas: tuple, eps: float,
              threads: Optional[int] = None) -> None:
    """Adam step ``step`` (1-based) on rows ``idx`` of ``buf`` in place.

    Parameters
    ----------
    buf : ndarray, shape (rows, 3, width)
        Slot 0 the parameter rows, slots 1 and 2 Adam's ``exp_avg`` and ``exp_avg_sq``.
    idx : ndarray of int64, shape (n,)
        Distinct rows to update.
    grad : ndarray, shape (n, width)
        Their gradients, in the order of ``idx``.
    delta : ndarray, shape (n, width)
        Receives each row's change of the parameter.
    step, lr, betas, eps
        Adam's step count and settings.
    threads : int, optional
        Threads of the parallel loop (the caller's Torch threads, so that a rank stays
        within its task's cores); default Numba's (the machine's cores).

    Raises
    ------
    RuntimeError
        When the kernels are unavailable (see :func:`available`).
    """
    fn = _kernels()[0]
    if threads is not None and _SET_THREADS is not None:
        _SET_THREADS(max(1, min(int(threads), _MAX_THREADS)))
    b1, b2 = betas
    fn(buf, idx, grad, delta, float(lr), float(b1), float(b2), float(eps),
       1.0 - b1 ** step, math.sqrt(1.0 - b2 ** step))


def row_dot(h: np.ndarray, rows: np.ndarray, w: np.ndarray, cols: np.ndarray,
            out: np.ndarray) -> None:
    """``out[e] = h[rows[e]] . w[cols[e]]`` without an entries x width temporary."""
    _kernels()[1](h, rows, w, cols, out)


def row_dot_backward(gy: np.ndarray, h: np.ndarray, rows: np.ndarray, w: np.ndarray,
                     cols: np.ndarray, dh: np.ndarray, dw: np.ndarray) -> None:
    """The gradients of :func:`row_dot` for the upstream gradient ``gy``: ``dh`` (the
    shape of ``h``) and ``dw`` (the shape of ``w``), overwritten."""
    _kernels()[2](gy, h, rows, w, cols, dh, dw)
