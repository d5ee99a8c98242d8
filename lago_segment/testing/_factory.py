"""Valid Segment messages for tests, deterministic, with overrides."""

from __future__ import annotations

import copy
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from lago_segment._types import SEGMENT_CALL_TYPES

__all__ = ["SegmentEventFactory", "segment_event"]

_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)

#: snake_case spellings accepted for the camelCase wire keys.
_ALIASES = {
    "message_id": "messageId",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "group_id": "groupId",
    "previous_id": "previousId",
    "original_timestamp": "originalTimestamp",
    "sent_at": "sentAt",
    "received_at": "receivedAt",
}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SegmentEventFactory:
    """Builds valid Segment messages as plain dicts (the wire form, camelCase keys).

    Every message has what analytics-python would send: ``messageId``,
    ``userId``, ``timestamp``, ``originalTimestamp``, ``sentAt``,
    ``receivedAt``, ``context.library`` and ``integrations``, plus the fields
    its type requires. Output is deterministic: the n-th message of a factory
    with a given ``seed`` is always the same; each message is one second after
    the previous one, starting at 2024-01-01T00:00:00Z.

    Keyword overrides replace top-level keys, by wire name (``userId=``) or
    snake_case (``user_id=``); a value of :data:`OMIT` removes the key (to
    build an invalid message on purpose).

    >>> make = SegmentEventFactory(seed=1)
    >>> event = make("track", event="API Call", properties={"calls": 3})
    >>> event["type"], event["event"], event["properties"]
    ('track', 'API Call', {'calls': 3})
    >>> make("identify", user_id="u-7")["userId"]
    'u-7'
    """

    OMIT: Any = object()
    """Pass as an override's value to remove that key from the message."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)
        self._count = 0

    def __call__(self, type: str = "track", **overrides: Any) -> dict[str, Any]:
        """Build the next message of ``type`` with ``overrides`` applied."""
        if type not in SEGMENT_CALL_TYPES:
            raise ValueError(f"type must be one of {', '.join(SEGMENT_CALL_TYPES)}, not {type!r}")
        self._count += 1
        n = self._count
        moment = _EPOCH + timedelta(seconds=n - 1)
        message: dict[str, Any] = {
            "type": type,
            "messageId": str(uuid.UUID(int=self._random.getrandbits(128), version=4)),
            "userId": f"user-{n}",
            "timestamp": _iso(moment),
            "originalTimestamp": _iso(moment),
            "sentAt": _iso(moment + timedelta(milliseconds=50)),
            "receivedAt": _iso(moment + timedelta(milliseconds=100)),
            "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
            "integrations": {},
            "channel": "server",
            "version": 2,
        }
        message.update(copy.deepcopy(_BODIES[type]))
        if type == "group":
            message["groupId"] = f"group-{n}"
        elif type == "alias":
            message["previousId"] = f"anonymous-{n}"
        for key, value in overrides.items():
            wire = _ALIASES.get(key, key)
            if value is self.OMIT:
                message.pop(wire, None)
            else:
                message[wire] = value
        return message

    def batch(self, count: int, type: str = "track", **overrides: Any) -> list[dict[str, Any]]:
        """``count`` messages of one type, each with the same overrides."""
        return [self(type, **overrides) for _ in range(count)]


_BODIES: dict[str, dict[str, Any]] = {
    "track": {"event": "API Call", "properties": {"calls": 1}},
    "identify": {"traits": {"email": "jane@example.com", "plan": "pro"}},
    "group": {"traits": {"name": "Example Inc.", "seats": 5}},
    "page": {"name": "Pricing", "category": "Docs", "properties": {"path": "/pricing"}},
    "screen": {"name": "Dashboard", "properties": {"variation": "blue"}},
    "alias": {},
    "delete": {},
}

segment_event = SegmentEventFactory()
"""A shared factory (seed 0); in tests prefer the ``segment_event`` fixture (fresh per test).

>>> segment_event("page")["type"]
'page'
"""
