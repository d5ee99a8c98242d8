"""Which offsets may be committed: per partition, the contiguous prefix of settled messages.

No Kafka here (h11-style, testable with plain calls). The consumer opens a
:class:`Ticket` for every message it reads, adds one to it per Lago event the
message became, and settles each when Lago stored it, already had it, it was
dead-lettered, or there was nothing to send. A partition's commit position
is the offset just past its longest settled prefix, in the order the
messages were read, so a commit never passes a message still in flight.
"""

from __future__ import annotations

import collections
import threading

import attrs

__all__ = ["OffsetTracker", "PartitionKey", "Ticket"]

#: A partition: (topic, partition number).
PartitionKey = tuple[str, int]


class _Partition:
    __slots__ = ("abandoned", "committed", "done_until", "key", "last", "open")

    def __init__(self, key: PartitionKey) -> None:
        self.key = key
        self.open: collections.deque[Ticket] = collections.deque()
        # The offset just past the settled prefix (None: nothing read yet).
        self.done_until: int | None = None
        self.committed: int | None = None
        self.abandoned = False
        self.last = -1


@attrs.define(slots=True, eq=False)
class Ticket:
    """One message read from a partition, and how many of its parts are unsettled."""

    partition: _Partition
    offset: int
    pending: int = 1  # the consumer's own hold, released once the message is handed on


class OffsetTracker:
    """Per-partition settlement of read messages; thread-safe.

    >>> tracker = OffsetTracker()
    >>> first, second = tracker.track("t", 0, 10), tracker.track("t", 0, 11)
    >>> tracker.settle(second)
    >>> tracker.positions()   # 10 is unsettled: nothing may be committed yet
    {}
    >>> tracker.settle(first)
    >>> tracker.positions()
    {('t', 0): 12}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[PartitionKey, _Partition] = {}
        self._unsettled = 0

    def track(self, topic: str, partition: int, offset: int) -> Ticket:
        """Open a ticket for a message just read (held until :meth:`settle` releases it)."""
        key = (topic, partition)
        with self._lock:
            part = self._partitions.get(key)
            if part is not None and offset <= part.last:
                # The partition's stream restarted (re-assigned, or a message read
                # before a revocation came after it): what was read before belongs
                # to the old stream and must never move the new one's position.
                part.abandoned = True
                self._unsettled -= sum(1 for t in part.open if t.pending > 0)
                part = None
            if part is None:
                part = self._partitions[key] = _Partition(key)
            ticket = Ticket(part, offset)
            part.last = offset
            part.open.append(ticket)
            self._unsettled += 1
            return ticket

    def add(self, ticket: Ticket, count: int = 1) -> None:
        """``count`` more parts of the ticket's message must settle before it is done."""
        with self._lock:
            ticket.pending += count

    def settle(self, ticket: Ticket, count: int = 1) -> None:
        """``count`` parts of the message are settled (ignored once its partition is gone)."""
        with self._lock:
            part = ticket.partition
            if part.abandoned or ticket.pending <= 0:
                return
            ticket.pending -= count
            if ticket.pending > 0:
                return
            self._unsettled -= 1
            while part.open and part.open[0].pending <= 0:
                part.done_until = part.open.popleft().offset + 1

    def positions(self, partitions: set[PartitionKey] | None = None) -> dict[PartitionKey, int]:
        """Commit positions that moved since :meth:`committed` last recorded them."""
        with self._lock:
            return {
                key: part.done_until
                for key, part in self._partitions.items()
                if part.done_until is not None
                and part.done_until != part.committed
                and (partitions is None or key in partitions)
            }

    def committed(self, positions: dict[PartitionKey, int]) -> None:
        """Record that ``positions`` were committed."""
        with self._lock:
            for key, offset in positions.items():
                part = self._partitions.get(key)
                if part is not None:
                    part.committed = offset

    def next_offsets(self) -> dict[PartitionKey, int]:
        """Per partition, the offset just past the last message read (where reading resumes)."""
        with self._lock:
            return {key: part.last + 1 for key, part in self._partitions.items() if part.last >= 0}

    def release(self, partitions: set[PartitionKey]) -> int:
        """Forget partitions no longer ours; returns how many messages were abandoned.

        Their unsettled messages will be read again by the partition's next
        owner; late settlements of their tickets are ignored.
        """
        abandoned = 0
        with self._lock:
            for key in partitions:
                part = self._partitions.pop(key, None)
                if part is None:
                    continue
                part.abandoned = True
                gone = sum(1 for t in part.open if t.pending > 0)
                abandoned += gone
                self._unsettled -= gone
        return abandoned

    def unsettled(self) -> int:
        """Messages read and not yet settled, over every partition held."""
        with self._lock:
            return self._unsettled

    def unsettled_in(self, partitions: set[PartitionKey]) -> int:
        """Messages read and not yet settled in ``partitions``."""
        with self._lock:
            return sum(
                1
                for key in partitions
                if (part := self._partitions.get(key)) is not None
                for t in part.open
                if t.pending > 0
            )
