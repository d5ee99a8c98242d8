"""The dead-letter topic: where malformed messages and events Lago rejects go, with the reason.

:class:`DeadLetters` produces them with the reason headers; a letter's
delivery report settles its message's ticket, so the message's offset is
committed only once the letter is safe. :func:`producer_settings` picks the
settings of a consumer's configuration that a producer understands.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lago_segment.errors import LagoSegmentError

from ._offsets import OffsetTracker, Ticket

if TYPE_CHECKING:
    from lago_segment.client._results import DeliveryFailure

logger = logging.getLogger("lago_segment")

#: Header names on dead-lettered messages.
REASON_HEADER = "lago-segment-reason"
ERROR_HEADER = "lago-segment-error"
PAYLOAD_HEADER = "lago-segment-payload"
SOURCE_HEADERS = ("lago-segment-topic", "lago-segment-partition", "lago-segment-offset")


class DeadLetters:
    """One consumer's dead-letter producer; ``fatal`` is set once the topic refused a letter."""

    def __init__(
        self, kafka: Any, config: Mapping[str, Any], topic: str, tracker: OffsetTracker
    ) -> None:
        settings = dict(config)
        settings.setdefault("enable.idempotence", True)
        self._producer = kafka.Producer(settings)
        self.topic = topic
        self._tracker = tracker
        #: Set when a letter was refused: its message can never settle in this process.
        self.fatal: BaseException | None = None

    def segment_message(self, ticket: Ticket, message: Any, reason: str, problem: str) -> None:
        """Dead-letter a Kafka message as read (its value and key), for ``reason``."""
        self._produce(
            ticket,
            message.value() or b"",
            message.key(),
            {REASON_HEADER: reason, ERROR_HEADER: problem[:1000], PAYLOAD_HEADER: "segment"},
            hold=True,
        )

    def lago_event(self, ticket: Ticket, failure: DeliveryFailure) -> None:
        """Dead-letter a Lago event Lago refused for good; it settles once the topic has it."""
        self._produce(
            ticket,
            json.dumps(failure.event.to_dict(), default=str).encode(),
            None,
            {
                REASON_HEADER: "lago_rejected",
                ERROR_HEADER: str(failure.error),
                PAYLOAD_HEADER: "lago-event",
            },
            hold=False,
        )

    def poll(self) -> None:
        """Serve the delivery reports that are in."""
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait (at most ``timeout`` s) for every letter's report; returns how many are left."""
        left: int = self._producer.flush(timeout)
        return left

    def _produce(
        self,
        ticket: Ticket,
        value: bytes,
        key: bytes | None,
        headers: dict[str, str],
        *,
        hold: bool,
    ) -> None:
        part = ticket.partition.key
        headers = {
            **headers,
            SOURCE_HEADERS[0]: part[0],
            SOURCE_HEADERS[1]: str(part[1]),
            SOURCE_HEADERS[2]: str(ticket.offset),
        }
        if hold:
            self._tracker.add(ticket)  # else the Lago event's own part settles with the letter

        def on_delivery(error: Any, _message: Any) -> None:
            if error is None:
                self._tracker.settle(ticket)
                return
            # Unsettled for good in this process: stop rather than never commit again.
            logger.error("lago_segment: the dead-letter topic refused a message: %s", error)
            self.fatal = LagoSegmentError(f"dead-letter topic {self.topic}: {error}")

        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value,
                    key,
                    headers=list(headers.items()),
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                self._producer.poll(0.1)


def producer_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` a producer understands (consumer-only ones dropped)."""
    consumer_only = (
        "group.",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "auto.offset.reset",
        "enable.auto.",
        "auto.commit.",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "fetch.",
        "isolation.level",
        "queued.",
        "check.crcs",
        "allow.auto.create.topics",
    )
    return {k: v for k, v in config.items() if not k.startswith(consumer_only)}
