"""A consumer-group member: Segment events from Kafka topics, delivered to Lago.

The poll loop (one thread) reads messages, checks them, and hands each to a
:class:`~lago_segment.Forwarder`, which maps it with the spec and sends the
Lago events in batches through the client (retries, poison isolation). The
forwarder's client is wrapped so that every Lago event, once settled (stored,
already stored, or dead-lettered), settles its message in an
:class:`~lago_segment.kafka.OffsetTracker`; offsets are committed from there
only, so a commit never passes a message whose events are still in flight.
A Lago outage is retried without end (the backlog pauses the partitions
instead of growing); nothing unsettled is ever committed.

This module holds the loop and the handling of each message; the wrappers
under the forwarder are in ``_settling``, the dead-letter producer in
``_dead_letters``, commits and rebalances in ``_partitions``, the counters in
``_stats``.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lago_segment._reporting import message_id_of
from lago_segment.errors import (
    ConfigurationError,
    InvalidEventPayload,
    InvalidLagoEvent,
    LagoSegmentError,
    MappingError,
    QueueFullError,
)
from lago_segment.forwarder._records import FailureCallback, ForwardingFailure, log_error

from ._dead_letters import DeadLetters, producer_settings
from ._offsets import OffsetTracker, Ticket
from ._partitions import OwnedPartitions
from ._settling import BatchSender, Recorder, SettlingClient
from ._sink import import_kafka
from ._stats import ConsumerStats, Counters

if TYPE_CHECKING:
    from lago_segment.client._results import DeliveryFailure
    from lago_segment.forwarder import Mapper
    from lago_segment.lago import LagoEvent

__all__ = ["ConsumerStats", "SegmentConsumer"]

logger = logging.getLogger("lago_segment")

# _forward()'s answer for a message it could not hand on before shutdown.
_KEEP = "keep"


class SegmentConsumer:
    """Read Segment events from Kafka topics as a consumer-group member; deliver them to Lago.

    Each message's value is one Segment event (or a ``{"batch": [...]}``
    payload) as JSON, as Segment's and RudderStack's Kafka destinations
    write them. It is mapped with ``spec`` and delivered through ``client``:
    a :class:`~lago_segment.client.LagoClient`, or a
    :class:`~lago_segment.kafka.RawEventsSink` to produce to Lago's
    raw-events topic instead.

    Offsets are committed only for messages whose events are all settled:
    stored, already stored, dead-lettered, or skipped (no rule matched). A
    crash re-delivers at most the unsettled tail, and Lago's idempotency on
    transaction_id makes that harmless. A Lago outage is retried without end
    (``retry_wait`` doubling up to ``retry_wait_max``) while consumption
    pauses once ``max_unsettled`` messages wait. Malformed messages (not
    JSON, not a Segment event, over ``max_message_bytes``, or failing the
    mapping) and events Lago rejects for good go to ``dead_letter_topic``
    with the reason in headers.

    ``config`` holds librdkafka settings for both the consumer and the
    dead-letter producer (``bootstrap.servers``, ``security.protocol``,
    ``sasl.*``, ...). A group with no committed offset starts from the
    earliest message (``auto.offset.reset=earliest``) unless ``config`` says
    otherwise. Auto-commit is always off: the consumer commits itself.

    >>> consumer = SegmentConsumer(  # doctest: +SKIP
    ...     LagoClient(api_key), spec=spec, topics=["segment"], group="lago",
    ...     config={"bootstrap.servers": "kafka:9092"},
    ... )
    >>> consumer.run()  # until consumer.stop(), e.g. from a SIGTERM handler  # doctest: +SKIP
    """

    def __init__(
        self,
        client: BatchSender,
        *,
        spec: Mapper,
        topics: Sequence[str],
        group: str,
        config: Mapping[str, Any],
        dead_letter_topic: str = "lago-segment-dead-letter",
        dead_letter_config: Mapping[str, Any] | None = None,
        on_error: FailureCallback | None = None,
        batch_size: int = 100,
        flush_interval: float = 0.2,
        max_in_flight: int | None = None,
        max_unsettled: int = 5_000,
        max_message_bytes: int = 1_000_000,
        commit_interval: float = 1.0,
        retry_wait: float = 1.0,
        retry_wait_max: float = 30.0,
        revoke_timeout: float = 10.0,
        shutdown_timeout: float = 30.0,
    ) -> None:
        kafka = import_kafka()
        if isinstance(topics, str) or not topics:
            raise ConfigurationError("topics", "must be a non-empty list of topic names")
        if not group:
            raise ConfigurationError("group", "must be a non-empty consumer group id")
        if "bootstrap.servers" not in config:
            raise ConfigurationError("config", "must set bootstrap.servers")
        for name, number in (
            ("max_unsettled", max_unsettled),
            ("max_message_bytes", max_message_bytes),
            ("commit_interval", commit_interval),
            ("retry_wait", retry_wait),
            ("retry_wait_max", retry_wait_max),
        ):
            if number <= 0:
                raise ConfigurationError(name, f"must be positive, not {number}")
        from lago_segment.forwarder import Forwarder

        self._kafka = kafka
        self._topics = list(topics)
        self._on_error = on_error or log_error
        self._max_bytes = max_message_bytes
        self._commit_interval = commit_interval
        self.retry_wait = retry_wait
        self.retry_wait_max = retry_wait_max
        self._shutdown_timeout = shutdown_timeout
        self._tracker = OffsetTracker()
        self._tickets: dict[int, Ticket] = {}
        self._tickets_lock = threading.Lock()
        self._current: Ticket | None = None
        self._adopted: list[LagoEvent] = []
        self._stop = threading.Event()
        self._giving_up = threading.Event()
        self._counters = Counters()
        self._count = self._counters.add

        consumer_config = {
            "auto.offset.reset": "earliest",
            **dict(config),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        self._consumer = kafka.Consumer(consumer_config)
        self._owned = OwnedPartitions(
            kafka,
            self._consumer,
            self._tracker,
            max_unsettled=max_unsettled,
            revoke_timeout=revoke_timeout,
            settle_all=self._settle_all,
            count=self._count,
        )
        self._dead_letters = DeadLetters(
            kafka,
            dead_letter_config or producer_settings(config),
            dead_letter_topic,
            self._tracker,
        )

        options: dict[str, Any] = {}
        if (
            max_in_flight is not None
            and "max_in_flight" in inspect.signature(Forwarder).parameters
        ):
            options["max_in_flight"] = max_in_flight
        self._forwarder = Forwarder(
            SettlingClient(client, self),
            spec=Recorder(spec, self),
            on_error=self._forwarding_error,
            batch_size=batch_size,
            flush_interval=flush_interval,
            # The backlog pauses consumption long before this bound is reached.
            max_queue_size=max(10 * max_unsettled, 100_000),
            on_full="block",
            block_timeout=1.0,
            flush_at_exit=False,
            **options,
        )

    # -- what callers see -----------------------------------------------------------------

    @property
    def stats(self) -> ConsumerStats:
        """A snapshot of the counters (see :class:`ConsumerStats`)."""
        return ConsumerStats(
            **self._counters.snapshot(),
            unsettled=self._tracker.unsettled(),
            paused=self._owned.paused,
            partitions=tuple(sorted(self._owned.keys)),
        )

    def stop(self) -> None:
        """Ask :meth:`run` to settle, commit and return (safe from a signal handler)."""
        self._stop.set()

    def run(
        self,
        *,
        status: Callable[[ConsumerStats], None] | None = None,
        status_interval: float = 10.0,
    ) -> ConsumerStats:
        """Consume until :meth:`stop`; then settle, commit and close. Returns the final stats.

        ``status`` is called every ``status_interval`` seconds with the stats.
        Raises :class:`~lago_segment.LagoSegmentError` (after committing what
        is settled) when a dead-letter message cannot be written: consuming on
        would block every later commit of its partition.
        """
        consumer, owned, dead_letters = self._consumer, self._owned, self._dead_letters
        consumer.subscribe(
            self._topics,
            on_assign=owned.on_assign,
            on_revoke=owned.on_revoke,
            on_lost=owned.on_lost,
        )
        next_commit = next_status = time.monotonic()
        try:
            while not self._stop.is_set() and dead_letters.fatal is None:
                dead_letters.poll()
                owned.backpressure()
                for message in consumer.consume(num_messages=500, timeout=0.1):
                    self._handle(message)
                now = time.monotonic()
                if now >= next_commit:
                    owned.commit()
                    next_commit = now + self._commit_interval
                if status is not None and now >= next_status:
                    status(self.stats)
                    next_status = now + status_interval
        finally:
            self._shutdown()
        if status is not None:
            status(self.stats)
        fatal = dead_letters.fatal
        if fatal is not None:
            raise LagoSegmentError(f"the consumer stopped: {fatal}") from fatal
        return self.stats

    # -- each message -----------------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise self._kafka.KafkaException(error)
            logger.warning("lago_segment: Kafka consumer error: %s", error)
            return
        if (message.topic(), message.partition()) not in self._owned.keys:
            # Fetched before its partition was revoked: its next owner reads it. Tracking
            # it would commit an offset for a partition another member now owns.
            return
        ticket = self._tracker.track(message.topic(), message.partition(), message.offset())
        self._count(consumed=1)
        value = message.value()
        payload: Any = None
        reason, problem = None, ""
        if value is None or len(value) > self._max_bytes:
            size = 0 if value is None else len(value)
            reason = "too_large" if value is not None else "empty"
            problem = (
                f"message is {size} bytes, over the {self._max_bytes}-byte limit"
                if value is not None
                else "message has no value"
            )
        else:
            try:
                payload = json.loads(value)
            except (ValueError, UnicodeDecodeError) as exc:
                reason, problem = "not_json", f"not JSON: {exc}"
            else:
                if not isinstance(payload, dict):
                    reason = "not_segment_event"
                    problem = f"not a Segment event: a JSON {type(payload).__name__}"
        if reason is None:
            reason, problem = self._forward(ticket, payload)
            if reason == _KEEP:
                return  # never settled here: not committed, read again after a restart
        if reason is not None:
            self._dead_letter(ticket, message, reason, problem, payload)
        self._tracker.settle(ticket)  # the consumer's own hold

    def _forward(self, ticket: Ticket, payload: dict[str, Any]) -> tuple[str | None, str]:
        """Hand a parsed message to the forwarder; a dead-letter reason when it was refused."""
        while True:
            self._current, self._adopted = ticket, []
            try:
                self._forwarder.forward(payload)
            except InvalidEventPayload as exc:
                self._disown()  # e.g. a batch payload whose later event was invalid
                return "not_segment_event", f"not a Segment event: {exc}"
            except (MappingError, InvalidLagoEvent) as exc:
                self._disown()
                return "mapping_failed", f"mapping failed: {exc}"
            except QueueFullError:
                self._disown()  # not queued after all: map again once there is room
                if self._stop.is_set():
                    return _KEEP, ""
                continue
            finally:
                self._current = None
            if self._adopted:
                self._count(mapped=1)
            else:
                self._count(skipped=1)
            return None, ""

    def _adopt(self, events: list[LagoEvent]) -> None:
        """The recorder saw ``events`` come out of the spec for the current message."""
        ticket = self._current
        if ticket is None or not events:
            return
        self._tracker.add(ticket, len(events))
        with self._tickets_lock:
            for event in events:
                self._tickets[id(event)] = ticket
        self._adopted.extend(events)

    def _disown(self) -> None:
        ticket = self._current
        if ticket is None:
            return
        with self._tickets_lock:
            for event in self._adopted:
                self._tickets.pop(id(event), None)
        self._tracker.settle(ticket, len(self._adopted))  # the hold remains
        self._adopted = []

    def _settle(self, event: LagoEvent) -> None:
        with self._tickets_lock:
            ticket = self._tickets.pop(id(event), None)
        if ticket is not None:
            self._tracker.settle(ticket)

    def _delivered(self, delivered: Sequence[LagoEvent], duplicates: Sequence[LagoEvent]) -> None:
        self._count(delivered=len(delivered) + len(duplicates), duplicates=len(duplicates))
        for event in (*delivered, *duplicates):
            self._settle(event)

    def _rejected(self, failure: DeliveryFailure) -> None:
        """Lago refused an event for good: dead-letter it; it settles once the DLQ has it."""
        self._count(rejected=1)
        with self._tickets_lock:
            ticket = self._tickets.pop(id(failure.event), None)
        if ticket is not None:
            self._dead_letters.lago_event(ticket, failure)

    def _dead_letter(
        self, ticket: Ticket, message: Any, reason: str, problem: str, payload: Any
    ) -> None:
        self._count(dead_lettered=1)
        self._on_error(
            ForwardingFailure(
                InvalidEventPayload(problem, "$")
                if reason != "mapping_failed"
                else MappingError(problem),
                "mapping",
                message_id_of(payload),
                None,
                payload if isinstance(payload, dict) else None,
            )
        )
        self._dead_letters.segment_message(ticket, message, reason, problem)

    def _forwarding_error(self, failure: ForwardingFailure) -> None:
        if self._giving_up.is_set() and failure.stage == "delivery":
            # Not delivered before shutdown, so not committed: read again on restart.
            failure = attrs.evolve(failure, permanent=False)
        self._on_error(failure)

    # -- settling and shutting down ---------------------------------------------------------

    def _settle_all(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until everything handed on so far is settled."""
        deadline = time.monotonic() + timeout
        done = self._forwarder.flush(timeout)
        left = max(0.0, deadline - time.monotonic())
        return self._dead_letters.flush(left) == 0 and done

    def _shutdown(self) -> None:
        try:
            if not self._settle_all(self._shutdown_timeout):
                self._giving_up.set()
            self._owned.final_commit()
        finally:
            self._giving_up.set()
            try:
                self._consumer.close()  # revokes the partitions: commits what is settled
            finally:
                self._forwarder.close(timeout=5.0)
                self._dead_letters.flush(5.0)
