"""What a forwarder reports: failed events (:class:`ForwardingFailure`) and counters
(:class:`ForwarderStats`), and the :class:`Bookkeeping` that keeps both."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from lago_segment import _metrics
from lago_segment._reporting import log_fields
from lago_segment.lago import LagoEvent

if TYPE_CHECKING:
    from lago_segment.events import SegmentEvent
    from lago_segment.forwarder._stores import Store

logger = logging.getLogger("lago_segment")

Stage = Literal["mapping", "handler", "queue", "delivery"]


@attrs.frozen(slots=True)
class ForwardingFailure:
    """One event the forwarder could not deliver, handed to the ``on_error`` callback.

    It carries everything needed to store the event in a dead-letter table and
    replay it later: the exception, where it happened (:attr:`stage`), the Segment
    ``messageId``, the Lago event (when mapping got that far) and the Segment
    event (when it is still in memory)::

        def to_dead_letter(failure: ForwardingFailure) -> None:
            if failure.lago_event is not None:
                db.insert(failure.message_id, failure.lago_event.to_dict(), str(failure.error))

        Forwarder(client, spec=spec, on_error=to_dead_letter)
    """

    error: BaseException
    """What went wrong: a :class:`~lago_segment.MappingError`, a handler's error, a
    :class:`~lago_segment.QueueFullError`, or Lago's / the transport's error."""
    stage: Stage
    """``"mapping"`` (the spec), ``"handler"`` (a Functions-style handler), ``"queue"``
    (the queue or spool was full and the event was dropped) or ``"delivery"``."""
    message_id: str | None = None
    """The Segment ``messageId`` of the event, when it has one."""
    lago_event: LagoEvent | None = None
    """The Lago event that was not delivered (None for mapping and handler errors)."""
    segment_event: SegmentEvent | Mapping[str, Any] | None = None
    """The Segment event as given to ``forward()`` (None for events read back from a spool)."""
    permanent: bool = True
    """False when the event is kept and will be tried again (spool mode, transient failure)."""


#: A callback told about every event that could not be delivered (a forwarder's
#: ``on_error``). Named apart from :data:`lago_segment._types.ErrorCallback`, the
#: integrations' ``(exception, event)`` callback.
FailureCallback = Callable[[ForwardingFailure], None]


def log_error(failure: ForwardingFailure) -> None:
    """The default ``on_error``: one warning on the ``lago_segment`` logger.

    Logs the stage, the messageId, the transaction_id and the error's message
    (which never holds an API key); never the event's properties.
    """
    tx = failure.lago_event.transaction_id if failure.lago_event is not None else None
    logger.warning(
        "lago_segment: %s error for messageId=%s transaction_id=%s%s: %s: %s",
        failure.stage,
        failure.message_id,
        tx,
        "" if failure.permanent else " (will retry)",
        type(failure.error).__name__,
        failure.error,
        extra=log_fields(failure.message_id, getattr(failure.error, "rule", None), tx),
    )


@attrs.frozen(slots=True)
class ForwarderStats:
    """A snapshot of a forwarder's counters.

    Segment events: ``received`` = those given to ``forward()``; each is then
    ``skipped`` (no rule and no handler produced anything), ``discarded`` (a
    handler raised :class:`~lago_segment.DropEvent`), ``rejected`` (a mapping or
    handler error) or mapped. Lago events: ``mapped`` = those produced, each
    either ``enqueued`` or ``dropped`` (queue full). Enqueued events end
    ``delivered`` (duplicates included; ``duplicates`` is that subset) or
    ``failed``, and until then count in ``queue_depth`` (in flight included)::

        mapped == enqueued + dropped
        enqueued == delivered + failed + queue_depth

    ``retried`` counts HTTP requests the client retried, plus spooled batches
    sent again after a transient failure.
    """

    received: int = 0
    skipped: int = 0
    discarded: int = 0
    rejected: int = 0
    mapped: int = 0
    enqueued: int = 0
    dropped: int = 0
    delivered: int = 0
    duplicates: int = 0
    failed: int = 0
    retried: int = 0
    queue_depth: int = 0


COUNTERS = tuple(f.name for f in attrs.fields(ForwarderStats) if f.name != "queue_depth")


class Bookkeeping:
    """The counters and the ``on_error`` callbacks every part of a forwarder's state
    writes to (the base of :class:`~lago_segment.forwarder._state.ForwardingState`)."""

    store: Store
    callbacks: tuple[FailureCallback, ...]
    metrics: _metrics.ForwarderMetrics | _metrics._NoMetrics
    _counts: dict[str, int]
    _lock: threading.Lock

    def count(self, **deltas: int) -> None:
        """Add to the counters (thread-safe)."""
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta
        self.metrics.counted(deltas)

    def stats(self) -> ForwarderStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            counts = dict(self._counts)
        return ForwarderStats(**counts, queue_depth=self.store.depth())

    def report(self, failure: ForwardingFailure) -> None:
        """Tell every callback; a callback that raises is logged, never propagated."""
        for callback in self.callbacks:
            try:
                callback(failure)
            except Exception:
                logger.exception("lago_segment: the on_error callback raised")
