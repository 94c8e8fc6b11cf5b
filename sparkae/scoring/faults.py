"""Fault injection for tests of failed and interrupted scoring runs; inert otherwise.

Production code knows nothing of faults: the transports run an optional per-batch hook
(``before_batch`` of :class:`sparkae.scoring.worker.BatchScorer`), and this module is
the only thing that builds one, from two Spark confs a test sets (in the session, or
with ``--conf`` / the job's ``spark.conf`` setting for a spark-submit run). With neither
conf set, :func:`from_session` returns None and no hook runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

#: Spark conf ``"PARTITION:BATCH"``: raise in the worker scoring the BATCH-th Arrow batch
#: (1-based) of partition PARTITION.
FAIL_CONF = "spark.sparkae.test.failOnBatch"
#: Spark conf: seconds each Arrow batch waits before it is scored (lets fault tests kill an
#: executor or the driver while a job is surely mid-way).
DELAY_CONF = "spark.sparkae.test.delayPerBatchS"

# Arrow batches seen per task attempt in this Python worker.
_BATCHES: Dict[Tuple[int, int, int], int] = {}


@dataclass(frozen=True)
class BatchFault:
    """The hook run before each Arrow batch: raise at once when the batch is the
    ``fail_at = (partition, batch)`` one, else wait ``delay`` seconds (so that with both
    set, the other tasks are still running when the job fails)."""

    fail_at: Optional[Tuple[int, int]]
    delay: float

    def __call__(self) -> None:
        self._fail()
        if self.delay > 0:
            time.sleep(self.delay)

    def _fail(self) -> None:
        if self.fail_at is None:
            return
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is None:
            return
        k = (ctx.stageId(), ctx.partitionId(), ctx.attemptNumber())
        _BATCHES[k] = _BATCHES.get(k, 0) + 1
        part, batch = self.fail_at
        if (ctx.partitionId(), _BATCHES[k]) == self.fail_at:
            raise RuntimeError(f"sparkae: injected failure ({FAIL_CONF}={part}:{batch}) "
                               f"in partition {part}, Arrow batch {batch}")


def _conf(spark: Any, name: str) -> Optional[str]:
    try:
        return spark.conf.get(name, None)
    except Exception:  # noqa: BLE001 - no conf, no hook
        return None


def from_session(spark: Any) -> Optional[BatchFault]:
    """The hook the session's confs ask for (:data:`FAIL_CONF`, :data:`DELAY_CONF`), or None.

    Raises
    ------
    ValueError
        A conf is set to something it cannot mean.
    """
    raw, delay = _conf(spark, FAIL_CONF), _conf(spark, DELAY_CONF)
    if not raw and not delay:
        return None
    fail_at = None
    if raw:
        try:
            part, batch = (int(p) for p in str(raw).split(":"))
        except ValueError:
            raise ValueError(f"{FAIL_CONF}: got {raw!r}, expected PARTITION:BATCH, e.g. "
                             "1:2") from None
        fail_at = (part, batch)
    try:
        seconds = float(delay) if delay else 0.0
    except ValueError:
        raise ValueError(f"{DELAY_CONF}: got {delay!r}, expected seconds, e.g. 0.5") from None
    return BatchFault(fail_at, seconds)
