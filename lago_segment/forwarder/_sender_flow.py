"""The senders' side of a forwarder, I/O-free: the sender flow and its steps.

A shell (a thread or an asyncio task per sender) drives
:meth:`Senders.sender`: it waits when the flow yields :class:`Idle`, posts
the batch when it yields :class:`Send`, and sends the reply back. Here: the
batching decision, the bookkeeping of batches in flight (so that ``close()``
can take them over exactly once), pausing every sender on a 429, and gating
the library client's own retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import attrs
import httpx

from lago_segment._retry import is_testing
from lago_segment.client._flows import Call, Flow, Wait
from lago_segment.client._responses import server_wait
from lago_segment.client._results import BatchResult
from lago_segment.errors import LagoRateLimitError
from lago_segment.forwarder._outcomes import Outcomes
from lago_segment.forwarder._records import ForwardingFailure
from lago_segment.forwarder._stores import QueuedEvent, SetAside
from lago_segment.lago import LagoEvent

T = TypeVar("T")


@attrs.frozen(slots=True)
class Idle:
    """A step of the sender flow: wait ``seconds``, or less if woken.

    ``seen`` is :attr:`Senders.wakeups` as the flow read it before looking at the
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


class Abandoned(Exception):
    """Raised inside a client flow once ``close()``'s deadline has passed: no more retries."""


class Senders(Outcomes):
    """The senders' decisions and shared bookkeeping; a part of
    :class:`~lago_segment.forwarder._state.ForwardingState`, which sets the fields
    above and calls :meth:`_reset_senders` for the rest."""

    batch_size: int
    flush_interval: float
    clock: Callable[[], float]
    pauses: bool
    """Whether a 429 pauses the senders at all (see :meth:`pause`)."""

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

    def wants_wakeup(self) -> bool:
        """Whether a shell should wake its idle senders now: a full batch is waiting."""
        return self.idle > 0 and self.store.ready() >= self.batch_size

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
