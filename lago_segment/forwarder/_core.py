"""The pure core shared by :class:`~lago_segment.Forwarder` and :class:`AsyncForwarder`.

Everything here runs without sockets: turning a Segment message into queued
Lago events (spec rules, then the handler), deciding what a
:class:`~lago_segment.client.BatchResult` means for each queued event, the
counters, and the in-memory queue. The shells add only a sender (a thread or
an asyncio task) and the waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs
import httpx

from lago_segment import _metrics
from lago_segment._retry import is_testing
from lago_segment.client._flows import Call, Flow, Wait
from lago_segment.client._responses import server_wait
from lago_segment.client._results import BatchResult
from lago_segment.errors import (
    ConfigurationError,
    ForwarderClosedError,
    InvalidEventPayload,
    LagoRateLimitError,
    MappingError,
    QueueFullError,
)
from lago_segment.forwarder._handlers import (
    CALL_TYPES,
    Handler,
    HandlerRetry,
    HandlerSettings,
    handler_flow,
)
from lago_segment.lago import LagoEvent

if TYPE_CHECKING:
    from lago_segment.events import SegmentEvent
from lago_segment._reporting import message_id_of, segment_type
from lago_segment._types import Mapper
from lago_segment.forwarder._records import (
    COUNTERS,
    ErrorCallback,
    ForwarderStats,
    ForwardingFailure,
    Stage,
    log_error,
)
from lago_segment.forwarder._stores import (
    QueuedEvent,
    SetAside,
    Store,
)

T = TypeVar("T")

#: Batches in flight at once by default: see "Throughput and latency" in
#: docs/forwarders.md (8 batches per 20 ms round trip stay below Lago Cloud's
#: 500 requests/s per organization, and within httpx's 20 kept-alive connections).
DEFAULT_MAX_IN_FLIGHT = 8

logger = logging.getLogger("lago_segment")

OnFull = Literal["raise", "block", "drop"]


@attrs.frozen(slots=True)
class Idle:
    """A step of the sender flow: wait ``seconds``, or less if woken.

    ``seen`` is :attr:`Core.wakeups` as the flow read it before looking at the
    store: when it has changed since, the shell does not wait at all (no lost
    wake-up).
    """

    seconds: float
    seen: int


@attrs.frozen(slots=True)
class Send:
    """A step of the sender flow: send ``events`` with the client.

    The shell answers with the :class:`~lago_segment.client.BatchResult`, or the
    exception ``send_batch`` raised.
    """

    events: list[LagoEvent]


#: What a sender flow yields, what it is sent back, what it returns.
SenderFlow = Generator["Idle | Send", "BatchResult | Exception | None", None]
#: Mapping one Segment event: yields a handler's retry waits, returns the queued items.
MapFlow = Generator[Wait, None, "list[QueuedEvent]"]


class Abandoned(Exception):
    """Raised inside a client flow once ``close()``'s deadline has passed: no more retries."""


class Core:
    """The I/O-free heart of a forwarder: mapping, senders' decisions, outcomes, counters.

    The shells (a thread pool, asyncio tasks) run :meth:`sender` flows, up to
    ``max_in_flight`` of them, and :meth:`map_flow`; they only wait and post.
    """

    def __init__(
        self,
        *,
        spec: Mapper | None,
        settings: HandlerSettings | Mapping[str, Any] | None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None,
        store: Store,
        batch_size: int,
        on_full: OnFull,
        mapping_errors: Literal["raise", "report"],
        handler_retry: HandlerRetry,
        sleep: Callable[[float], None],
        flush_interval: float = 1.0,
        max_in_flight: int = 1,
        clock: Callable[[], float] = time.monotonic,
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
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise ConfigurationError(
                "max_in_flight", f"must be an int, not {type(max_in_flight).__name__}"
            )
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight", f"must be >= 1, not {max_in_flight}")
        self.spec = spec
        self.settings = (
            settings if isinstance(settings, HandlerSettings) else HandlerSettings(settings)
        )
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
        self.flush_interval = flush_interval
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.handlers: dict[str, Handler] = {}
        self.closed = False
        self.pauses = True
        """Whether a 429 pauses the senders at all (see :meth:`pause`)."""
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()
        self.metrics = _metrics.for_forwarder(self)
        self._reset_senders()

    def _reset_senders(self) -> None:
        self.wakeups = 0
        """Bumped by the shell to wake idle senders (see :class:`Idle`)."""
        self.idle = 0
        """Senders waiting for a batch."""
        self.urgent = 0
        """flush() calls waiting: partial batches go at once."""
        self.stopping = False
        """Set by close(): senders stop once idle."""
        self.abandoned = False
        """Set at close()'s deadline: what is still in flight was reported, retries stop."""
        self.settled = 0
        """Events settled (delivered or reported) by the senders."""
        self.paused_until = 0.0
        """Until when (``clock``) all senders hold off: Lago answered 429."""
        self._deadline = self.clock() + self.flush_interval
        self._flight = threading.Condition()  # guards the three below and `abandoned`
        self._flying: dict[int, list[QueuedEvent]] = {}
        self._tokens = 0
        self._settling = 0

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
        self._counts = dict.fromkeys(COUNTERS, 0)
        self.store.after_fork()
        self._reset_senders()

    # -- reporting ------------------------------------------------------------------------

    def report(self, failure: ForwardingFailure) -> None:
        """Tell every callback; a callback that raises is logged, never propagated."""
        for callback in self.callbacks:
            try:
                callback(failure)
            except Exception:
                logger.exception("lago_segment: the on_error callback raised")

    # -- the caller's side ----------------------------------------------------------------

    def map(self, event: SegmentEvent | Mapping[str, Any]) -> list[QueuedEvent]:
        """:meth:`map_flow` driven to its end, a handler's retries waiting with ``sleep``."""
        flow = self.map_flow(event)
        try:
            wait = next(flow)
        except StopIteration as stop:
            items: list[QueuedEvent] = stop.value
            return items
        return self.map_rest(flow, wait)

    def map_rest(self, flow: MapFlow, wait: Wait) -> list[QueuedEvent]:
        """Finish a :meth:`map_flow` that yielded ``wait``, waiting with ``sleep``."""
        try:
            while True:
                self.sleep(wait.seconds)
                wait = next(flow)
        except StopIteration as stop:
            items: list[QueuedEvent] = stop.value
            return items

    def map_flow(self, event: SegmentEvent | Mapping[str, Any]) -> MapFlow:
        """Turn one Segment event (or a ``{"batch": [...]}`` payload) into queued items.

        Spec rules first, then the handler for the event's type; both contribute.
        Raises mapping errors when ``mapping_errors="raise"`` (before its first
        step); handler errors are reported, never raised. Yields a
        :class:`~lago_segment.client._flows.Wait` before each handler retry.
        """
        if self.closed:
            raise ForwarderClosedError("forward() was called after close()")
        if isinstance(event, Mapping) and "batch" in event and "type" not in event:
            return (yield from self._map_batch(event))
        self.count(received=1)
        return (yield from self._map_one(event))

    def _map_one(
        self, event: SegmentEvent | Mapping[str, Any], *, with_handler: bool = True
    ) -> MapFlow:
        message_id = message_id_of(event)
        kind = segment_type(event)
        handler = self.handlers.get(kind) if (with_handler and kind is not None) else None
        try:
            if kind not in CALL_TYPES:
                raise InvalidEventPayload(f"unknown Segment message type {kind!r}", "$.type")
            if handler is not None and isinstance(event, Mapping):
                from lago_segment.events import parse_event

                event = parse_event(event)
            events = list(self.spec.map(event)) if self.spec is not None else []
        except (MappingError, InvalidEventPayload) as exc:
            self._reject("mapping", exc, message_id, event)
            if self.raise_mapping_errors:
                raise
            return []
        if handler is not None:
            outcome = yield from handler_flow(handler, event, self.settings, self.handler_retry)
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
        return [QueuedEvent(e, message_id, event) for e in events]

    def _map_batch(self, payload: Mapping[str, Any]) -> MapFlow:
        from lago_segment.events import parse_batch

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
        items: list[QueuedEvent] = []
        for one in events:
            items.extend((yield from self._map_one(one, with_handler=batch_handler is None)))
        if batch_handler is not None:
            outcome = yield from handler_flow(
                batch_handler, events, self.settings, self.handler_retry
            )
            if outcome.kind == "rejected":
                assert outcome.error is not None
                self._reject("handler", outcome.error, None, payload)
            elif outcome.kind == "events" and outcome.events:
                items.extend(QueuedEvent(e, None, payload) for e in outcome.events)
        return items

    def _reject(
        self, stage: Stage, error: BaseException, message_id: str | None, event: Any
    ) -> None:
        self.count(rejected=1)
        if stage == "mapping" and self.raise_mapping_errors:
            return  # the caller gets the exception itself
        self.report(ForwardingFailure(error, stage, message_id, None, event))

    def overflow(
        self,
        items: Sequence[QueuedEvent],
        error: Exception | None = None,
        *,
        can_raise: bool = True,
    ) -> None:
        """The store had no room for ``items`` (or could not write them): raise or drop
        them, per ``on_full``; ``can_raise=False`` (no caller to raise to) always drops."""
        if error is None:
            error = QueueFullError(
                f"the forwarder's queue is full ({self.store.depth()} events held); "
                f"{len(items)} Lago event(s) not taken"
            )
        self.count(mapped=len(items), dropped=len(items))
        self.metrics.items("dropped", items, error)
        if self.on_full != "drop" and can_raise:
            raise error
        for item in items:
            self.report(
                ForwardingFailure(error, "queue", item.message_id, item.event, item.source)
            )

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

    @property
    def batches_in_flight(self) -> int:
        """How many batches the senders have taken and not yet settled."""
        return len(self._flying)

    def accepted(self, items: Sequence[QueuedEvent]) -> None:
        """``items`` (what :meth:`map` returned) are in the store."""
        self.count(mapped=len(items), enqueued=len(items))
        self.metrics.items("enqueued", items)

    def wants_wakeup(self) -> bool:
        """Whether a shell should wake its idle senders now: a full batch is waiting."""
        return self.idle > 0 and self.store.ready() >= self.batch_size

    # -- the senders' side ----------------------------------------------------------------

    def sender(self) -> SenderFlow:
        """One sender's life, as a flow its shell drives (thread or asyncio task).

        It yields :class:`Idle` while there is nothing to send (or Lago asked
        every sender to hold off), :class:`Send` with a batch, and settles what
        the shell sends back. It ends once :attr:`stopping` is set and it is idle.
        Each batch is tracked while in flight, so that :meth:`abandon` can report
        it exactly once if ``close()`` gives up on it.
        """
        while True:
            taken = yield from self._next_batch()
            if taken is None:
                return
            token, items = taken
            reply = yield Send([i.event for i in items])
            with self._flight:
                if self._flying.pop(token, None) is None:
                    continue  # close() gave up on this batch and reported it
                self._settling += 1
            try:
                self._settle_reply(items, reply)
            finally:
                self._done_settling()

    def _next_batch(self) -> Generator[Idle, None, tuple[int, list[QueuedEvent]] | None]:
        with self._lock:
            self.idle += 1
        try:
            while True:
                seen = self.wakeups  # before looking: see Idle
                if self.stopping:
                    return None
                now = self.clock()
                paused = self.paused_until - now
                if paused > 0:
                    yield Idle(paused, seen)
                    continue
                wait = self.next_wait(
                    urgent=self.urgent > 0,
                    now=now,
                    deadline=self._deadline,
                    interval=self.flush_interval,
                )
                if wait is None:
                    taken = self._take()
                    if taken is not None:
                        return taken
                    # Another sender took it (or close() gave up): nothing left now.
                    wait = self.store.retry_delay() or self.flush_interval
                if not self.store.ready():
                    self._deadline = now + wait
                yield Idle(wait, seen)
        finally:
            with self._lock:
                self.idle -= 1

    def _take(self) -> tuple[int, list[QueuedEvent]] | None:
        with self._flight:
            if self.abandoned:
                return None
            items = self.store.take(self.batch_size)
            set_aside = self.store.pop_set_aside()
            if set_aside:
                self._settling += 1
            if items:
                self._tokens += 1
                token = self._tokens
                self._flying[token] = items
        if set_aside:
            try:
                self._report_set_aside(set_aside)
            finally:
                self._done_settling()
        return (token, items) if items else None

    def _report_set_aside(self, rows: list[SetAside]) -> None:
        self.count(failed=len(rows))
        with self._lock:
            self.settled += len(rows)
        for row in rows:
            self.report(ForwardingFailure(row.error, "delivery", row.message_id))

    def _done_settling(self) -> None:
        with self._flight:
            self._settling -= 1
            self._flight.notify_all()

    def _settle_reply(
        self, items: list[QueuedEvent], reply: BatchResult | Exception | None
    ) -> None:
        result: BatchResult | Exception = (
            reply if reply is not None else RuntimeError("the sender got no reply")
        )
        if isinstance(result, BatchResult):
            resets = [
                f.error.reset
                for f in result.failed
                if isinstance(f.error, LagoRateLimitError) and f.error.reset
            ]
            if resets:
                self.pause(max(resets))
        settled = self.settle(items, result)
        with self._lock:
            self.settled += settled
        self._deadline = self.clock() + self.flush_interval

    def pause(self, seconds: float) -> None:
        """Hold every sender off for ``seconds`` (Lago answered 429 with a reset).

        Not while waiting is off: :func:`~lago_segment.testing.set_testing`, or
        :attr:`pauses` False (the shell's client waits with a custom ``sleep``).
        """
        if is_testing() or not self.pauses or seconds <= 0:
            return
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def gated(self, flow: Flow[T]) -> Flow[T]:
        """Wrap a client's flow: its requests wait while the senders are paused, a 429
        pauses all of them, and once ``close()`` gave up (:meth:`abandon`) it stops
        (raising :class:`Abandoned`) instead of retrying."""
        reply: Any = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if isinstance(step, Call):
                # One wait, not a loop: a client whose policy does not really sleep
                # (tests) must not spin until the reset.
                wait = self.paused_until - self.clock()
                if wait > 0 and not self.abandoned:
                    yield Wait(wait)
            if self.abandoned:
                raise Abandoned("the forwarder closed while this batch was being sent")
            reply = yield step
            if isinstance(reply, httpx.Response) and reply.status_code == 429:
                hint = server_wait(reply.headers)
                if hint:
                    self.pause(hint)

    def abandon(self, *, own_settling: int = 0) -> list[QueuedEvent]:
        """``close()``'s deadline passed: stop retrying; return the events in flight.

        Waits for batches being settled right now (no network: quick), except
        ``own_settling`` of them (close() called from an ``on_error`` callback).
        Every batch still in flight is handed over exactly once: its sender will
        find it gone and neither settle nor report it.
        """
        with self._flight:
            self.abandoned = True
            self._flight.wait_for(lambda: self._settling <= own_settling)
            items = [i for batch in self._flying.values() for i in batch]
            self._flying.clear()
        return items

    def settle(self, items: Sequence[QueuedEvent], result: BatchResult | Exception) -> int:
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
            failures: list[tuple[QueuedEvent, BaseException, bool]] = [
                (i, result, False) for i in items
            ]
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
                ForwardingFailure(
                    error,
                    "delivery",
                    item.message_id,
                    item.event,
                    item.source,
                    permanent=id(item) not in kept_ids,
                )
            )
        return len(done)

    def report_unsent(self, items: Sequence[QueuedEvent], error: Exception) -> None:
        """Events close() gives up on (memory mode): counted failed, reported once each."""
        if not items:
            return
        self.store.ack(items)
        self.count(failed=len(items))
        self.metrics.items("failed", items, error)
        for item in items:
            self.report(
                ForwardingFailure(error, "delivery", item.message_id, item.event, item.source)
            )


def _match_failures(
    items: Sequence[QueuedEvent], result: BatchResult
) -> list[tuple[QueuedEvent, BaseException, bool]]:
    """Pair each failure of a :class:`BatchResult` with the queued item it came from."""
    by_id: dict[int, QueuedEvent] = {id(i.event): i for i in items}
    by_key: dict[tuple[str, str], list[QueuedEvent]] = {}
    for i in items:
        by_key.setdefault((i.event.transaction_id, i.event.external_subscription_id), []).append(i)
    seen: set[int] = set()

    def find(event: LagoEvent) -> QueuedEvent:
        item = by_id.get(id(event))
        if item is None or id(item) in seen:
            # The client gave back an equal event, not ours: match on the idempotency key.
            key = (event.transaction_id, event.external_subscription_id)
            item = next(i for i in by_key[key] if id(i) not in seen)
        seen.add(id(item))
        return item

    return [(find(f.event), f.error, f.permanent) for f in result.failed]
