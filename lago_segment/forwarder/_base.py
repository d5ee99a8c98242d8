"""What both forwarders share (:class:`BaseForwarder`), and the process hooks.

The base class builds the store and the
:class:`~lago_segment.forwarder._state.ForwardingState` from validated
:class:`~lago_segment.forwarder._options.ForwarderOptions`, and holds what needs
no I/O: handlers, stats, ``report``, putting items in the store, and what
``close()`` gives up on. The fork and ``atexit`` hooks reach every live
forwarder through a weak set.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lago_segment._reporting import message_id_of
from lago_segment.client import AsyncLagoClient, LagoClient
from lago_segment.errors import (
    ForwarderClosedError,
    ForwarderError,
    HandlerError,
    InvalidEventPayload,
    MappingError,
    SpoolError,
)
from lago_segment.forwarder._handlers import Handler, HandlerSettings
from lago_segment.forwarder._options import ForwarderOptions
from lago_segment.forwarder._records import ForwarderStats, ForwardingFailure, Stage
from lago_segment.forwarder._spool import SpoolStore
from lago_segment.forwarder._state import ForwardingState
from lago_segment.forwarder._stores import MemoryStore, QueuedEvent, Store

if TYPE_CHECKING:
    from lago_segment.events import SegmentEvent

logger = logging.getLogger("lago_segment")

_QUEUED_AT_CLOSE = "the forwarder closed before this event was delivered"
_IN_FLIGHT_AT_CLOSE = (
    "the forwarder closed while this event's batch was in flight: Lago may or may not "
    "have stored it (resending it is safe, Lago dedupes on transaction_id)"
)


# Live forwarders, for the fork and atexit hooks (weak: a hook never keeps one alive).
_LIVE: weakref.WeakSet[BaseForwarder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for forwarder in list(_LIVE):
        forwarder._after_fork_in_child()


def _at_exit() -> None:
    for forwarder in list(_LIVE):
        forwarder._at_exit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)


def _pool_limit(client: object) -> int | None:
    """The connection limit of a library client's own httpx pool, when it can be read."""
    pool = getattr(getattr(getattr(client, "_http", None), "_transport", None), "_pool", None)
    limit = getattr(pool, "_max_connections", None)
    return limit if isinstance(limit, int) else None


class BaseForwarder:
    """What both forwarders share: construction, handlers, stats, closing (all I/O-free)."""

    def __init__(self, client: object, options: ForwarderOptions) -> None:
        max_in_flight = options.max_in_flight
        limit = _pool_limit(client)
        if limit is not None and limit < max_in_flight:
            logger.warning(
                "lago_segment: max_in_flight=%d but the client's connection pool allows "
                "%d connections: at most %d batches will be in flight",
                max_in_flight,
                limit,
                limit,
            )
        store: Store
        if options.spool is None:
            store = MemoryStore(options.max_queue_size)
        else:
            store = SpoolStore(
                options.spool,
                max_events=options.max_spool_events,
                retry_wait=options.spool_retry_wait,
                sync=options.spool_sync,
            )
        try:
            self._state = ForwardingState(options, store)
        except BaseException:
            store.close()
            raise
        self._flush_interval = options.flush_interval
        # A client whose retry policy does not really sleep (tests, the testing
        # fixture) wants no waiting: the senders do not pause on a 429 either.
        if isinstance(client, (LagoClient, AsyncLagoClient)) and client.retry.sleep is not None:
            self._state.pauses = False
        # Rows a spool kept from an earlier process are ours to deliver.
        self._state.count(enqueued=store.depth())
        _LIVE.add(self)

    @property
    def settings(self) -> HandlerSettings:
        """The read-only settings handed to every handler."""
        return self._state.settings

    @property
    def stats(self) -> ForwarderStats:
        """A snapshot of the counters (see :class:`ForwarderStats`)."""
        return self._state.stats()

    @property
    def closed(self) -> bool:
        """True once ``close()`` / ``aclose()`` was called."""
        return self._state.closed

    def on(self, call_type: str) -> Callable[[Handler], Handler]:
        """Register a handler for a Segment call type, like a Segment Function's ``onTrack``.

        ``call_type`` is ``"track"``, ``"identify"``, ``"group"``, ``"page"``,
        ``"screen"``, ``"alias"``, ``"delete"`` or ``"batch"``. The handler gets
        ``(event, settings)`` and returns a :class:`~lago_segment.LagoEvent`, a
        list of them, or None. Spec rules run first; the handler's events are
        added to theirs::

            @forwarder.on("track")
            def on_track(event, settings):
                if event.event != "API Call":
                    raise DropEvent()
                return LagoEvent(...)
        """
        return self._state.on(call_type)

    def report(self, error: Exception, event: SegmentEvent | Mapping[str, Any]) -> None:
        """Hand an error about ``event`` to this forwarder's ``on_error`` callbacks.

        For code that calls ``forward()`` on the forwarder's behalf (the webhook
        receiver, the analytics-python hook) and caught what it raised; the
        stage follows from the error: ``"mapping"`` for a malformed event or a
        mapping error, ``"handler"``, ``"queue"`` for a full or closed forwarder,
        else ``"delivery"``. Counters are not touched (``forward()`` did that).
        """
        stage: Stage
        if isinstance(error, (InvalidEventPayload, MappingError)):
            stage = "mapping"
        elif isinstance(error, HandlerError):
            stage = "handler"
        elif isinstance(error, ForwarderError):
            stage = "queue"
        else:
            stage = "delivery"
        self._state.report(ForwardingFailure(error, stage, message_id_of(event), None, event))

    @property
    def max_in_flight(self) -> int:
        """How many batches may be in flight at once."""
        return self._state.max_in_flight

    def _target(self) -> int:
        # The store's count, not stats().enqueued: forward() counts after put(),
        # and the sender may settle an event before that count catches up.
        return self._state.store.admitted()

    def _put(
        self,
        items: list[QueuedEvent],
        wait_for_room: Callable[[int], bool] | None = None,
        *,
        can_raise: bool = True,
    ) -> bool:
        """Store ``items`` (and count them), or apply ``on_full`` when there is no room
        or the spool cannot be written (:class:`~lago_segment.errors.SpoolError`)."""
        state = self._state
        error: SpoolError | None = None
        for first in (True, False):
            try:
                if state.store.put(items):
                    state.accepted(items)
                    return True
            except SpoolError as exc:
                error = exc
            if not (first and wait_for_room is not None and state.on_full == "block"):
                break
            if not wait_for_room(len(items)):
                break
        state.overflow(items, error, can_raise=can_raise)
        return False

    def _give_up(self, in_flight: list[QueuedEvent]) -> None:
        """After close: report what memory mode still holds, in flight or queued, exactly
        once; a spool keeps its rows (in flight included) for the next forwarder."""
        state = self._state
        store = state.store
        if isinstance(store, MemoryStore):
            state.report_unsent(in_flight, ForwarderClosedError(_IN_FLIGHT_AT_CLOSE))
            while items := store.take(1000):
                state.report_unsent(items, ForwarderClosedError(_QUEUED_AT_CLOSE))
        store.close()

    def _after_fork_in_child(self) -> None:
        raise NotImplementedError

    def _at_exit(self) -> None:
        pass
