"""Produce Lago events to a self-hosted Lago's raw-events topic, as lago-api does.

lago-api's ``Events::KafkaProducerService`` writes each event it accepts to
``LAGO_KAFKA_RAW_EVENTS_TOPIC``; ClickHouse and Lago's events-processor read
it. :func:`raw_event_message` renders that exact message; :class:`RawEventsSink`
produces it, with the ``send_batch`` a forwarder and the consumer call on a
:class:`~lago_segment.client.LagoClient`, so it can stand in for one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lago_segment.client._results import BatchResult, DeliveryFailure
from lago_segment.errors import ConfigurationError, LagoTransportError, LagoValidationError
from lago_segment.lago import LagoEvent, unix_seconds

if TYPE_CHECKING:
    import confluent_kafka

__all__ = ["KafkaDeliveryError", "RawEventsSink", "import_kafka", "raw_event_message"]

#: The ``source`` lago-api writes; the events-processor then skips the post-processing
#: the API already did. Events produced here did not go through the API.
API_SOURCE = "http_ruby"
DEFAULT_SOURCE = "lago-segment"


class KafkaDeliveryError(LagoTransportError):
    """Kafka did not take a message: :attr:`kafka_error` is librdkafka's error name."""

    def __init__(self, message: str, *, kafka_error: str, retriable: bool) -> None:
        self.kafka_error = kafka_error
        self.retriable = retriable
        super().__init__(message)


def import_kafka() -> Any:
    """Import confluent_kafka, or say which extra to install."""
    try:
        import confluent_kafka
    except ImportError:
        raise ConfigurationError(
            "kafka",
            "needs the confluent-kafka package: pip install 'lago-segment[kafka]'",
        ) from None
    return confluent_kafka


def _ruby_float(value: int | str) -> str:
    # lago-api sends ``event.timestamp.to_f.to_s``: Ruby's shortest round-trip
    # float, which is Python's repr for the magnitudes of Unix seconds.
    return repr(float(value))


def _ruby_decimal(value: Decimal | str) -> str:
    # A BigDecimal's to_s under Rails: plain notation, no trailing zeros, ".0" at least.
    number = value if isinstance(value, Decimal) else Decimal(value)
    text = format(number.normalize(), "f")
    if "." not in text:
        return f"{text}.0"
    return text


def _ingested_at(now: datetime) -> str:
    # lago-api strips the trailing "Z" so ClickHouse's DateTime(3) parses it.
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def raw_event_message(
    event: LagoEvent,
    organization_id: str,
    *,
    ingested_at: datetime | None = None,
    source: str = DEFAULT_SOURCE,
    api_post_processed: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The key and value lago-api's producer would write for ``event``.

    Every value is a string except ``properties`` (an object),
    ``external_customer_id`` (null: events carry none) and ``source_metadata``.
    ``timestamp`` is Unix seconds as Ruby prints a float (``"1716200000.123"``),
    ``precise_total_amount_cents`` is ``"0.0"`` when absent, ``ingested_at`` has
    millisecond precision and no trailing ``Z``. ``source`` defaults to
    ``"lago-segment"`` rather than lago-api's ``"http_ruby"``: these events did
    not go through the API, so Lago's events-processor must do the
    post-processing the API would have done.

    >>> event = LagoEvent("tx-1", "sub-1", "api_calls", 1716200000, {"n": 1})
    >>> key, value = raw_event_message(event, "org-1",
    ...     ingested_at=datetime(2026, 8, 21, 13, 5, tzinfo=timezone.utc))
    >>> key, value["timestamp"], value["ingested_at"], value["precise_total_amount_cents"]
    ('org-1-sub-1', '1716200000.0', '2026-08-21T13:05:00.000', '0.0')
    """
    amount = event.precise_total_amount_cents
    properties = event.to_dict().get("properties", {})
    value: dict[str, Any] = {
        "organization_id": organization_id,
        "external_customer_id": None,
        "external_subscription_id": event.external_subscription_id,
        "transaction_id": event.transaction_id,
        "timestamp": _ruby_float(unix_seconds(event.timestamp)),
        "code": event.code,
        "precise_total_amount_cents": "0.0" if amount is None else _ruby_decimal(amount),
        "properties": properties,
        "ingested_at": _ingested_at(ingested_at or datetime.now(timezone.utc)),
        "source": source,
        "source_metadata": {"api_post_processed": api_post_processed},
    }
    return f"{organization_id}-{event.external_subscription_id}", value


def _problems(value: Mapping[str, Any], size: int, max_bytes: int) -> dict[str, list[str]]:
    """What Lago's consumers would refuse (or silently drop) in a rendered message."""
    problems: dict[str, list[str]] = {}
    for name in ("transaction_id", "external_subscription_id", "code"):
        text = value[name]
        if len(text) > 255 or "\x00" in text:
            problems[name] = ["must be at most 255 characters, without NUL"]
    timestamp = float(value["timestamp"])
    if not 0 <= timestamp < 253402300800:  # before year 10000, as ClickHouse parses it
        problems["timestamp"] = ["out_of_range"]
    if size > max_bytes:
        problems["event"] = [f"message is {size} bytes, over the {max_bytes}-byte limit"]
    return problems


class _Batch:
    """The delivery reports of one ``send_batch`` call (written by librdkafka's callbacks)."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.errors: dict[int, Any] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        if count == 0:
            self.done.set()

    def report(self, index: int, error: Any) -> None:
        with self.lock:
            if error is not None:
                self.errors[index] = error
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


class RawEventsSink:
    """Produce Lago events to a self-hosted Lago's raw-events topic (a LagoClient stand-in).

    ``send_batch(events)`` validates each event, produces it with lago-api's
    key and message format (see :func:`raw_event_message`), waits for Kafka's
    delivery reports and returns a :class:`~lago_segment.client.BatchResult`:
    acknowledged events are ``delivered``; an event that fails validation
    fails for good (:class:`~lago_segment.LagoValidationError`, code
    ``validation_errors``); a failed delivery report becomes a
    :class:`KafkaDeliveryError` (transient when librdkafka says it is
    retriable). Under a :class:`~lago_segment.Forwarder` those failures reach
    its ``on_error``, as with the REST client.

    This path skips Lago's API validation, and the raw-events topic has no
    idempotency: transaction_ids are deduplicated downstream (ClickHouse's
    ReplacingMergeTree on transaction_id + timestamp).

    ``config`` holds librdkafka settings (``bootstrap.servers``, security,
    SASL); idempotent production (``enable.idempotence``) is on by default.

    >>> sink = RawEventsSink(  # doctest: +SKIP
    ...     {"bootstrap.servers": "kafka:9092"}, topic="events_raw", organization_id=ORG_ID
    ... )
    >>> Forwarder(sink, spec=spec)  # doctest: +SKIP
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        topic: str,
        organization_id: str,
        source: str = DEFAULT_SOURCE,
        api_post_processed: bool = False,
        delivery_timeout: float = 30.0,
        max_message_bytes: int = 1_000_000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        kafka = import_kafka()
        for option, text in (("topic", topic), ("organization_id", organization_id)):
            if not isinstance(text, str) or not text.strip():
                raise ConfigurationError(option, "must be a non-empty string")
        if delivery_timeout <= 0:
            raise ConfigurationError(
                "delivery_timeout", f"must be positive, not {delivery_timeout}"
            )
        settings = {"enable.idempotence": True, **dict(config)}
        settings.setdefault("message.timeout.ms", int(delivery_timeout * 1000))
        self._producer: confluent_kafka.Producer = kafka.Producer(settings)
        self.topic = topic
        """The raw-events topic (lago-api's ``LAGO_KAFKA_RAW_EVENTS_TOPIC``)."""
        self.organization_id = organization_id
        """The Lago organization the events belong to (first part of every key)."""
        self._source = source
        self._post_processed = api_post_processed
        self._timeout = delivery_timeout
        self._max_bytes = max_message_bytes
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    def __repr__(self) -> str:
        return f"RawEventsSink(topic={self.topic!r}, organization_id={self.organization_id!r})"

    def message(self, event: LagoEvent) -> tuple[str, dict[str, Any]]:
        """The key and value this sink produces for ``event``."""
        return raw_event_message(
            event,
            self.organization_id,
            ingested_at=self._clock(),
            source=self._source,
            api_post_processed=self._post_processed,
        )

    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        """Produce ``events``, wait for their delivery reports, say what happened to each.

        Never raises for delivery failures: every event ends in ``delivered``
        or ``failed``.
        """
        events = list(events)
        failed: dict[int, DeliveryFailure] = {}
        produced: list[int] = []
        batch = _Batch(len(events))
        for index, event in enumerate(events):
            key, value = self.message(event)
            data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
            problems = _problems(value, len(data), self._max_bytes)
            if problems:
                failed[index] = DeliveryFailure(
                    event,
                    LagoValidationError(
                        422,
                        "Unprocessable Entity",
                        code="validation_errors",
                        error_details=problems,
                    ),
                    permanent=True,
                )
                batch.report(index, None)
                continue
            self._produce(key, data, batch, index)
            produced.append(index)
        deadline_reached = not self._wait(batch)
        with batch.lock:  # another thread's poll() may still run late callbacks
            errors = dict(batch.errors)
        for index, error in errors.items():
            failed[index] = DeliveryFailure(
                events[index], _delivery_error(error), permanent=not error.retriable()
            )
        if deadline_reached:
            # No report yet: it may still be delivered, so only a retry is safe
            # (Lago's pipeline deduplicates on transaction_id and timestamp).
            late = KafkaDeliveryError(
                "no delivery report before the deadline", kafka_error="_TIMED_OUT", retriable=True
            )
            for index in produced:
                if index not in failed:
                    failed[index] = DeliveryFailure(events[index], late, permanent=False)
        delivered = tuple(e for i, e in enumerate(events) if i not in failed)
        return BatchResult(delivered=delivered, failed=tuple(failed[i] for i in sorted(failed)))

    def _produce(self, key: str, data: bytes, batch: _Batch, index: int) -> None:
        def on_delivery(error: Any, _message: Any) -> None:
            batch.report(index, error)

        while True:
            try:
                self._producer.produce(self.topic, data, key.encode(), on_delivery=on_delivery)
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let it drain

    def _wait(self, batch: _Batch) -> bool:
        # Delivery callbacks run inside poll(); any thread's poll serves every batch.
        deadline = time.monotonic() + self._timeout + 5.0
        while not batch.done.is_set() and time.monotonic() < deadline:
            self._producer.poll(0.05)
        return batch.done.is_set()

    def send(self, event: LagoEvent) -> None:
        """Produce one event and wait for it; raises its error if it was not delivered."""
        result = self.send_batch([event])
        if result.failed:
            raise result.failed[0].error

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every produced message's report; returns how many are still queued."""
        left: int = self._producer.flush(-1 if timeout is None else timeout)
        return left

    def close(self, timeout: float = 10.0) -> None:
        """Flush (for at most ``timeout`` seconds)."""
        self.flush(timeout)

    def __enter__(self) -> RawEventsSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _delivery_error(error: Any) -> KafkaDeliveryError:
    return KafkaDeliveryError(
        f"Kafka did not take the message: {error.str()}",
        kafka_error=error.name(),
        retriable=bool(error.retriable()),
    )
