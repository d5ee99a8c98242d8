"""The caller's side of a forwarder, I/O-free: Segment event in, queued Lago events out.

:class:`Intake` turns one Segment message (or a ``{"batch": [...]}`` payload)
into :class:`~lago_segment.forwarder._stores.QueuedEvent` s, spec rules first,
then the registered handler (:meth:`Intake.map_flow`), and says what happens
when the store has no room (:meth:`Intake.overflow`). It runs on
``forward()``'s thread, for every event: keep it lean.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lago_segment._reporting import message_id_of, segment_type
from lago_segment._types import Mapper
from lago_segment.client._flows import Wait
from lago_segment.errors import (
    ConfigurationError,
    ForwarderClosedError,
    InvalidEventPayload,
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
from lago_segment.forwarder._options import OnFull
from lago_segment.forwarder._records import Bookkeeping, ForwardingFailure, Stage
from lago_segment.forwarder._stores import QueuedEvent

if TYPE_CHECKING:
    from lago_segment.events import SegmentEvent

#: Mapping one Segment event: yields a handler's retry waits, returns the queued items.
MapFlow = Generator[Wait, None, "list[QueuedEvent]"]


class Intake(Bookkeeping):
    """Mapping Segment events into queued items; a part of
    :class:`~lago_segment.forwarder._state.ForwardingState`, which sets the fields."""

    spec: Mapper | None
    settings: HandlerSettings
    handlers: dict[str, Handler]
    handler_retry: HandlerRetry
    sleep: Callable[[float], None]
    raise_mapping_errors: bool
    on_full: OnFull
    closed: bool

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

    def accepted(self, items: Sequence[QueuedEvent]) -> None:
        """``items`` (what :meth:`map` returned) are in the store."""
        self.count(mapped=len(items), enqueued=len(items))
        self.metrics.items("enqueued", items)

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
