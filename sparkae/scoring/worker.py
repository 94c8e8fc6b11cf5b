"""What runs in a Python worker: a bounded cache of rebuilt networks, and the per-batch
scoring call the transports share.

A worker scores many batches, often of one model: it rebuilds the network from the
payload once (on its GPU when it has one) and keeps it, as ``predict_batch_udf`` keeps
its model. The cache holds at most :data:`WORKER_MODELS` networks, least recently used
first out, keyed by the payload's token (:class:`sparkae.scoring.broadcasts.PayloadSource`),
which is new for every payload the driver hands out: a worker never serves a network
from another payload, another session included.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import pyarrow as pa
import torch

from sparkae.scoring.broadcasts import PayloadSource
from sparkae.scoring.encode import score_column
from sparkae.scoring.forward import Scorer
from sparkae.scoring.payload import unpack

#: Networks a Python worker keeps at once.
WORKER_MODELS = 3
#: Most bytes of input rows one scoring step decodes at once (8 MiB). A batch of 10,000
#: dense 784-wide rows holds 63 MB of doubles, and decoding it allocates as much again,
#: each time fresh memory above the C allocator's reuse threshold: in slices of this size
#: the score job scored dense vectors at 89-113k rows/s against 48-66k in 10,000-row
#: batches on 2 cores (docs/DESIGN.md section 7).
SLICE_BYTES = 8 << 20

_LOCK = threading.Lock()
# payload token -> network of this worker, least recently used first.
_SCORERS: "OrderedDict[str, Scorer]" = OrderedDict()
# the most networks scored together so far (:func:`scorers_for`): the cache keeps as many
_KEEP = [0]


def rows_within(row_bytes: float, cap: int, budget: Optional[int] = None) -> int:
    """Rows of ``row_bytes`` bytes each that fit in ``budget`` bytes (default
    :data:`SLICE_BYTES`): at least 1, at most ``cap``."""
    budget = SLICE_BYTES if budget is None else budget
    if row_bytes <= 0:
        return max(1, cap)
    return max(1, min(cap, int(budget // row_bytes)))


def _device(threads: int) -> torch.device:
    """This worker's GPU when it has one; else the CPU with ``threads`` Torch threads."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(threads)
    return torch.device("cpu")


def scorer_for(source: PayloadSource, threads: int) -> Scorer:
    """This worker's network for ``source``, rebuilt on first use and cached.

    Parameters
    ----------
    source : PayloadSource
        The payload and its token.
    threads : int
        Torch threads when the network is rebuilt on the CPU.

    Returns
    -------
    Scorer
        The network on this worker's device.
    """
    with _LOCK:
        scorer = _SCORERS.get(source.token)
        if scorer is not None:
            _SCORERS.move_to_end(source.token)
            return scorer
    scorer = Scorer(unpack(source.get()), _device(threads))
    with _LOCK:
        _SCORERS[source.token] = scorer
        while len(_SCORERS) > max(WORKER_MODELS, _KEEP[0]):
            _SCORERS.popitem(last=False)
    return scorer


def scorers_for(sources: List[PayloadSource], threads: int) -> List[Scorer]:
    """The networks of ``sources`` scored together (an ensemble's members), rebuilt on
    first use; from then on the worker's cache keeps at least that many networks, so the
    members never evict each other."""
    with _LOCK:
        _KEEP[0] = max(_KEEP[0], len(sources))
    return [scorer_for(s, threads) for s in sources]


def cached_tokens() -> List[str]:
    """Tokens of the networks this worker holds, least recently used first."""
    with _LOCK:
        return list(_SCORERS)


@dataclass(frozen=True)
class BatchScorer:
    """One scoring job's work on an Arrow column, as shipped to the workers.

    Attributes
    ----------
    source : PayloadSource
        The model.
    outputs : tuple of str
        The requested outputs, in order.
    layer, threshold, batch_size
        As for :meth:`sparkae.scoring.forward.Scorer.score`.
    threads : int
        Torch threads per Python worker (CPU executors).
    with_status : bool
        Also return the ``status`` column.
    skip_missing : bool
        Null scores for rows with missing values instead of imputing them.
    before_batch : callable, optional
        Run before each batch is scored (tests' fault injection); None in production.
    clip : bool
        Clamp the scaled inputs into the scaled training range (``clip_to_training_range``).
    """

    source: PayloadSource
    outputs: Tuple[str, ...]
    layer: int
    threshold: Optional[float]
    batch_size: int
    threads: int
    with_status: bool
    skip_missing: bool
    before_batch: Optional[Callable[[], None]] = None
    clip: bool = False

    def __call__(self, col: pa.Array) -> Tuple[List[str], List[pa.Array]]:
        """Names and Arrow columns of the scores of ``col`` (see
        :func:`sparkae.scoring.encode.score_column`), decoded and scored in slices of at
        most :data:`SLICE_BYTES` of input, joined again."""
        if self.before_batch is not None:
            self.before_batch()
        scorer = scorer_for(self.source, self.threads)

        def scored(rows: pa.Array) -> Tuple[List[str], List[pa.Array]]:
            return score_column(rows, scorer, self.outputs, self.layer, self.threshold,
                                self.batch_size, self.with_status, self.skip_missing,
                                self.clip)

        n = len(col)
        step = rows_within(col.nbytes / n, n) if n else n
        if step >= n:
            return scored(col)
        parts = [scored(col.slice(lo, step)) for lo in range(0, n, step)]
        names = parts[0][0]
        return names, [pa.concat_arrays([p[1][j] for p in parts]) for j in range(len(names))]
