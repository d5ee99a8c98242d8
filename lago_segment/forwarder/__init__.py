"""Forwarders: the in-process replacement for a Segment destination function.

``forward(event)`` maps a Segment event on the caller's thread (spec rules,
then the handler for its type) and queues the Lago events; a background sender
delivers them in batches through a :class:`~lago_segment.client.LagoClient`
(:class:`Forwarder`, a thread) or an ``AsyncLagoClient`` (:class:`AsyncForwarder`,
one asyncio task). See ``docs/forwarders.md`` for the delivery guarantees.

>>> forwarder = Forwarder(client, spec=spec)          # doctest: +SKIP
>>> forwarder.forward({"type": "track", ...})         # doctest: +SKIP
>>> forwarder.close()                                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from lago_segment._lazy import attach
from lago_segment._reporting import message_id_of
from lago_segment._types import AsyncClient, Mapper, SyncClient
from lago_segment.client import AsyncLagoClient, LagoClient
from lago_segment.client._flows import Wait
from lago_segment.errors import (
    ConfigurationError,
    ForwarderClosedError,
    ForwarderError,
    HandlerError,
    InvalidEventPayload,
    MappingError,
    SpoolError,
)
from lago_segment.forwarder._core import (
    DEFAULT_MAX_IN_FLIGHT,
    Core,
    Idle,
    MapFlow,
    OnFull,
    SenderFlow,
)
from lago_segment.forwarder._handlers import Handler, HandlerRetry, HandlerSettings, Settings
from lago_segment.forwarder._records import (
    ErrorCallback,
    ForwarderStats,
    ForwardingFailure,
    Stage,
    log_error,
)
from lago_segment.forwarder._spool import SpoolStore, SpoolSync
from lago_segment.forwarder._stores import MemoryStore, QueuedEvent, Store
from lago_segment.lago import LagoEvent

if TYPE_CHECKING:
    from typing_extensions import Self

    from lago_segment.client import BatchResult
    from lago_segment.events import SegmentEvent

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "AsyncForwarder",
    "ErrorCallback",
    "Forwarder",
    "ForwarderStats",
    "ForwardingFailure",
    "Handler",
    "HandlerRetry",
    "HandlerSettings",
    "Mapper",
    "Settings",
    "log_error",
]

logger = logging.getLogger("lago_segment")

_QUEUED_AT_CLOSE = "the forwarder closed before this event was delivered"
_IN_FLIGHT_AT_CLOSE = (
    "the forwarder closed while this event's batch was in flight: Lago may or may not "
    "have stored it (resending it is safe, Lago dedupes on transaction_id)"
)


# Live forwarders, for the fork and atexit hooks (weak: a hook never keeps one alive).
_LIVE: weakref.WeakSet[_BaseForwarder] = weakref.WeakSet()


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


class _BaseForwarder:
    """What both forwarders share: construction, handlers, stats, closing (all I/O-free)."""

    def __init__(
        self,
        client: object,
        *,
        spec: Mapper | None,
        settings: HandlerSettings | Mapping[str, Any] | None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None,
        batch_size: int,
        flush_interval: float,
        max_queue_size: int,
        on_full: OnFull,
        spool: str | os.PathLike[str] | None,
        max_spool_events: int,
        spool_retry_wait: float,
        spool_sync: SpoolSync,
        mapping_errors: Literal["raise", "report"],
        handler_retry: HandlerRetry | None,
        sleep: Callable[[float], None],
        max_in_flight: int,
    ) -> None:
        if flush_interval <= 0:
            raise ConfigurationError("flush_interval", f"must be positive, not {flush_interval}")
        if isinstance(max_in_flight, int) and not isinstance(max_in_flight, bool):
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
        if spool is None:
            store = MemoryStore(max_queue_size)
        else:
            store = SpoolStore(
                spool, max_events=max_spool_events, retry_wait=spool_retry_wait, sync=spool_sync
            )
        try:
            self._core = Core(
                spec=spec,
                settings=settings,
                on_error=on_error,
                store=store,
                batch_size=batch_size,
                on_full=on_full,
                mapping_errors=mapping_errors,
                handler_retry=handler_retry or HandlerRetry(),
                sleep=sleep,
                flush_interval=flush_interval,
                max_in_flight=max_in_flight,
            )
        except BaseException:
            store.close()
            raise
        self._flush_interval = flush_interval
        # A client whose retry policy does not really sleep (tests, the testing
        # fixture) wants no waiting: the senders do not pause on a 429 either.
        if isinstance(client, (LagoClient, AsyncLagoClient)) and client.retry.sleep is not None:
            self._core.pauses = False
        # Rows a spool kept from an earlier process are ours to deliver.
        self._core.count(enqueued=store.depth())
        _LIVE.add(self)

    @property
    def settings(self) -> HandlerSettings:
        """The read-only settings handed to every handler."""
        return self._core.settings

    @property
    def stats(self) -> ForwarderStats:
        """A snapshot of the counters (see :class:`ForwarderStats`)."""
        return self._core.stats()

    @property
    def closed(self) -> bool:
        """True once ``close()`` / ``aclose()`` was called."""
        return self._core.closed

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
        return self._core.on(call_type)

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
        self._core.report(ForwardingFailure(error, stage, message_id_of(event), None, event))

    @property
    def max_in_flight(self) -> int:
        """How many batches may be in flight at once."""
        return self._core.max_in_flight

    def _target(self) -> int:
        # The store's count, not stats().enqueued: forward() counts after put(),
        # and the sender may settle an event before that count catches up.
        return self._core.store.admitted()

    def _put(
        self,
        items: list[QueuedEvent],
        wait_for_room: Callable[[int], bool] | None = None,
        *,
        can_raise: bool = True,
    ) -> bool:
        """Store ``items`` (and count them), or apply ``on_full`` when there is no room
        or the spool cannot be written (:class:`~lago_segment.errors.SpoolError`)."""
        core = self._core
        error: SpoolError | None = None
        for first in (True, False):
            try:
                if core.store.put(items):
                    core.accepted(items)
                    return True
            except SpoolError as exc:
                error = exc
            if not (first and wait_for_room is not None and core.on_full == "block"):
                break
            if not wait_for_room(len(items)):
                break
        core.overflow(items, error, can_raise=can_raise)
        return False

    def _give_up(self, in_flight: list[QueuedEvent]) -> None:
        """After close: report what memory mode still holds, in flight or queued, exactly
        once; a spool keeps its rows (in flight included) for the next forwarder."""
        core = self._core
        store = core.store
        if isinstance(store, MemoryStore):
            core.report_unsent(in_flight, ForwarderClosedError(_IN_FLIGHT_AT_CLOSE))
            while items := store.take(1000):
                core.report_unsent(items, ForwarderClosedError(_QUEUED_AT_CLOSE))
        store.close()

    def _after_fork_in_child(self) -> None:
        raise NotImplementedError

    def _at_exit(self) -> None:
        pass


class Forwarder(_BaseForwarder):
    """Forward Segment events to Lago from any thread; background threads send them.

    ``forward()`` maps on the caller's thread and returns without network I/O.
    Options:

    - ``batch_size`` (1-100) events per request; ``flush_interval`` seconds a
      partial batch waits.
    - ``max_in_flight`` batches sent at once, each by its own sender thread over
      the client's connection pool (default :data:`DEFAULT_MAX_IN_FLIGHT`, see
      "Throughput and latency" in ``docs/forwarders.md``).
    - ``max_queue_size`` events held in memory; when full, ``on_full`` says what
      ``forward()`` does: ``"raise"`` :class:`~lago_segment.QueueFullError`,
      ``"block"`` up to ``block_timeout`` seconds for room then raise, or
      ``"drop"`` the events and tell ``on_error`` (stage ``"queue"``).
    - ``on_error``: a callback (or several) given a :class:`ForwardingFailure` for
      every event not delivered; by default a warning on the ``lago_segment`` logger.
    - ``spool``: a SQLite file path for durable delivery (``max_spool_events``
      bounds it; ``on_full`` applies, also when the file cannot be written:
      :class:`~lago_segment.errors.SpoolError`); ``spool_retry_wait`` is the first
      wait before a spooled batch is sent again after a transient failure;
      ``spool_sync`` is ``"normal"`` (survives a killed process) or ``"full"``
      (durable on commit, also through an OS crash or power loss).
    - ``mapping_errors``: ``"raise"`` (default) raises mapping errors from
      ``forward()``; ``"report"`` gives them to ``on_error`` instead.
    - ``handler_retry``: how handlers raising :class:`~lago_segment.RetryError`
      are retried (on the caller's thread); ``sleep`` is the waiting function.
    - ``flush_at_exit``/``atexit_timeout``: at interpreter exit, close with a
      deadline of ``atexit_timeout`` seconds (``None`` or ``flush_at_exit=False``
      disables it).

    >>> with Forwarder(LagoClient(api_key=...), spec=spec) as forwarder:  # doctest: +SKIP
    ...     forwarder.forward({"type": "track", "event": "API Call", ...})
    """

    def __init__(
        self,
        client: SyncClient,
        *,
        spec: Mapper | None = None,
        settings: HandlerSettings | Mapping[str, Any] | None = None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_queue_size: int = 10_000,
        on_full: OnFull = "raise",
        block_timeout: float = 1.0,
        spool: str | os.PathLike[str] | None = None,
        max_spool_events: int = 1_000_000,
        spool_retry_wait: float = 1.0,
        spool_sync: SpoolSync = "normal",
        mapping_errors: Literal["raise", "report"] = "raise",
        handler_retry: HandlerRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        flush_at_exit: bool = True,
        atexit_timeout: float | None = 5.0,
    ) -> None:
        super().__init__(
            client,
            spec=spec,
            settings=settings,
            on_error=on_error,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            on_full=on_full,
            spool=spool,
            max_spool_events=max_spool_events,
            spool_retry_wait=spool_retry_wait,
            spool_sync=spool_sync,
            mapping_errors=mapping_errors,
            handler_retry=handler_retry,
            sleep=sleep,
            max_in_flight=max_in_flight,
        )
        self._client = client
        self._block_timeout = block_timeout
        self._atexit_timeout = atexit_timeout if flush_at_exit else None
        self._reset_threading()
        if self._core.store.depth():
            self._ensure_sender()

    def _reset_threading(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)  # progress: flush(), on_full="block"
        self._work = threading.Condition(self._lock)  # idle senders' wake-ups
        self._threads: list[threading.Thread] = []

    def forward(self, event: SegmentEvent | Mapping[str, Any]) -> None:
        """Map ``event`` (a :class:`~lago_segment.events.SegmentEvent` or a raw Segment
        dict, or a ``{"batch": [...]}`` payload) and queue its Lago events.

        Returns once the events are queued (committed to the spool, with one):
        never waits on the network. Raises :class:`~lago_segment.MappingError` /
        :class:`~lago_segment.InvalidEventPayload` (unless ``mapping_errors="report"``),
        :class:`~lago_segment.QueueFullError` or
        :class:`~lago_segment.errors.SpoolError` (``on_full`` ``"raise"``/``"block"``)
        and :class:`~lago_segment.ForwarderClosedError` after ``close()``.
        """
        items = self._core.map(event)
        if not items or not self._put(items, self._wait_for_room):
            return
        self._ensure_sender()
        # Wake a sender only when one sleeps and a batch is full (they wake by
        # themselves at the flush interval): no lock on forward()'s usual path.
        if self._core.wants_wakeup():
            self._wake(self._core.store.ready() // self._core.batch_size)

    def _wake(self, senders: int) -> None:
        """Wake up to ``senders`` idle senders (one per full batch, not all of them)."""
        with self._lock:
            self._core.wakeups += 1
            self._work.notify(senders)

    def _wait_for_room(self, n: int) -> bool:
        store = self._core.store
        with self._cond:
            return self._cond.wait_for(lambda: store.has_room(n), self._block_timeout)

    def _ensure_sender(self) -> None:
        if self._threads:
            return
        with self._lock:
            if self._threads or self._core.stopping:
                return
            self._threads = [
                threading.Thread(target=self._run, name=f"lago-segment-forwarder-{n}", daemon=True)
                for n in range(self._core.max_in_flight)
            ]
            for thread in self._threads:
                thread.start()

    def _run(self) -> None:
        core = self._core
        while not core.stopping:
            try:
                self._drive(core.sender())
            except Exception:
                # A broken store or client must not end a sender (flush() would
                # then wait in vain): log it, pause one interval, carry on.
                logger.exception("lago_segment: the sender hit an unexpected error")
                with self._lock:
                    if not core.stopping:
                        self._work.wait(self._flush_interval)

    def _drive(self, flow: SenderFlow) -> None:
        """Run one sender flow: wait on :class:`Idle`, post on :class:`Send`."""
        core = self._core
        reply: BatchResult | Exception | None = None
        while True:
            settled = core.settled
            try:
                step = flow.send(reply)
            except StopIteration:
                return
            if core.settled != settled:
                with self._lock:
                    self._cond.notify_all()
            if isinstance(step, Idle):
                with self._lock:
                    if core.wakeups == step.seen:
                        self._work.wait(step.seconds)
                reply = None
                continue
            try:
                reply = self._send(step.events)
            except Exception as exc:
                reply = exc

    def _send(self, events: list[LagoEvent]) -> BatchResult:
        client = self._client
        if isinstance(client, LagoClient):
            # The library's client: drive its flow through the core's gate (one
            # 429 pauses every sender; close() past its deadline stops retries).
            return client._run(self._core.gated(client._core.send_batch(events)))
        return client.send_batch(events)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is settled (delivered or reported).

        Returns False if ``timeout`` seconds passed first. With a spool and Lago
        down, events stay spooled and ``flush`` waits until the timeout. Called
        from an ``on_error`` callback (which runs on a sender thread), it
        cannot wait for the senders and returns False at once.
        """
        core = self._core
        target = self._target()
        with self._lock:
            if core.settled >= target:
                return True
            if not self._threads or threading.current_thread() in self._threads:
                return False
            core.urgent += 1
            core.wakeups += 1
            self._work.notify_all()
            try:
                return self._cond.wait_for(lambda: core.settled >= target, timeout)
            finally:
                core.urgent -= 1

    def close(self, timeout: float | None = 10.0) -> bool:
        """Stop taking events, deliver what is queued (for at most ``timeout`` seconds), stop.

        Returns whether everything was delivered. Once the deadline passes,
        retrying stops and, in memory mode, every event not delivered (queued,
        or in a batch still in flight) is reported to ``on_error`` exactly once
        (stage ``"delivery"``, :class:`~lago_segment.ForwarderClosedError`)
        before ``close`` returns; nothing is reported after. A spool keeps its
        rows, in flight included, for the next forwarder on the file. Calling it
        again does nothing.
        """
        core = self._core
        if core.closed:
            return True
        core.closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.flush(timeout)
        with self._lock:
            core.stopping = True
            core.wakeups += 1
            self._work.notify_all()
            threads = list(self._threads)
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stuck = any(t.is_alive() for t in threads if t is not me)
        # A sender still in a request past the deadline: its batch is ours to report.
        in_flight = core.abandon(own_settling=1 if me in threads else 0)
        self._give_up(in_flight)
        _LIVE.discard(self)
        return done and not stuck

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        # Threads do not survive fork(); locks may be held by threads that are gone.
        self._reset_threading()
        self._core.reset_after_fork()

    def _at_exit(self) -> None:
        if self._atexit_timeout is not None and not self._core.closed:
            self.close(self._atexit_timeout)


class AsyncForwarder(_BaseForwarder):
    """The asyncio forwarder: ``forward()`` is a plain call; tasks send.

    Same options as :class:`Forwarder` (``on_full`` is ``"raise"`` or ``"drop"``:
    blocking the event loop is not an option), with ``max_in_flight`` sender
    tasks. ``forward`` may be called from coroutines and callbacks on the loop,
    or from other threads once the senders run. They start on the first
    ``forward()`` made on a running loop (or on ``async with``). Close it with
    ``await forwarder.aclose()``; there is no ``atexit`` flush for asyncio (the
    loop is gone by then).

    A handler raising :class:`~lago_segment.RetryError` is retried after
    ``await asyncio.sleep(...)`` in a task: ``forward()`` returns at once and the
    loop keeps running; ``flush()`` and ``aclose()`` wait for such retries.
    Passing ``sleep`` makes the retries wait with it, on the caller, instead.

    >>> async with AsyncForwarder(client, spec=spec) as fwd:  # doctest: +SKIP
    ...     fwd.forward(segment_event)
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        spec: Mapper | None = None,
        settings: HandlerSettings | Mapping[str, Any] | None = None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_queue_size: int = 10_000,
        on_full: Literal["raise", "drop"] = "raise",
        spool: str | os.PathLike[str] | None = None,
        max_spool_events: int = 1_000_000,
        spool_retry_wait: float = 1.0,
        spool_sync: SpoolSync = "normal",
        mapping_errors: Literal["raise", "report"] = "raise",
        handler_retry: HandlerRetry | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if on_full not in ("raise", "drop"):
            raise ConfigurationError(
                "on_full", f"must be 'raise' or 'drop' for AsyncForwarder, not {on_full!r}"
            )
        super().__init__(
            client,
            spec=spec,
            settings=settings,
            on_error=on_error,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            on_full=on_full,
            spool=spool,
            max_spool_events=max_spool_events,
            spool_retry_wait=spool_retry_wait,
            spool_sync=spool_sync,
            mapping_errors=mapping_errors,
            handler_retry=handler_retry,
            sleep=sleep or time.sleep,
            max_in_flight=max_in_flight,
        )
        self._client = client
        self._handler_sleep = sleep
        self._reset_asyncio()

    def _reset_asyncio(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._retrying: set[asyncio.Task[None]] = set()

    def forward(self, event: SegmentEvent | Mapping[str, Any]) -> None:
        """Map ``event`` and queue its Lago events; a plain (non-async) call.

        Same contract as :meth:`Forwarder.forward`, except for a handler that
        asks to be retried: ``forward()`` then returns at once, and the event is
        queued (or reported) once a retry succeeds (or fails for good).
        """
        flow = self._core.map_flow(event)
        try:
            wait = next(flow)
        except StopIteration as stop:
            self._accept(stop.value)
            return
        loop = self._running_loop()
        if loop is None or self._handler_sleep is not None:
            # Not on a loop (a plain thread may sleep), or the caller chose how to wait.
            self._accept(self._core.map_rest(flow, wait))
            return
        task = loop.create_task(self._map_later(flow, wait, event))
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    async def _map_later(
        self, flow: MapFlow, wait: Wait, event: SegmentEvent | Mapping[str, Any]
    ) -> None:
        try:
            while True:
                await asyncio.sleep(wait.seconds)
                wait = next(flow)
        except StopIteration as stop:
            items: list[QueuedEvent] = stop.value
        except asyncio.CancelledError:
            # aclose() gave up waiting for the retry: the event is not delivered.
            flow.close()
            self._core.count(rejected=1)
            error = ForwarderClosedError("the forwarder closed before a handler retry ran")
            self._core.report(
                ForwardingFailure(error, "handler", message_id_of(event), None, event)
            )
            raise
        # No caller to raise to any more: a full queue drops and reports.
        self._accept(items, can_raise=False)

    def _accept(self, items: list[QueuedEvent], *, can_raise: bool = True) -> None:
        if not items or not self._put(items, can_raise=can_raise):
            return
        self._ensure_sender()
        if self._core.wants_wakeup():
            self._wake()

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _ensure_sender(self) -> None:
        tasks, current = self._tasks, self._loop
        if (
            tasks
            and current is not None
            and not current.is_closed()
            and not all(t.done() for t in tasks)
        ):
            return  # one set of senders, even when called from another thread's loop
        if self._core.stopping:
            return
        loop = self._running_loop()
        if loop is None:
            return
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._tasks = [
            loop.create_task(self._run(), name=f"lago-segment-forwarder-{n}")
            for n in range(self._core.max_in_flight)
        ]

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._running_loop() is loop:
            self._wake_now()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_now)

    def _wake_now(self) -> None:
        self._core.wakeups += 1
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        core = self._core
        while not core.stopping:
            try:
                await self._drive(core.sender())
            except Exception:
                # A task that died would leave flush() waiting in vain: log it,
                # pause one interval (aclose() cuts it short), carry on.
                logger.exception("lago_segment: the sender hit an unexpected error")
                wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._flush_interval)

    async def _drive(self, flow: SenderFlow) -> None:
        """Run one sender flow: await on :class:`Idle`, post on :class:`Send`."""
        core = self._core
        assert self._wakeup is not None
        assert self._progress is not None
        wakeup, progress = self._wakeup, self._progress
        reply: BatchResult | Exception | None = None
        while True:
            settled = core.settled
            try:
                step = flow.send(reply)
            except StopIteration:
                return
            if core.settled != settled:
                async with progress:
                    progress.notify_all()
            if isinstance(step, Idle):
                if core.wakeups == step.seen:
                    wakeup.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), step.seconds)
                reply = None
                continue
            try:
                reply = await self._send(step.events)
            except Exception as exc:
                reply = exc
            # A client that answers without suspending would otherwise starve the loop.
            await asyncio.sleep(0)

    async def _send(self, events: list[LagoEvent]) -> BatchResult:
        client = self._client
        if isinstance(client, AsyncLagoClient):
            # See Forwarder._send: one 429 pauses every sender; no retry after close.
            return await client._run(self._core.gated(client._core.send_batch(events)))
        return await client.send_batch(events)

    async def start(self) -> None:
        """Start the senders on the running loop (``forward()`` also does it)."""
        self._ensure_sender()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event forwarded so far is settled; False on timeout.

        Handler retries still waiting are waited for first.
        """
        core = self._core
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._retrying:
            _, pending = await asyncio.wait(set(self._retrying), timeout=timeout)
            if pending:
                return False
        target = self._target()
        if core.settled >= target:
            return True
        self._ensure_sender()
        progress = self._progress
        if progress is None:
            return False
        core.urgent += 1
        self._wake()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with progress:
                await asyncio.wait_for(progress.wait_for(lambda: core.settled >= target), left)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            core.urgent -= 1

    async def aclose(self, timeout: float | None = 10.0) -> bool:
        """Stop taking events, deliver what is queued (at most ``timeout`` s), stop the tasks.

        Same guarantees as :meth:`Forwarder.close`: past the deadline, the
        requests in flight are cancelled and every event not delivered is
        reported exactly once before ``aclose`` returns.
        """
        core = self._core
        if core.closed:
            return True
        core.closed = True
        done = await self.flush(timeout)
        core.stopping = True
        self._wake()
        retrying = list(self._retrying)
        for task in retrying:
            task.cancel()
        # Past the deadline: take over the batches in flight before cancelling them.
        in_flight = [] if done else core.abandon()
        tasks = [t for t in self._tasks if not t.done()]
        if not done:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*retrying, *tasks, return_exceptions=True)
        self._give_up(in_flight + core.abandon())
        _LIVE.discard(self)
        return done

    async def __aenter__(self) -> Self:
        self._ensure_sender()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _after_fork_in_child(self) -> None:
        # The parent's loop and tasks do not exist here; the senders restart on the
        # next forward() made on a running loop in the child.
        self._reset_asyncio()
        self._core.reset_after_fork()


# ForwardingError was renamed ForwardingFailure (a record, not an exception).
__getattr__, __dir__ = attach(__name__, {}, deprecated={"ForwardingError": "ForwardingFailure"})
