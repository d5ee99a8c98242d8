"""The asyncio forwarder: :class:`AsyncForwarder`.

``forward()`` is a plain call that maps and queues; ``max_in_flight`` asyncio
tasks drive the senders' flows of the
:class:`~lago_segment.forwarder._state.ForwardingState` with an
:class:`~lago_segment.client.AsyncLagoClient` (or any client with an async
``send_batch``). A handler's retries wait in a task, not on the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from lago_segment._reporting import message_id_of
from lago_segment._types import AsyncClient, Mapper
from lago_segment.client import AsyncLagoClient
from lago_segment.client._flows import Wait
from lago_segment.errors import ConfigurationError, ForwarderClosedError
from lago_segment.forwarder._base import _LIVE, BaseForwarder
from lago_segment.forwarder._handlers import HandlerRetry, HandlerSettings
from lago_segment.forwarder._intake import MapFlow
from lago_segment.forwarder._options import DEFAULT_MAX_IN_FLIGHT, ForwarderOptions
from lago_segment.forwarder._records import FailureCallback, ForwardingFailure
from lago_segment.forwarder._sender_flow import Idle, SenderFlow
from lago_segment.forwarder._spool import SpoolSync
from lago_segment.forwarder._stores import QueuedEvent
from lago_segment.lago import LagoEvent

if TYPE_CHECKING:
    import os

    from typing_extensions import Self

    from lago_segment.client import BatchResult
    from lago_segment.events import SegmentEvent

__all__ = ["AsyncForwarder"]

logger = logging.getLogger("lago_segment")


class AsyncForwarder(BaseForwarder):
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
        on_error: FailureCallback | Iterable[FailureCallback] | None = None,
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
        options = ForwarderOptions(
            spec=spec,
            settings=settings,
            on_error=on_error,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_in_flight=max_in_flight,
            max_queue_size=max_queue_size,
            on_full=on_full,
            spool=spool,
            max_spool_events=max_spool_events,
            spool_retry_wait=spool_retry_wait,
            spool_sync=spool_sync,
            mapping_errors=mapping_errors,
            handler_retry=handler_retry,
            sleep=sleep or time.sleep,
        )
        super().__init__(client, options)
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
        flow = self._state.map_flow(event)
        try:
            wait = next(flow)
        except StopIteration as stop:
            self._accept(stop.value)
            return
        loop = self._running_loop()
        if loop is None or self._handler_sleep is not None:
            # Not on a loop (a plain thread may sleep), or the caller chose how to wait.
            self._accept(self._state.map_rest(flow, wait))
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
            self._state.count(rejected=1)
            error = ForwarderClosedError("the forwarder closed before a handler retry ran")
            self._state.report(
                ForwardingFailure(error, "handler", message_id_of(event), None, event)
            )
            raise
        # No caller to raise to any more: a full queue drops and reports.
        self._accept(items, can_raise=False)

    def _accept(self, items: list[QueuedEvent], *, can_raise: bool = True) -> None:
        if not items or not self._put(items, can_raise=can_raise):
            return
        self._ensure_sender()
        if self._state.wants_wakeup():
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
        if self._state.stopping:
            return
        loop = self._running_loop()
        if loop is None:
            return
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._tasks = [
            loop.create_task(self._run(), name=f"lago-segment-forwarder-{n}")
            for n in range(self._state.max_in_flight)
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
        self._state.wakeups += 1
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        state = self._state
        while not state.stopping:
            try:
                await self._drive(state.sender())
            except Exception:
                # A task that died would leave flush() waiting in vain: log it,
                # pause one interval (aclose() cuts it short), carry on.
                logger.exception("lago_segment: the sender hit an unexpected error")
                wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), self._flush_interval)

    async def _drive(self, flow: SenderFlow) -> None:
        """Run one sender flow: await on :class:`Idle`, post on :class:`Send`."""
        state = self._state
        assert self._wakeup is not None
        assert self._progress is not None
        wakeup, progress = self._wakeup, self._progress
        reply: BatchResult | Exception | None = None
        while True:
            settled = state.settled
            try:
                step = flow.send(reply)
            except StopIteration:
                return
            if state.settled != settled:
                async with progress:
                    progress.notify_all()
            if isinstance(step, Idle):
                if state.wakeups == step.seen:
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
            return await client._run(self._state.gated(client._flows.send_batch(events)))
        return await client.send_batch(events)

    async def start(self) -> None:
        """Start the senders on the running loop (``forward()`` also does it)."""
        self._ensure_sender()

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event forwarded so far is settled; False on timeout.

        Handler retries still waiting are waited for first.
        """
        state = self._state
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._retrying:
            _, pending = await asyncio.wait(set(self._retrying), timeout=timeout)
            if pending:
                return False
        target = self._target()
        if state.settled >= target:
            return True
        self._ensure_sender()
        progress = self._progress
        if progress is None:
            return False
        state.urgent += 1
        self._wake()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with progress:
                await asyncio.wait_for(progress.wait_for(lambda: state.settled >= target), left)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            state.urgent -= 1

    async def aclose(self, timeout: float | None = 10.0) -> bool:
        """Stop taking events, deliver what is queued (at most ``timeout`` s), stop the tasks.

        Same guarantees as :meth:`Forwarder.close`: past the deadline, the
        requests in flight are cancelled and every event not delivered is
        reported exactly once before ``aclose`` returns.
        """
        state = self._state
        if state.closed:
            return True
        state.closed = True
        done = await self.flush(timeout)
        state.stopping = True
        self._wake()
        retrying = list(self._retrying)
        for task in retrying:
            task.cancel()
        # Past the deadline: take over the batches in flight before cancelling them.
        in_flight = [] if done else state.abandon()
        tasks = [t for t in self._tasks if not t.done()]
        if not done:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*retrying, *tasks, return_exceptions=True)
        self._give_up(in_flight + state.abandon())
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
        self._state.reset_after_fork()
