"""The consumer's counters: :class:`Counters` (thread-safe) and :class:`ConsumerStats`."""

from __future__ import annotations

import threading

import attrs

from ._offsets import PartitionKey

#: What :class:`Counters` counts (every :class:`ConsumerStats` field that is a plain count).
COUNTED = (
    "consumed",
    "mapped",
    "skipped",
    "dead_lettered",
    "delivered",
    "duplicates",
    "rejected",
    "committed",
    "outage_retries",
)


@attrs.frozen(slots=True)
class ConsumerStats:
    """A snapshot of a :class:`SegmentConsumer`'s counters.

    Messages: ``consumed`` = read from Kafka; each ends ``mapped`` (became Lago
    events), ``skipped`` (no rule matched) or ``dead_lettered`` (malformed:
    not JSON, not a Segment event, too large, or not mappable). Lago events:
    ``delivered`` (duplicates included; ``duplicates`` is that subset) or
    ``rejected`` (refused by Lago for good, dead-lettered). ``unsettled``
    counts messages read whose fate is not known yet; ``committed`` the
    offset commits made; ``outage_retries`` the batches sent again after Lago
    was unreachable; ``paused`` is True while the backlog holds consumption.
    """

    consumed: int = 0
    mapped: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    unsettled: int = 0
    committed: int = 0
    outage_retries: int = 0
    paused: bool = False
    partitions: tuple[PartitionKey, ...] = ()

    def line(self) -> str:
        """The one-line status the ``consume`` command prints."""
        parts = ", ".join(f"{t}[{p}]" for t, p in self.partitions) or "none"
        return (
            f"consumed {self.consumed} messages: {self.mapped} mapped, {self.skipped} skipped, "
            f"{self.dead_lettered} dead-lettered; Lago events: {self.delivered} stored "
            f"({self.duplicates} duplicates), {self.rejected} rejected; "
            f"{self.unsettled} unsettled; {self.committed} commits; "
            f"{self.outage_retries} outage retries{'; PAUSED' if self.paused else ''}; "
            f"partitions: {parts}"
        )


class Counters:
    """The :data:`COUNTED` counts, added to from any thread."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(COUNTED, 0)
        self._lock = threading.Lock()

    def add(self, **deltas: int) -> None:
        """Add each ``name=delta`` to its count."""
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    def snapshot(self) -> dict[str, int]:
        """The counts as they are now."""
        with self._lock:
            return dict(self._counts)
