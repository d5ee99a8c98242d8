"""Segment messages as typed, immutable events, and the parsers that build them.

Every Segment call type has a frozen, slotted class sharing the base
:class:`SegmentEvent`; :func:`parse_event`, :func:`parse_batch` and
:func:`iter_events` validate raw messages into them and raise
:class:`~lago_segment.errors.InvalidEventPayload` naming what is wrong and
where. See ``docs/events.md``.
"""

from lago_segment.events._files import iter_events
from lago_segment.events._models import (
    MAX_BATCH_BYTES,
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    Alias,
    Delete,
    Group,
    Identify,
    Page,
    Screen,
    SegmentEvent,
    Track,
)
from lago_segment.events._parser import parse_batch, parse_event

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "Alias",
    "Delete",
    "Group",
    "Identify",
    "Page",
    "Screen",
    "SegmentEvent",
    "Track",
    "iter_events",
    "parse_batch",
    "parse_event",
]
