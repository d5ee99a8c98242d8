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

from lago_segment._lazy import attach_stub

__getattr__, __dir__, __all__ = attach_stub(__name__)
