"""The pure core shared by :class:`~lago_segment.Forwarder` and :class:`AsyncForwarder`.

Everything here runs without sockets: turning a Segment message into queued
Lago events (spec rules, then the handler), deciding what a
:class:`~lago_segment.client.BatchResult` means for each queued event, the
counters, and the in-memory queue. The shells add only a sender (a thread or
an asyncio task) and the waiting.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

from . import _metrics
from ._handlers import CALL_TYPES, Handler, HandlerRetry, Settings, run_handler
from .errors import (
    ConfigurationError,
    ForwarderClosedError,
    InvalidEventPayload,
    MappingError,
    QueueFullError,
)
from .lago import LagoEvent

if TYPE_CHECKING:
    from .client import BatchResult
    from .events import SegmentEvent

__all__ = [
    "Core",
    "ErrorCallback",
    "ForwarderStats",
    "ForwardingError",
    "Item",
    "Mapper",
    "MemoryStore",
    "Stage",
    "Store",
    "log_error",
    "message_id_of",
]

logger = logging.getLogger("lago_segment")

Stage = Literal["mapping", "handler", "queue", "delivery"]
OnFull = Literal["raise", "block", "drop"]


class Mapper(Protocol):
    """What a forwarder needs from a mapping spec (:class:`~lago_segment.mapping.MappingSpec`)."""

    def map(self, event: SegmentEvent | Mapping[str, Any], /) -> list[LagoEvent]:
        """Return the Lago events ``event`` becomes (empty when no rule matches)."""
        ...


@attrs.frozen(slots=True)
class ForwardingError:
    """One event the forwarder could not deliver, handed to the ``on_error`` callback.

    It carries everything needed to store the event in a dead-letter table and
    replay it later: the exception, where it happened (:attr:`stage`), the Segment
    ``messageId``, the Lago event (when mapping got that far) and the Segment
    event (when it is still in memory)::

        def to_dead_letter(failure: ForwardingError) -> None:
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


#: A callback told about every event that could not be delivered.
ErrorCallback = Callable[[ForwardingError], None]


def log_error(failure: ForwardingError) -> None:
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
        extra=_metrics.log_fields(failure.message_id, getattr(failure.error, "rule", None), tx),
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


_COUNTERS = tuple(f.name for f in attrs.fields(ForwarderStats) if f.name != "queue_depth")


@attrs.define(slots=True, eq=False)
class Item:
    """One queued Lago event and where it came from."""

    event: LagoEvent
    message_id: str | None = None
    source: Any = None
    row_id: int | None = None


class Store(Protocol):
    """Where enqueued events wait for the sender: memory or a SQLite spool.

    Every method is thread-safe and fast (no network).
    """

    def put(self, items: Sequence[Item]) -> bool:
        """Take all of ``items`` (True) or none when there is no room (False)."""
        ...

    def take(self, n: int) -> list[Item]:
        """Up to ``n`` events not yet handed out, oldest first."""
        ...

    def ack(self, items: Sequence[Item]) -> None:
        """Forget ``items``: Lago has them, or they failed for good."""
        ...

    def retry_later(self, items: Sequence[Item]) -> bool:
        """Keep ``items`` for another try (True), or say the store cannot (False)."""
        ...

    def retry_delay(self) -> float:
        """Seconds before :meth:`take` hands out events kept by :meth:`retry_later`."""
        ...

    def ready(self) -> int:
        """How many events :meth:`take` could hand out now."""
        ...

    def depth(self) -> int:
        """How many events are held (in flight included)."""
        ...

    def admitted(self) -> int:
        """How many events were ever put (or adopted), counted before :meth:`take` sees them.

        ``flush()`` waits until this many events are settled: a count kept
        outside the store could lag behind an event the sender already settled.
        """
        ...

    def has_room(self, n: int) -> bool:
        """Whether ``n`` more events would fit."""
        ...

    def after_fork(self) -> None:
        """Reset in a forked child: forget the parent's events, new locks and handles."""
        ...

    def close(self) -> None:
        """Release resources (files)."""
        ...


class MemoryStore:
    """The in-memory queue: a deque bounded by ``max_size``."""

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._queue: collections.deque[Item] = collections.deque()
        self._in_flight = 0
        self._admitted = 0
        self._lock = threading.Lock()

    def put(self, items: Sequence[Item]) -> bool:
        with self._lock:
            if len(self._queue) + self._in_flight + len(items) > self._max:
                return False
            self._queue.extend(items)
            self._admitted += len(items)
            return True

    def take(self, n: int) -> list[Item]:
        with self._lock:
            count = min(n, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight += count
            return batch

    def ack(self, items: Sequence[Item]) -> None:
        with self._lock:
            self._in_flight -= len(items)

    def retry_later(self, items: Sequence[Item]) -> bool:
        return False

    def retry_delay(self) -> float:
        return 0.0

    def ready(self) -> int:
        return len(self._queue)

    def depth(self) -> int:
        return len(self._queue) + self._in_flight

    def admitted(self) -> int:
        return self._admitted

    def has_room(self, n: int) -> bool:
        return len(self._queue) + self._in_flight + n <= self._max

    def after_fork(self) -> None:
        # The parent still holds (and sends) these events: sending them here too
        # would deliver them twice.
        self._queue = collections.deque()
        self._in_flight = 0
        self._admitted = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        pass


def _segment_type(event: Any) -> str | None:
    kind = event.get("type") if isinstance(event, Mapping) else getattr(event, "type", None)
    return kind if isinstance(kind, str) else None


def message_id_of(event: Any) -> str | None:
    """The Segment messageId of a raw or parsed event, if it has one."""
    if isinstance(event, Mapping):
        mid = event.get("messageId")
        return mid if isinstance(mid, str) else None
    return getattr(event, "message_id", None)


class Core:
    """The I/O-free heart of a forwarder: mapping, outcomes, counters, the store."""

    def __init__(
        self,
        *,
        spec: Mapper | None,
        settings: Settings | Mapping[str, Any] | None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None,
        store: Store,
        batch_size: int,
        on_full: OnFull,
        mapping_errors: Literal["raise", "report"],
        handler_retry: HandlerRetry,
        sleep: Callable[[float], None],
    ) -> None:
        if not 1 <= batch_size <= 100:
            raise ConfigurationError(
                "batch_size", f"must be between 1 and 100 (Lago's limit), not {batch_size}"
            )
        if on_full not in ("raise", "block", "drop"):
            raise ConfigurationError(
                "on_full", f"must be 'raise', 'block' or 'drop', not {on_full!r}"
            )
        if mapping_errors not in ("raise", "report"):
            raise ConfigurationError(
                "mapping_errors", f"must be 'raise' or 'report', not {mapping_errors!r}"
            )
        self.spec = spec
        self.settings = settings if isinstance(settings, Settings) else Settings(settings)
        if on_error is None:
            self.callbacks: tuple[ErrorCallback, ...] = (log_error,)
        elif callable(on_error):
            self.callbacks = (on_error,)
        else:
            self.callbacks = tuple(on_error)
        self.store = store
        self.batch_size = batch_size
        self.on_full = on_full
        self.raise_mapping_errors = mapping_errors == "raise"
        self.handler_retry = handler_retry
        self.sleep = sleep
        self.handlers: dict[str, Handler] = {}
        self.closed = False
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._lock = threading.Lock()
        self.metrics = _metrics.for_forwarder(self)

    # -- handlers -------------------------------------------------------------------------

    def on(self, call_type: str) -> Callable[[Handler], Handler]:
        """The ``@forwarder.on("track")`` decorator."""
        if call_type not in CALL_TYPES:
            expected = ", ".join(sorted(CALL_TYPES))
            raise ConfigurationError(
                "call_type", f"unknown call type {call_type!r}: expected one of {expected}"
            )

        def register(handler: Handler) -> Handler:
            self.handlers[call_type] = handler
            return handler

        return register

    # -- counters -------------------------------------------------------------------------

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

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks and counters, the parent's events forgotten."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self.store.after_fork()

    # -- reporting ------------------------------------------------------------------------

    def report(self, failure: ForwardingError) -> None:
        """Tell every callback; a callback that raises is logged, never propagated."""
        for callback in self.callbacks:
            try:
                callback(failure)
            except Exception:
                logger.exception("lago_segment: the on_error callback raised")

    # -- the caller's side ----------------------------------------------------------------

    def map(self, event: SegmentEvent | Mapping[str, Any]) -> list[Item]:
        """Turn one Segment event (or a ``{"batch": [...]}`` payload) into queued items.

        Spec rules first, then the handler for the event's type; both contribute.
        Raises mapping errors when ``mapping_errors="raise"``; handler errors are
        reported, never raised.
        """
        if self.closed:
            raise ForwarderClosedError("forward() was called after close()")
        if isinstance(event, Mapping) and "batch" in event and "type" not in event:
            return self._map_batch(event)
        self.count(received=1)
        return self._map_one(event)

    def _map_one(
        self, event: SegmentEvent | Mapping[str, Any], *, with_handler: bool = True
    ) -> list[Item]:
        message_id = message_id_of(event)
        kind = _segment_type(event)
        handler = self.handlers.get(kind) if (with_handler and kind is not None) else None
        try:
            if kind not in CALL_TYPES:
                raise InvalidEventPayload(f"unknown Segment message type {kind!r}", "$.type")
            if handler is not None and isinstance(event, Mapping):
                from .events import parse_event

                event = parse_event(event)
            events = list(self.spec.map(event)) if self.spec is not None else []
        except (MappingError, InvalidEventPayload) as exc:
            self._reject("mapping", exc, message_id, event)
            if self.raise_mapping_errors:
                raise
            return []
        if handler is not None:
            outcome = run_handler(handler, event, self.settings, self.handler_retry, self.sleep)
            if outcome.kind == "dropped":
                self.count(discarded=1)
                return []
            if outcome.kind == "rejected":
                assert outcome.error is not None
                self._reject("handler", outcome.error, message_id, event)
                return []
            events.extend(outcome.events)
        if not events:
            self.count(skipped=1)
            return []
        return [Item(e, message_id, event) for e in events]

    def _map_batch(self, payload: Mapping[str, Any]) -> list[Item]:
        from .events import parse_batch

        try:
            events = parse_batch(payload)
        except InvalidEventPayload as exc:
            self.count(received=1)
            self._reject("mapping", exc, None, payload)
            if self.raise_mapping_errors:
                raise
            return []
        self.count(received=len(events))
        batch_handler = self.handlers.get("batch")
        items: list[Item] = []
        for one in events:
            items.extend(self._map_one(one, with_handler=batch_handler is None))
        if batch_handler is not None:
            outcome = run_handler(
                batch_handler, events, self.settings, self.handler_retry, self.sleep
            )
            if outcome.kind == "rejected":
                assert outcome.error is not None
                self._reject("handler", outcome.error, None, payload)
            elif outcome.kind == "events" and outcome.events:
                items.extend(Item(e, None, payload) for e in outcome.events)
        return items

    def _reject(
        self, stage: Stage, error: BaseException, message_id: str | None, event: Any
    ) -> None:
        self.count(rejected=1)
        if stage == "mapping" and self.raise_mapping_errors:
            return  # the caller gets the exception itself
        self.report(ForwardingError(error, stage, message_id, None, event))

    def overflow(self, items: Sequence[Item]) -> None:
        """The store had no room for ``items``: raise or drop them, per ``on_full``."""
        error = QueueFullError(
            f"the forwarder's queue is full ({self.store.depth()} events held); "
            f"{len(items)} Lago event(s) not taken"
        )
        self.count(mapped=len(items), dropped=len(items))
        self.metrics.items("dropped", items, error)
        if self.on_full != "drop":
            raise error
        for item in items:
            self.report(ForwardingError(error, "queue", item.message_id, item.event, item.source))

    def next_wait(
        self, *, urgent: bool, now: float, deadline: float, interval: float
    ) -> float | None:
        """The sender's batching decision: None to send a batch now, else seconds to wait.

        A full batch goes at once; a partial one when ``urgent`` (a flush or close
        is waiting) or once ``deadline`` (the flush interval) has passed. With
        nothing to send, wait for a spool's retry delay, else one interval.
        """
        ready = self.store.ready()
        if ready >= self.batch_size or (ready and (urgent or now >= deadline)):
            return None
        if ready:
            return deadline - now
        return self.store.retry_delay() or interval

    def accepted(self, items: Sequence[Item]) -> None:
        """``items`` (what :meth:`map` returned) are in the store."""
        self.count(mapped=len(items), enqueued=len(items))
        self.metrics.items("enqueued", items)

    # -- the sender's side ----------------------------------------------------------------

    def settle(self, items: Sequence[Item], result: BatchResult | Exception) -> int:
        """Apply what Lago said about a batch; return how many events are settled.

        Delivered and duplicate events are acknowledged; permanent failures are
        reported and acknowledged; transient ones (the client's retries ran out)
        are kept for another try when the store can (a spool), else reported.
        """
        if not isinstance(result, Exception) and result.failed:
            # Only failures need their items back (for the report); the client's
            # contract puts every other event in delivered or duplicates.
            try:
                matched = _match_failures(items, result)
            except (KeyError, StopIteration):
                result = RuntimeError("the client reported failures for events not in the batch")
        if isinstance(result, Exception):
            # The client contract says send_batch never raises; a custom or broken
            # client might. Treat it as a transient failure of the whole batch.
            failures: list[tuple[Item, BaseException, bool]] = [(i, result, False) for i in items]
            delivered = duplicates = retries = 0
        else:
            failures = matched if result.failed else []
            duplicates = len(result.duplicates)
            delivered = len(result.delivered) + duplicates
            retries = result.retries
        transient = [i for i, _, permanent in failures if not permanent]
        kept = bool(transient) and self.store.retry_later(transient)
        kept_ids = {id(i) for i in transient} if kept else set()
        done = [i for i in items if id(i) not in kept_ids]
        self.store.ack(done)
        self.count(
            delivered=delivered,
            duplicates=duplicates,
            failed=len(failures) - len(kept_ids),
            retried=retries + (1 if kept else 0),
        )
        self.metrics.settled(None if isinstance(result, Exception) else result, failures, kept_ids)
        for item, error, _permanent in failures:
            self.report(
                ForwardingError(
                    error,
                    "delivery",
                    item.message_id,
                    item.event,
                    item.source,
                    permanent=id(item) not in kept_ids,
                )
            )
        return len(done)


def _match_failures(
    items: Sequence[Item], result: BatchResult
) -> list[tuple[Item, BaseException, bool]]:
    """Pair each failure of a :class:`BatchResult` with the queued item it came from."""
    by_id: dict[int, Item] = {id(i.event): i for i in items}
    by_key: dict[tuple[str, str], list[Item]] = {}
    for i in items:
        by_key.setdefault((i.event.transaction_id, i.event.external_subscription_id), []).append(i)
    seen: set[int] = set()

    def find(event: LagoEvent) -> Item:
        item = by_id.get(id(event))
        if item is None or id(item) in seen:
            # The client gave back an equal event, not ours: match on the idempotency key.
            key = (event.transaction_id, event.external_subscription_id)
            item = next(i for i in by_key[key] if id(i) not in seen)
        seen.add(id(item))
        return item

    return [(find(f.event), f.error, f.permanent) for f in result.failed]
