"""Driver side: how a model's payload reaches the workers, and for how long.

On classic Spark the payload is broadcast once per model and SparkContext; under Spark
Connect (no SparkContext on the client) it travels in the scoring function's closure.
Either way it comes with a token, a fresh identifier of this payload that keys the
workers' network cache (:mod:`sparkae.scoring.worker`), so a new payload for the same
model is never served a stale network.

The registry is bounded: at most :data:`DRIVER_MODELS` payloads, least recently used
first out. A broadcast leaves with :meth:`unpersist` (executors drop their copies) when
its entry is evicted or a newer payload for the same model replaces it; a DataFrame
built before that still runs, Spark re-sends an unpersisted broadcast on use. Entries
are keyed by the SparkContext's application id and start time, never by ``id(sc)``: a
new SparkContext after a restart can get the id of a stopped one, but not its
application id and start time; entries of a stopped context are dropped (its broadcasts
went with it).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Tuple

log = logging.getLogger("sparkae")

#: Payloads the driver keeps broadcast at once.
DRIVER_MODELS = 8

Context = Optional[Tuple[str, int]]


@dataclass(frozen=True)
class PayloadSource:
    """A payload as the workers reach it: a broadcast, or the bytes themselves (Spark
    Connect), with the ``token`` that identifies this payload in the workers' caches."""

    token: str
    broadcast: Any = None
    payload: Optional[bytes] = None

    def get(self) -> bytes:
        """The payload bytes (in a worker: the broadcast's value)."""
        return self.broadcast.value if self.broadcast is not None else self.payload


@dataclass(frozen=True)
class _Entry:
    payload: bytes
    source: PayloadSource


_LOCK = threading.Lock()
# (context, model key) -> entry, least recently used first.
_ENTRIES: "OrderedDict[Tuple[Context, str], _Entry]" = OrderedDict()


def _context(spark: Any) -> Tuple[Any, Context]:
    """The session's SparkContext and its identity, or ``(None, None)`` under Connect."""
    try:
        sc = spark.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return None, None
    return sc, (str(sc.applicationId), int(sc.startTime))


def _release(entry: _Entry) -> None:
    """Drop the executors' copies of ``entry``'s broadcast (non-blocking)."""
    bc = entry.source.broadcast
    if bc is None:
        return
    try:
        bc.unpersist(blocking=False)
    except Exception as exc:  # noqa: BLE001 - its context may be gone: nothing to free
        log.debug("could not unpersist the broadcast of a scoring model: %s", exc)


def payload_source(spark: Any, key: str, payload: bytes) -> PayloadSource:
    """The :class:`PayloadSource` of ``payload`` for model ``key`` in ``spark``'s context.

    Parameters
    ----------
    spark : SparkSession
        Classic (the payload is broadcast) or Spark Connect (it goes in the closure).
    key : str
        Identifies the model; one payload per model and context is kept.
    payload : bytes
        The model, as :func:`sparkae.scoring.payload.pack` bytes.

    Returns
    -------
    PayloadSource
        The same one for the same model and payload while it stays in the registry.
    """
    sc, context = _context(spark)
    with _LOCK:
        if context is not None:     # one SparkContext at a time: others are stopped
            for k in [k for k in _ENTRIES if k[0] is not None and k[0] != context]:
                del _ENTRIES[k]
        entry = _ENTRIES.get((context, key))
        if entry is not None and (entry.payload is payload or entry.payload == payload):
            _ENTRIES.move_to_end((context, key))
            return entry.source
        if entry is not None:       # a newer payload for the same model replaces it
            del _ENTRIES[(context, key)]
            _release(entry)
        token = uuid.uuid4().hex
        source = (PayloadSource(token, payload=payload) if sc is None
                  else PayloadSource(token, broadcast=sc.broadcast(payload)))
        _ENTRIES[(context, key)] = _Entry(payload, source)
        while len(_ENTRIES) > DRIVER_MODELS:
            _release(_ENTRIES.popitem(last=False)[1])
    return source


def clear() -> None:
    """Forget every payload, unpersisting their broadcasts."""
    with _LOCK:
        entries = list(_ENTRIES.values())
        _ENTRIES.clear()
    for entry in entries:
        _release(entry)
