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
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from lago_segment.client._results import BatchResult, DeliveryFailure
from lago_segment.errors import (
    ConfigurationError,
    InvalidEventPayload,
    InvalidLagoEvent,
    LagoConnectionError,
    LagoSegmentError,
    MappingError,
    QueueFullError,
)
from lago_segment.forwarder._records import ErrorCallback, ForwardingFailure, log_error

from ._offsets import OffsetTracker, PartitionKey, Ticket
from ._sink import import_kafka

if TYPE_CHECKING:
    from lago_segment.events import SegmentEvent
    from lago_segment.forwarder import Mapper
    from lago_segment.lago import LagoEvent

__all__ = ["ConsumerStats", "SegmentConsumer"]

logger = logging.getLogger("lago_segment")

#: Header names on dead-lettered messages.
REASON_HEADER = "lago-segment-reason"
ERROR_HEADER = "lago-segment-error"
PAYLOAD_HEADER = "lago-segment-payload"
# _forward()'s answer for a message it could not hand on before shutdown.
_KEEP = "keep"
SOURCE_HEADERS = ("lago-segment-topic", "lago-segment-partition", "lago-segment-offset")


class _Client(Protocol):
    def send_batch(self, events: Iterable[LagoEvent], /) -> BatchResult: ...


@attrs.frozen(slots=True)
class ConsumerStats:
    """A snapshot of a :class:`SegmentConsumer`'s counters.

    Messages: ``consumed`` = read from Kafka; each ends ``mapped`` (became Lago
    events), ``skipped`` (no rule matched) or ``dead_lettered`` (malformed:
    not JSON, not a Segment event, too large, or not mappable). Lago events:
    ``delivered`` (duplicates included; ``duplicates`` is that subset) or
    ``rejected`` (refused by Lago for good, dead-lettered). ``unsettled``
    counts messages read whose fate is not known yet; ``committed`` the
    offset commits made; ``outage_retries`` the batches sent again after Lago
    was unreachable; ``paused`` is True while the backlog holds consumption.
    """

    consumed: int = 0
    mapped: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    unsettled: int = 0
    committed: int = 0
    outage_retries: int = 0
    paused: bool = False
    partitions: tuple[PartitionKey, ...] = ()

    def line(self) -> str:
        """The one-line status the ``consume`` command prints."""
        parts = ", ".join(f"{t}[{p}]" for t, p in self.partitions) or "none"
        return (
            f"consumed {self.consumed} messages: {self.mapped} mapped, {self.skipped} skipped, "
            f"{self.dead_lettered} dead-lettered; Lago events: {self.delivered} stored "
            f"({self.duplicates} duplicates), {self.rejected} rejected; "
            f"{self.unsettled} unsettled; {self.committed} commits; "
            f"{self.outage_retries} outage retries{'; PAUSED' if self.paused else ''}; "
            f"partitions: {parts}"
        )


class _Recorder:
    """The spec, seen by the forwarder: every Lago event it returns joins the current ticket."""

    def __init__(self, spec: Mapper, consumer: SegmentConsumer) -> None:
        self._spec = spec
        self._consumer = consumer

    def map(self, event: SegmentEvent | Mapping[str, Any], /) -> list[LagoEvent]:
        events = list(self._spec.map(event))
        self._consumer._adopt(events)
        return events


class _SettlingClient:
    """The client under the forwarder: settles tickets, retries outages, dead-letters rejects."""

    def __init__(self, client: _Client, consumer: SegmentConsumer) -> None:
        self._client = client
        self._consumer = consumer

    def send_batch(self, events: Iterable[LagoEvent], /) -> BatchResult:
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
        client: _Client,
        *,
        spec: Mapper,
        topics: Sequence[str],
        group: str,
        config: Mapping[str, Any],
        dead_letter_topic: str = "lago-segment-dead-letter",
        dead_letter_config: Mapping[str, Any] | None = None,
        on_error: ErrorCallback | None = None,
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
        self._max_unsettled = max_unsettled
        self._max_bytes = max_message_bytes
        self._commit_interval = commit_interval
        self.retry_wait = retry_wait
        self.retry_wait_max = retry_wait_max
        self._revoke_timeout = revoke_timeout
        self._shutdown_timeout = shutdown_timeout
        self._tracker = OffsetTracker()
        self._tickets: dict[int, Ticket] = {}
        self._tickets_lock = threading.Lock()
        self._current: Ticket | None = None
        self._adopted: list[LagoEvent] = []
        self._stop = threading.Event()
        self._giving_up = threading.Event()
        self._fatal: BaseException | None = None
        self._counts = dict.fromkeys(
            (
                "consumed",
                "mapped",
                "skipped",
                "dead_lettered",
                "delivered",
                "duplicates",
                "rejected",
                "committed",
                "outage_retries",
            ),
            0,
        )
        self._count_lock = threading.Lock()
        self._paused = False
        self._repause = False
        # Rebound, never mutated: stats() reads it from other threads.
        self._assignment: frozenset[PartitionKey] = frozenset()

        consumer_config = {
            "auto.offset.reset": "earliest",
            **dict(config),
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        self._consumer = kafka.Consumer(consumer_config)
        producer_config = dict(dead_letter_config or _common(config))
        producer_config.setdefault("enable.idempotence", True)
        self._dead_letters = kafka.Producer(producer_config)
        self._dead_letter_topic = dead_letter_topic

        options: dict[str, Any] = {}
        if (
            max_in_flight is not None
            and "max_in_flight" in inspect.signature(Forwarder).parameters
        ):
            options["max_in_flight"] = max_in_flight
        self._forwarder = Forwarder(
            _SettlingClient(client, self),
            spec=_Recorder(spec, self),
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
        with self._count_lock:
            counts = dict(self._counts)
        return ConsumerStats(
            **counts,
            unsettled=self._tracker.unsettled(),
            paused=self._paused,
            partitions=tuple(sorted(self._assignment)),
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
        consumer = self._consumer
        consumer.subscribe(
            self._topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        next_commit = next_status = time.monotonic()
        try:
            while not self._stop.is_set() and self._fatal is None:
                self._dead_letters.poll(0)
                self._backpressure()
                for message in consumer.consume(num_messages=500, timeout=0.1):
                    self._handle(message)
                now = time.monotonic()
                if now >= next_commit:
                    self._commit()
                    next_commit = now + self._commit_interval
                if status is not None and now >= next_status:
                    status(self.stats)
                    next_status = now + status_interval
        finally:
            self._shutdown()
        if status is not None:
            status(self.stats)
        if self._fatal is not None:
            raise LagoSegmentError(f"the consumer stopped: {self._fatal}") from self._fatal
        return self.stats

    # -- the poll loop ----------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._count_lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def _backpressure(self) -> None:
        waiting = self._tracker.unsettled()
        if self._repause:
            # librdkafka keeps a partition's pause across a rebalance: once the new
            # assignment is in effect, make every partition match our state.
            self._repause = False
            if self._paused:
                self._consumer.pause(self._partitions())
            else:
                self._consumer.resume(self._partitions())
        if not self._paused and waiting >= self._max_unsettled:
            self._paused = True
            self._consumer.pause(self._partitions())
            logger.info("lago_segment: %d messages unsettled; consumption paused", waiting)
        elif self._paused and waiting <= self._max_unsettled // 2:
            self._paused = False
            # Resume exactly after the last message read: nothing skipped, whatever
            # the client had prefetched before the pause.
            following = self._tracker.next_offsets()
            for tp in self._partitions():
                offset = following.get((tp.topic, tp.partition))
                if offset is not None:
                    tp.offset = offset
                    self._consumer.seek(tp)
            self._consumer.resume(self._partitions())
            logger.info("lago_segment: consumption resumed")

    def _partitions(self) -> list[Any]:
        return [self._kafka.TopicPartition(t, p) for t, p in sorted(self._assignment)]

    def _handle(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise self._kafka.KafkaException(error)
            logger.warning("lago_segment: Kafka consumer error: %s", error)
            return
        if (message.topic(), message.partition()) not in self._assignment:
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
        event = failure.event
        with self._tickets_lock:
            ticket = self._tickets.pop(id(event), None)
        if ticket is None:
            return
        self._produce_dead_letter(
            ticket,
            json.dumps(event.to_dict(), default=str).encode(),
            None,
            {
                REASON_HEADER: "lago_rejected",
                ERROR_HEADER: str(failure.error),
                PAYLOAD_HEADER: "lago-event",
            },
            hold=False,
        )

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
                payload.get("messageId") if isinstance(payload, dict) else None,
                None,
                payload if isinstance(payload, dict) else None,
            )
        )
        self._produce_dead_letter(
            ticket,
            message.value() or b"",
            message.key(),
            {REASON_HEADER: reason, ERROR_HEADER: problem[:1000], PAYLOAD_HEADER: "segment"},
            hold=True,
        )

    def _produce_dead_letter(
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
            self._fatal = LagoSegmentError(f"dead-letter topic {self._dead_letter_topic}: {error}")

        while True:
            try:
                self._dead_letters.produce(
                    self._dead_letter_topic,
                    value,
                    key,
                    headers=list(headers.items()),
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                self._dead_letters.poll(0.1)

    def _forwarding_error(self, failure: ForwardingFailure) -> None:
        if self._giving_up.is_set() and failure.stage == "delivery":
            # Not delivered before shutdown, so not committed: read again on restart.
            failure = attrs.evolve(failure, permanent=False)
        self._on_error(failure)

    # -- commits and rebalances -------------------------------------------------------------

    def _commit(self, partitions: set[PartitionKey] | None = None) -> bool:
        """Commit the settled positions of owned partitions; False if Kafka refused."""
        owned = set(self._assignment) if partitions is None else partitions & self._assignment
        positions = self._tracker.positions(owned)
        if not positions:
            return True
        offsets = [self._kafka.TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except self._kafka.KafkaException as exc:
            # Typically a rebalance in progress: the positions stay and are tried again.
            logger.warning("lago_segment: offset commit failed: %s", exc)
            return False
        self._tracker.committed(positions)
        self._count(committed=1)
        return True

    def _final_commit(self, attempts: int = 10) -> None:
        """Commit what is settled, retrying while the group rebalances (a peer leaving)."""
        for _ in range(attempts):
            if self._commit():
                return
            # Serves the rebalance; a message it returns is not tracked, so not committed.
            self._consumer.poll(0.5)

    def _settle_all(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until everything handed on so far is settled."""
        deadline = time.monotonic() + timeout
        done = self._forwarder.flush(timeout)
        left = max(0.0, deadline - time.monotonic())
        return self._dead_letters.flush(left) == 0 and done

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._assignment = self._assignment | {(tp.topic, tp.partition) for tp in partitions}
        self._repause = True

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        if self._tracker.unsettled_in(keys):
            self._commit(keys)  # what is settled already, before the group moves on
            self._settle_all(self._revoke_timeout)
        self._commit(keys)
        abandoned = self._tracker.release(keys)
        if abandoned:
            logger.warning(
                "lago_segment: %d unsettled messages given up with partitions %s; "
                "their next owner reads them again",
                abandoned,
                sorted(keys),
            )
        self._assignment = self._assignment - keys

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._tracker.release(keys)
        self._assignment = self._assignment - keys

    def _shutdown(self) -> None:
        try:
            if not self._settle_all(self._shutdown_timeout):
                self._giving_up.set()
            self._final_commit()
        finally:
            self._giving_up.set()
            try:
                self._consumer.close()  # revokes the partitions: commits what is settled
            finally:
                self._forwarder.close(timeout=5.0)
                self._dead_letters.flush(5.0)


def _common(config: Mapping[str, Any]) -> dict[str, Any]:
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
