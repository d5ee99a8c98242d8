"""Where queued events wait for the sender: the :class:`Store` protocol and memory."""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from lago_segment.lago import LagoEvent

if TYPE_CHECKING:
    pass


@attrs.define(slots=True, eq=False)
class QueuedEvent:
    """One queued Lago event and where it came from."""

    event: LagoEvent
    message_id: str | None = None
    source: Any = None
    row_id: int | None = None


class Store(Protocol):
    """Where enqueued events wait for the sender: memory or a SQLite spool.

    Every method is thread-safe and fast (no network).
    """

    def put(self, items: Sequence[QueuedEvent]) -> bool:
        """Take all of ``items`` (True) or none when there is no room (False)."""
        ...

    def take(self, n: int) -> list[QueuedEvent]:
        """Up to ``n`` events not yet handed out, oldest first."""
        ...

    def ack(self, items: Sequence[QueuedEvent]) -> None:
        """Forget ``items``: Lago has them, or they failed for good."""
        ...

    def retry_later(self, items: Sequence[QueuedEvent]) -> bool:
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

    def pop_set_aside(self) -> list[SetAside]:
        """Rows :meth:`take` found unreadable and set aside since the last call (a spool)."""
        ...

    def close(self) -> None:
        """Release resources (files)."""
        ...


@attrs.frozen(slots=True)
class SetAside:
    """A stored event that could not be read back: kept aside, never sent, reported once."""

    error: Exception
    message_id: str | None = None


class MemoryStore:
    """The in-memory queue: a deque bounded by ``max_size``."""

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._queue: collections.deque[QueuedEvent] = collections.deque()
        self._in_flight = 0
        self._admitted = 0
        self._lock = threading.Lock()

    def put(self, items: Sequence[QueuedEvent]) -> bool:
        with self._lock:
            if len(self._queue) + self._in_flight + len(items) > self._max:
                return False
            self._queue.extend(items)
            self._admitted += len(items)
            return True

    def take(self, n: int) -> list[QueuedEvent]:
        with self._lock:
            count = min(n, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight += count
            return batch

    def ack(self, items: Sequence[QueuedEvent]) -> None:
        with self._lock:
            self._in_flight -= len(items)

    def retry_later(self, items: Sequence[QueuedEvent]) -> bool:
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

    def pop_set_aside(self) -> list[SetAside]:
        return []

    def close(self) -> None:
        pass
