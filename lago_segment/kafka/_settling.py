"""What the consumer's forwarder sees: a spec and a client that settle Kafka messages.

The consumer hands each message to a :class:`~lago_segment.Forwarder`. Under
it, :class:`Recorder` wraps the spec (every Lago event it returns joins the
current message's ticket) and :class:`SettlingClient` wraps the client (every
event, once stored, already stored, or rejected for good, settles its ticket;
a Lago outage is retried without end; rejected events are dead-lettered).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from lago_segment.client._results import BatchResult, DeliveryFailure
from lago_segment.errors import LagoConnectionError

if TYPE_CHECKING:
    from lago_segment.events import SegmentEvent
    from lago_segment.forwarder import Mapper
    from lago_segment.lago import LagoEvent

    from ._consumer import SegmentConsumer

logger = logging.getLogger("lago_segment")


class BatchSender(Protocol):
    """What the consumer delivers through: a ``LagoClient``, a ``RawEventsSink``, ..."""

    def send_batch(self, events: Iterable[LagoEvent], /) -> BatchResult: ...


class Recorder:
    """The spec, seen by the forwarder: every Lago event it returns joins the current ticket."""

    def __init__(self, spec: Mapper, consumer: SegmentConsumer) -> None:
        self._spec = spec
        self._consumer = consumer

    def map(self, event: SegmentEvent | Mapping[str, Any], /) -> list[LagoEvent]:
        """The spec's Lago events for ``event``, adopted by the message being handed on."""
        events = list(self._spec.map(event))
        self._consumer._adopt(events)
        return events


class SettlingClient:
    """The client under the forwarder: settles tickets, retries outages, dead-letters rejects."""

    def __init__(self, client: BatchSender, consumer: SegmentConsumer) -> None:
        self._client = client
        self._consumer = consumer

    def send_batch(self, events: Iterable[LagoEvent], /) -> BatchResult:
        """Send ``events`` until each is settled (or the consumer is giving up)."""
        consumer = self._consumer
        todo = list(events)
        delivered: list[LagoEvent] = []
        duplicates: list[LagoEvent] = []
        failed: list[DeliveryFailure] = []
        retries = 0
        wait = consumer.retry_wait
        while True:
            if consumer._giving_up.is_set():
                # Shutting down past its deadline: not sent, so not settled, not
                # committed; the partition's next reader sends them.
                error = LagoConnectionError("the consumer stopped before this was sent")
                failed.extend(DeliveryFailure(e, error, permanent=False) for e in todo)
                break
            try:
                result = self._client.send_batch(todo)
            except Exception as exc:  # a broken client: the same as an outage
                logger.exception("lago_segment: the client raised from send_batch")
                result = BatchResult(
                    failed=tuple(
                        DeliveryFailure(e, _as_transport(exc), permanent=False) for e in todo
                    )
                )
            retries += result.retries
            delivered.extend(result.delivered)
            duplicates.extend(result.duplicates)
            consumer._delivered(result.delivered, result.duplicates)
            transient: list[DeliveryFailure] = []
            for failure in result.failed:
                if failure.permanent:
                    failed.append(failure)
                    consumer._rejected(failure)
                else:
                    transient.append(failure)
            if not transient:
                break
            if consumer._giving_up.is_set():
                # Shutting down: these stay unsettled, so uncommitted, and are read again.
                failed.extend(transient)
                break
            consumer._count(outage_retries=1)
            logger.warning(
                "lago_segment: %d Lago event(s) not delivered (%s); retrying in %.1f s",
                len(transient),
                transient[0].error,
                wait,
            )
            consumer._giving_up.wait(wait)
            wait = min(wait * 2, consumer.retry_wait_max)
            todo = [f.event for f in transient]
        return BatchResult(tuple(delivered), tuple(duplicates), tuple(failed), retries)


def _as_transport(exc: Exception) -> LagoConnectionError:
    return LagoConnectionError(f"the client raised {type(exc).__name__}: {exc}")
