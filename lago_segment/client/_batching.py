"""Cutting events into batch requests under Lago's size and byte limits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from lago_segment import _json
from lago_segment.lago import LagoEvent

#: Lago refuses batches of more than 100 events (``too_many_events``).
MAX_BATCH_SIZE = 100
#: Default cap on one batch request body; a larger batch is split in halves.
DEFAULT_MAX_BATCH_BYTES = 512 * 1024


def dumps(payload: dict[str, Any]) -> bytes:
    # Compact, and no circularity check: we built the payload, it has no cycles
    # (that check costs ~15% of serialization, the client's main CPU cost).
    return _json.dumps(payload)


def event_body(event: LagoEvent) -> bytes:
    """The body of ``POST /api/v1/events``."""
    return dumps({"event": event.to_dict()})


def batch_body(dicts: Sequence[dict[str, Any]]) -> bytes:
    """The body of ``POST /api/v1/events/batch`` for already-rendered events."""
    return dumps({"events": dicts})


@attrs.frozen(slots=True)
class Batch:
    """Events bound for one batch request, with their rendered dicts and body."""

    events: Sequence[LagoEvent]
    dicts: Sequence[dict[str, Any]]
    body: bytes


def plan_batches(events: Iterable[LagoEvent], max_size: int, max_bytes: int) -> Iterator[Batch]:
    """Split events into batches of at most ``max_size`` events and ``max_bytes`` bytes.

    Each event is rendered once. A chunk whose body is too large is split in
    halves until it fits; an event too large on its own is still sent alone
    (Lago decides), never dropped.
    """
    chunk: list[LagoEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == max_size:
            yield from _fit(chunk, [e.to_dict() for e in chunk], max_bytes)
            chunk = []
    if chunk:
        yield from _fit(chunk, [e.to_dict() for e in chunk], max_bytes)


def _fit(
    events: Sequence[LagoEvent], dicts: Sequence[dict[str, Any]], max_bytes: int
) -> Iterator[Batch]:
    body = batch_body(dicts)
    if len(body) <= max_bytes or len(events) == 1:
        yield Batch(events, dicts, body)
        return
    half = len(events) // 2
    yield from _fit(events[:half], dicts[:half], max_bytes)
    yield from _fit(events[half:], dicts[half:], max_bytes)
