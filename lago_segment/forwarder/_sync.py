"""The thread forwarder: :class:`Forwarder`.

``forward()`` maps on the caller's thread and puts the Lago events in the
store; ``max_in_flight`` daemon threads drive the senders' flows of the
:class:`~lago_segment.forwarder._state.ForwardingState` with a
:class:`~lago_segment.client.LagoClient` (or any client with ``send_batch``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from lago_segment._types import Mapper, SyncClient
from lago_segment.client import LagoClient
from lago_segment.forwarder._base import _LIVE, BaseForwarder
from lago_segment.forwarder._handlers import HandlerRetry, HandlerSettings
from lago_segment.forwarder._options import DEFAULT_MAX_IN_FLIGHT, ForwarderOptions, OnFull
from lago_segment.forwarder._records import FailureCallback
from lago_segment.forwarder._sender_flow import Idle, SenderFlow
from lago_segment.forwarder._spool import SpoolSync
from lago_segment.lago import LagoEvent

if TYPE_CHECKING:
    import os

    from typing_extensions import Self

    from lago_segment.client import BatchResult
    from lago_segment.events import SegmentEvent

__all__ = ["Forwarder"]

logger = logging.getLogger("lago_segment")


class Forwarder(BaseForwarder):
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
        on_error: FailureCallback | Iterable[FailureCallback] | None = None,
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
            sleep=sleep,
        )
        super().__init__(client, options)
        self._client = client
        self._block_timeout = block_timeout
        self._atexit_timeout = atexit_timeout if flush_at_exit else None
        self._reset_threading()
        if self._state.store.depth():
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
        items = self._state.map(event)
        if not items or not self._put(items, self._wait_for_room):
            return
        self._ensure_sender()
        # Wake a sender only when one sleeps and a batch is full (they wake by
        # themselves at the flush interval): no lock on forward()'s usual path.
        if self._state.wants_wakeup():
            self._wake(self._state.store.ready() // self._state.batch_size)

    def _wake(self, senders: int) -> None:
        """Wake up to ``senders`` idle senders (one per full batch, not all of them)."""
        with self._lock:
            self._state.wakeups += 1
            self._work.notify(senders)

    def _wait_for_room(self, n: int) -> bool:
        store = self._state.store
        with self._cond:
            return self._cond.wait_for(lambda: store.has_room(n), self._block_timeout)

    def _ensure_sender(self) -> None:
        if self._threads:
            return
        with self._lock:
            if self._threads or self._state.stopping:
                return
            self._threads = [
                threading.Thread(target=self._run, name=f"lago-segment-forwarder-{n}", daemon=True)
                for n in range(self._state.max_in_flight)
            ]
            for thread in self._threads:
                thread.start()

    def _run(self) -> None:
        state = self._state
        while not state.stopping:
            try:
                self._drive(state.sender())
            except Exception:
                # A broken store or client must not end a sender (flush() would
                # then wait in vain): log it, pause one interval, carry on.
                logger.exception("lago_segment: the sender hit an unexpected error")
                with self._lock:
                    if not state.stopping:
                        self._work.wait(self._flush_interval)

    def _drive(self, flow: SenderFlow) -> None:
        """Run one sender flow: wait on :class:`Idle`, post on :class:`Send`."""
        state = self._state
        reply: BatchResult | Exception | None = None
        while True:
            settled = state.settled
            try:
                step = flow.send(reply)
            except StopIteration:
                return
            if state.settled != settled:
                with self._lock:
                    self._cond.notify_all()
            if isinstance(step, Idle):
                with self._lock:
                    if state.wakeups == step.seen:
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
            # The library's client: drive its flow through the state's gate (one
            # 429 pauses every sender; close() past its deadline stops retries).
            return client._run(self._state.gated(client._flows.send_batch(events)))
        return client.send_batch(events)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far is settled (delivered or reported).

        Returns False if ``timeout`` seconds passed first. With a spool and Lago
        down, events stay spooled and ``flush`` waits until the timeout. Called
        from an ``on_error`` callback (which runs on a sender thread), it
        cannot wait for the senders and returns False at once.
        """
        state = self._state
        target = self._target()
        with self._lock:
            if state.settled >= target:
                return True
            if not self._threads or threading.current_thread() in self._threads:
                return False
            state.urgent += 1
            state.wakeups += 1
            self._work.notify_all()
            try:
                return self._cond.wait_for(lambda: state.settled >= target, timeout)
            finally:
                state.urgent -= 1

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
        state = self._state
        if state.closed:
            return True
        state.closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self.flush(timeout)
        with self._lock:
            state.stopping = True
            state.wakeups += 1
            self._work.notify_all()
            threads = list(self._threads)
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stuck = any(t.is_alive() for t in threads if t is not me)
        # A sender still in a request past the deadline: its batch is ours to report.
        in_flight = state.abandon(own_settling=1 if me in threads else 0)
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
        self._state.reset_after_fork()

    def _at_exit(self) -> None:
        if self._atexit_timeout is not None and not self._state.closed:
            self.close(self._atexit_timeout)
