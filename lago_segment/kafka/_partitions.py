"""The partitions a consumer-group member owns: offset commits, backpressure, rebalances.

:class:`OwnedPartitions` follows the group's assignment (librdkafka's
rebalance callbacks), commits the settled positions the
:class:`~lago_segment.kafka.OffsetTracker` reports, and pauses consumption
while too many messages are unsettled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ._offsets import OffsetTracker, PartitionKey

logger = logging.getLogger("lago_segment")


class OwnedPartitions:
    """The assigned partitions of one consumer, their commits and their pause state.

    ``settle_all(timeout)`` waits for everything handed on so far to settle (a
    revoked partition's messages get ``revoke_timeout`` seconds); ``count``
    adds to the consumer's counters.
    """

    def __init__(
        self,
        kafka: Any,
        consumer: Any,
        tracker: OffsetTracker,
        *,
        max_unsettled: int,
        revoke_timeout: float,
        settle_all: Callable[[float], bool],
        count: Callable[..., None],
    ) -> None:
        self._kafka = kafka
        self._consumer = consumer
        self._tracker = tracker
        self._max_unsettled = max_unsettled
        self._revoke_timeout = revoke_timeout
        self._settle_all = settle_all
        self._count = count
        #: Rebound, never mutated: the stats read it from other threads.
        self.keys: frozenset[PartitionKey] = frozenset()
        #: True while the backlog holds consumption.
        self.paused = False
        self._repause = False

    def commit(self, partitions: set[PartitionKey] | None = None) -> bool:
        """Commit the settled positions of owned partitions; False if Kafka refused."""
        owned = set(self.keys) if partitions is None else partitions & self.keys
        positions = self._tracker.positions(owned)
        if not positions:
            return True
        offsets = [self._kafka.TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except self._kafka.KafkaException as exc:
            # Typically a rebalance in progress: the positions stay and are tried again.
            logger.warning("lago_segment: offset commit failed: %s", exc)
            return False
        self._tracker.committed(positions)
        self._count(committed=1)
        return True

    def final_commit(self, attempts: int = 10) -> None:
        """Commit what is settled, retrying while the group rebalances (a peer leaving)."""
        for _ in range(attempts):
            if self.commit():
                return
            # Serves the rebalance; a message it returns is not tracked, so not committed.
            self._consumer.poll(0.5)

    def backpressure(self) -> None:
        """Pause every partition while too many messages are unsettled; resume at half."""
        waiting = self._tracker.unsettled()
        if self._repause:
            # librdkafka keeps a partition's pause across a rebalance: once the new
            # assignment is in effect, make every partition match our state.
            self._repause = False
            if self.paused:
                self._consumer.pause(self._partitions())
            else:
                self._consumer.resume(self._partitions())
        if not self.paused and waiting >= self._max_unsettled:
            self.paused = True
            self._consumer.pause(self._partitions())
            logger.info("lago_segment: %d messages unsettled; consumption paused", waiting)
        elif self.paused and waiting <= self._max_unsettled // 2:
            self.paused = False
            # Resume exactly after the last message read: nothing skipped, whatever
            # the client had prefetched before the pause.
            following = self._tracker.next_offsets()
            for tp in self._partitions():
                offset = following.get((tp.topic, tp.partition))
                if offset is not None:
                    tp.offset = offset
                    self._consumer.seek(tp)
            self._consumer.resume(self._partitions())
            logger.info("lago_segment: consumption resumed")

    def _partitions(self) -> list[Any]:
        return [self._kafka.TopicPartition(t, p) for t, p in sorted(self.keys)]

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """librdkafka's callback: ``partitions`` are ours now."""
        self.keys = self.keys | {(tp.topic, tp.partition) for tp in partitions}
        self._repause = True

    def on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """librdkafka's callback: settle and commit what we can before ``partitions`` move on."""
        keys = {(tp.topic, tp.partition) for tp in partitions}
        if self._tracker.unsettled_in(keys):
            self.commit(keys)  # what is settled already, before the group moves on
            self._settle_all(self._revoke_timeout)
        self.commit(keys)
        abandoned = self._tracker.release(keys)
        if abandoned:
            logger.warning(
                "lago_segment: %d unsettled messages given up with partitions %s; "
                "their next owner reads them again",
                abandoned,
                sorted(keys),
            )
        self.keys = self.keys - keys

    def on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """librdkafka's callback: ``partitions`` were taken away without a revoke."""
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._tracker.release(keys)
        self.keys = self.keys - keys
