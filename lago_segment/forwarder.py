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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ._forwarder_core import (
    Core,
    ErrorCallback,
    ForwarderStats,
    ForwardingError,
    Item,
    Mapper,
    MemoryStore,
    OnFull,
    Stage,
    Store,
    log_error,
    message_id_of,
)
from ._handlers import Handler, HandlerRetry, Settings
from ._spool import SpoolStore
from .errors import (
    ConfigurationError,
    ForwarderClosedError,
    ForwarderError,
    HandlerError,
    InvalidEventPayload,
    MappingError,
)
from .lago import LagoEvent

if TYPE_CHECKING:
    from typing_extensions import Self

    from .client import BatchResult
    from .events import SegmentEvent

__all__ = [
    "AsyncForwarder",
    "ErrorCallback",
    "Forwarder",
    "ForwarderStats",
    "ForwardingError",
    "Handler",
    "HandlerRetry",
    "Mapper",
    "Settings",
    "log_error",
]

logger = logging.getLogger("lago_segment")


class _SyncClient(Protocol):
    def send_batch(self, events: Iterable[LagoEvent], /) -> BatchResult: ...


class _AsyncClient(Protocol):
    def send_batch(self, events: Iterable[LagoEvent], /) -> Awaitable[BatchResult]: ...


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


class _BaseForwarder:
    """What both forwarders share: construction, handlers, stats (all I/O-free)."""

    def __init__(
        self,
        *,
        spec: Mapper | None,
        settings: Settings | Mapping[str, Any] | None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None,
        batch_size: int,
        flush_interval: float,
        max_queue_size: int,
        on_full: OnFull,
        spool: str | os.PathLike[str] | None,
        max_spool_events: int,
        spool_retry_wait: float,
        mapping_errors: Literal["raise", "report"],
        handler_retry: HandlerRetry | None,
        sleep: Callable[[float], None],
    ) -> None:
        if flush_interval <= 0:
            raise ConfigurationError("flush_interval", f"must be positive, not {flush_interval}")
        store: Store
        if spool is None:
            store = MemoryStore(max_queue_size)
        else:
            store = SpoolStore(spool, max_events=max_spool_events, retry_wait=spool_retry_wait)
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
        )
        self._flush_interval = flush_interval
        # Rows a spool kept from an earlier process are ours to deliver.
        self._core.count(enqueued=store.depth())
        self._settled = 0
        _LIVE.add(self)

    @property
    def settings(self) -> Settings:
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
        self._core.report(ForwardingError(error, stage, message_id_of(event), None, event))

    def _target(self) -> int:
        # The store's count, not stats().enqueued: forward() counts after put(),
        # and the sender may settle an event before that count catches up.
        return self._core.store.admitted()

    def _report_unsent(self, items: list[Item]) -> None:
        error = ForwarderClosedError("the forwarder closed before this event was delivered")
        self._core.store.ack(items)
        self._core.count(failed=len(items))
        self._core.metrics.items("failed", items, error)
        for item in items:
            self._core.report(
                ForwardingError(error, "delivery", item.message_id, item.event, item.source)
            )

    def _drain_unsent(self, *, close_store: bool = True) -> None:
        """After close: report what memory mode still holds (a spool keeps its rows)."""
        store = self._core.store
        if isinstance(store, MemoryStore):
            while items := store.take(1000):
                self._report_unsent(items)
        elif close_store:
            store.close()
        elif isinstance(store, SpoolStore):
            store.release()

    def _after_fork_in_child(self) -> None:
        raise NotImplementedError

    def _at_exit(self) -> None:
        pass


class Forwarder(_BaseForwarder):
    """Forward Segment events to Lago from any thread; a background thread sends them.

    ``forward()`` maps on the caller's thread and returns without network I/O.
    Options:

    - ``batch_size`` (1-100) events per request; ``flush_interval`` seconds a
      partial batch waits.
    - ``max_queue_size`` events held in memory; when full, ``on_full`` says what
      ``forward()`` does: ``"raise"`` :class:`~lago_segment.QueueFullError`,
      ``"block"`` up to ``block_timeout`` seconds for room then raise, or
      ``"drop"`` the events and tell ``on_error`` (stage ``"queue"``).
    - ``on_error``: a callback (or several) given a :class:`ForwardingError` for
      every event not delivered; by default a warning on the ``lago_segment`` logger.
    - ``spool``: a SQLite file path for durable delivery (``max_spool_events``
      bounds it; ``on_full`` applies); ``spool_retry_wait`` is the first wait
      before a spooled batch is sent again after a transient failure.
    - ``mapping_errors``: ``"raise"`` (default) raises mapping errors from
      ``forward()``; ``"report"`` gives them to ``on_error`` instead.
    - ``handler_retry``: how handlers raising :class:`~lago_segment.RetryError`
      are retried (on the caller's thread); ``sleep`` is the waiting function.
    - ``flush_at_exit``/``atexit_timeout``: at interpreter exit, flush for at most
      ``atexit_timeout`` seconds (``None`` or ``flush_at_exit=False`` disables it).

    >>> with Forwarder(LagoClient(api_key=...), spec=spec) as forwarder:  # doctest: +SKIP
    ...     forwarder.forward({"type": "track", "event": "API Call", ...})
    """

    def __init__(
        self,
        client: _SyncClient,
        *,
        spec: Mapper | None = None,
        settings: Settings | Mapping[str, Any] | None = None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue_size: int = 10_000,
        on_full: OnFull = "raise",
        block_timeout: float = 1.0,
        spool: str | os.PathLike[str] | None = None,
        max_spool_events: int = 1_000_000,
        spool_retry_wait: float = 1.0,
        mapping_errors: Literal["raise", "report"] = "raise",
        handler_retry: HandlerRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        flush_at_exit: bool = True,
        atexit_timeout: float | None = 5.0,
    ) -> None:
        super().__init__(
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
            mapping_errors=mapping_errors,
            handler_retry=handler_retry,
            sleep=sleep,
        )
        self._client = client
        self._block_timeout = block_timeout
        self._atexit_timeout = atexit_timeout if flush_at_exit else None
        self._reset_threading()
        if self._core.store.depth():
            self._ensure_sender()

    def _reset_threading(self) -> None:
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._urgent = 0
        self._stopping = False
        self._settled = 0
        self._idle = False

    def forward(self, event: SegmentEvent | Mapping[str, Any]) -> None:
        """Map ``event`` (a :class:`~lago_segment.events.SegmentEvent` or a raw Segment
        dict, or a ``{"batch": [...]}`` payload) and queue its Lago events.

        Returns once the events are queued (committed to the spool, with one):
        never waits on the network. Raises :class:`~lago_segment.MappingError` /
        :class:`~lago_segment.InvalidEventPayload` (unless ``mapping_errors="report"``),
        :class:`~lago_segment.QueueFullError` (``on_full`` ``"raise"``/``"block"``)
        and :class:`~lago_segment.ForwarderClosedError` after ``close()``.
        """
        items = self._core.map(event)
        if not items:
            return
        store = self._core.store
        if not store.put(items):
            if not (self._core.on_full == "block" and self._wait_for_room(len(items))):
                self._core.overflow(items)
                return
            if not store.put(items):
                self._core.overflow(items)
                return
        self._core.accepted(items)
        self._ensure_sender()
        # Wake the sender only when it sleeps and a batch is full (it wakes by
        # itself at the flush interval): no lock on forward()'s usual path.
        if self._idle and store.ready() >= self._core.batch_size:
            with self._cond:
                self._cond.notify_all()

    def _wait_for_room(self, n: int) -> bool:
        store = self._core.store
        with self._cond:
            return self._cond.wait_for(lambda: store.has_room(n), self._block_timeout)

    def _ensure_sender(self) -> None:
        if self._thread is not None:
            return
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="lago-segment-forwarder", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._send_until_stopped()
            except Exception:
                # A broken store or client must not end the sender (flush() would
                # then wait in vain): log it, pause one interval, carry on.
                logger.exception("lago_segment: the sender hit an unexpected error")
                with self._cond:
                    if not self._stopping:
                        self._cond.wait(self._flush_interval)

    def _send_until_stopped(self) -> None:
        core = self._core
        deadline = time.monotonic() + self._flush_interval
        while True:
            with self._cond:
                # Idle before looking at the store: a forward() that fills a batch
                # after the look then sees _idle and wakes us (no lost wakeup).
                self._idle = True
                while not self._stopping:
                    now = time.monotonic()
                    wait = core.next_wait(
                        urgent=self._urgent > 0,
                        now=now,
                        deadline=deadline,
                        interval=self._flush_interval,
                    )
                    if wait is None:
                        break
                    if not core.store.ready():
                        deadline = now + wait
                    self._cond.wait(wait)
                self._idle = False
                if self._stopping:
                    return
            items = core.store.take(core.batch_size)
            if not items:
                continue
            try:
                result: BatchResult | Exception = self._client.send_batch([i.event for i in items])
            except Exception as exc:
                result = exc
            settled = core.settle(items, result)
            deadline = time.monotonic() + self._flush_interval
            with self._cond:
                self._settled += settled
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is settled (delivered or reported).

        Returns False if ``timeout`` seconds passed first. With a spool and Lago
        down, events stay spooled and ``flush`` waits until the timeout. Called
        from an ``on_error`` callback (which runs on the sender thread), it
        cannot wait for the sender and returns False at once.
        """
        target = self._target()
        with self._cond:
            if self._settled >= target:
                return True
            if self._thread is None or self._thread is threading.current_thread():
                return False
            self._urgent += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._settled >= target, timeout)
            finally:
                self._urgent -= 1

    def close(self, timeout: float | None = 10.0) -> bool:
        """Stop taking events, deliver what is queued (for at most ``timeout`` seconds), stop.

        Returns whether everything was delivered. Events still in memory after
        the deadline are reported to ``on_error`` (stage ``"delivery"``,
        :class:`~lago_segment.ForwarderClosedError`); a spool keeps its rows for
        the next forwarder on the file. Calling it again does nothing.
        """
        if self._core.closed:
            return True
        self._core.closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        stuck = False
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            # Still in a request: it will stop after it, so leave the spool open.
            stuck = thread.is_alive()
        self._drain_unsent(close_store=not stuck)
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


def _no_wait(seconds: float) -> None:
    """The async forwarder's default handler-retry wait: none (see its docstring)."""


class AsyncForwarder(_BaseForwarder):
    """The asyncio forwarder: ``forward()`` is a plain call; one task sends.

    Same options as :class:`Forwarder` (``on_full`` is ``"raise"`` or ``"drop"``:
    blocking the event loop is not an option). ``forward`` may be called from
    coroutines and callbacks on the loop, or from other threads once the sender
    runs. The sender task starts on the first ``forward()`` made on a running
    loop (or on ``async with``). Close it with ``await forwarder.aclose()``;
    there is no ``atexit`` flush for asyncio (the loop is gone by then).

    A handler raising :class:`~lago_segment.RetryError` is retried at once,
    without waiting by default: ``forward()`` runs on the event loop, and a
    sleep there would stall every coroutine. Pass ``sleep`` only with care.

    >>> async with AsyncForwarder(client, spec=spec) as fwd:  # doctest: +SKIP
    ...     fwd.forward(segment_event)
    """

    def __init__(
        self,
        client: _AsyncClient,
        *,
        spec: Mapper | None = None,
        settings: Settings | Mapping[str, Any] | None = None,
        on_error: ErrorCallback | Iterable[ErrorCallback] | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue_size: int = 10_000,
        on_full: Literal["raise", "drop"] = "raise",
        spool: str | os.PathLike[str] | None = None,
        max_spool_events: int = 1_000_000,
        spool_retry_wait: float = 1.0,
        mapping_errors: Literal["raise", "report"] = "raise",
        handler_retry: HandlerRetry | None = None,
        sleep: Callable[[float], None] = _no_wait,
    ) -> None:
        if on_full not in ("raise", "drop"):
            raise ConfigurationError(
                "on_full", f"must be 'raise' or 'drop' for AsyncForwarder, not {on_full!r}"
            )
        super().__init__(
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
            mapping_errors=mapping_errors,
            handler_retry=handler_retry,
            sleep=sleep,
        )
        self._client = client
        self._reset_asyncio()

    def _reset_asyncio(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._urgent = 0
        self._stopping = False
        self._settled = 0

    def forward(self, event: SegmentEvent | Mapping[str, Any]) -> None:
        """Map ``event`` and queue its Lago events; a plain (non-async) call.

        Same contract as :meth:`Forwarder.forward`.
        """
        items = self._core.map(event)
        if not items:
            return
        if not self._core.store.put(items):
            self._core.overflow(items)
            return
        self._core.accepted(items)
        self._ensure_sender()
        if self._core.store.ready() >= self._core.batch_size:
            self._wake()

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _ensure_sender(self) -> None:
        task, current = self._task, self._loop
        if task is not None and current is not None and not (task.done() or current.is_closed()):
            return  # one sender, even when called from another thread's loop
        if self._stopping:
            return
        loop = self._running_loop()
        if loop is None:
            return
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task = loop.create_task(self._run(), name="lago-segment-forwarder")

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return
        if self._running_loop() is loop:
            wakeup.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wakeup.set)

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while not self._stopping:
            try:
                await self._send_until_stopped()
            except Exception:
                # A task that died would leave flush() waiting in vain: log it,
                # pause one interval (aclose() cuts it short), carry on.
                logger.exception("lago_segment: the sender hit an unexpected error")
                wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._flush_interval)

    async def _send_until_stopped(self) -> None:
        core = self._core
        assert self._wakeup is not None
        assert self._progress is not None
        wakeup, progress = self._wakeup, self._progress
        deadline = time.monotonic() + self._flush_interval
        while True:
            while not self._stopping:
                now = time.monotonic()
                wait = core.next_wait(
                    urgent=self._urgent > 0,
                    now=now,
                    deadline=deadline,
                    interval=self._flush_interval,
                )
                if wait is None:
                    break
                if not core.store.ready():
                    deadline = now + wait
                wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), wait)
            if self._stopping:
                return
            items = core.store.take(core.batch_size)
            if not items:
                continue
            try:
                result: BatchResult | Exception = await self._client.send_batch(
                    [i.event for i in items]
                )
            except asyncio.CancelledError:
                # aclose() gave up waiting: in memory these would vanish, so report
                # them (a spool keeps them for the next forwarder).
                if isinstance(core.store, MemoryStore):
                    self._report_unsent(items)
                raise
            except Exception as exc:
                result = exc
            self._settled += core.settle(items, result)
            deadline = time.monotonic() + self._flush_interval
            async with progress:
                progress.notify_all()
            # A client that answers without suspending would otherwise starve the loop.
            await asyncio.sleep(0)

    async def start(self) -> None:
        """Start the sender on the running loop (``forward()`` also does it)."""
        self._ensure_sender()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is settled; False on timeout."""
        target = self._target()
        if self._settled >= target:
            return True
        self._ensure_sender()
        progress = self._progress
        if progress is None:
            return False
        self._urgent += 1
        self._wake()
        try:
            async with progress:
                await asyncio.wait_for(progress.wait_for(lambda: self._settled >= target), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._urgent -= 1

    async def aclose(self, timeout: float | None = 10.0) -> bool:
        """Stop taking events, deliver what is queued (at most ``timeout`` s), stop the task.

        Same guarantees as :meth:`Forwarder.close`.
        """
        if self._core.closed:
            return True
        self._core.closed = True
        done = await self.flush(timeout)
        self._stopping = True
        self._wake()
        task = self._task
        if task is not None and not task.done():
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drain_unsent()
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
        # The parent's loop and task do not exist here; the sender restarts on the
        # next forward() made on a running loop in the child.
        self._reset_asyncio()
        self._core.reset_after_fork()
