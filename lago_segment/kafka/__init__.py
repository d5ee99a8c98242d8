"""Kafka in both directions (the ``lago-segment[kafka]`` extra, on confluent-kafka).

- :class:`SegmentConsumer`: a consumer-group member reading Segment events
  from topics, delivering them to Lago, committing only settled offsets
  (the ``lago-segment consume`` command runs one).
- :class:`RawEventsSink`: produces Lago events to a self-hosted Lago's
  raw-events topic in lago-api's own format (:func:`raw_event_message`); a
  stand-in for :class:`~lago_segment.client.LagoClient` under a forwarder or
  the consumer.
- :class:`OffsetTracker`: the I/O-free bookkeeping of which offsets may be
  committed.

See ``docs/scaling-out.md``. Importing this package is cheap: the names are
loaded on first use, and confluent-kafka only when a consumer or a sink is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lago_segment._lazy import attach

if TYPE_CHECKING:
    from ._consumer import SegmentConsumer
    from ._offsets import OffsetTracker, Ticket
    from ._sink import KafkaDeliveryError, RawEventsSink, raw_event_message
    from ._stats import ConsumerStats

__all__ = [
    "ConsumerStats",
    "KafkaDeliveryError",
    "OffsetTracker",
    "RawEventsSink",
    "SegmentConsumer",
    "Ticket",
    "raw_event_message",
]

_LAZY = {
    "ConsumerStats": "._stats",
    "SegmentConsumer": "._consumer",
    "OffsetTracker": "._offsets",
    "Ticket": "._offsets",
    "KafkaDeliveryError": "._sink",
    "RawEventsSink": "._sink",
    "raw_event_message": "._sink",
}


__getattr__, __dir__ = attach(__name__, _LAZY)
