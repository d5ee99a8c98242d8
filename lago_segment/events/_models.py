"""The Segment event models: one frozen, slotted class per call type."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import attrs

from lago_segment._time import (
    render_iso,
)
from lago_segment.errors import InvalidEventPayload

#: Segment's limit on one message, in bytes of JSON.
MAX_MESSAGE_BYTES = 32 * 1024
#: Segment's limit on one batch request, in bytes of JSON.
MAX_BATCH_BYTES = 500 * 1024
#: How deeply objects and arrays may nest in one message.
MAX_DEPTH = 64


_TOO_DEEP = f"message nests deeper than {MAX_DEPTH} levels"

_EMPTY: Mapping[str, Any] = {}


def _wire_name(python_name: str) -> str:
    head, *rest = python_name.split("_")
    return head + "".join(part.title() for part in rest)


@attrs.frozen(kw_only=True)
class SegmentEvent:
    """A Segment message; the fields common to every type.

    Do not build this class directly: use one of its subclasses, or
    :func:`parse_event`. Python names are snake_case; :attr:`payload` and
    :meth:`to_dict` give the camelCase wire form.

    ``user_id``/``anonymous_id``/``message_id`` are always strings (a numeric
    id on the wire is accepted and held as its decimal string here, as
    analytics-python does; the wire payload keeps the number).
    """

    type: ClassVar[str] = ""

    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: datetime | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    received_at: datetime | None = None
    context: Mapping[str, Any] = attrs.field(factory=dict)
    integrations: Mapping[str, Any] = attrs.field(factory=dict)
    channel: str | None = None
    version: int | float | str | None = None
    #: Top-level keys no field names, kept verbatim (wire name -> value).
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    # The wire dict: the parsed one, or one built from the fields on first use.
    # init=False so that attrs.evolve() never carries a stale one over.
    _payload: dict[str, Any] | None = attrs.field(init=False, default=None, eq=False, repr=False)

    @property
    def effective_timestamp(self) -> datetime | None:
        """The instant to bill at: ``timestamp``, else ``originalTimestamp``,
        else ``receivedAt``, else ``sentAt`` (None if the message has none)."""
        for ts in (self.timestamp, self.original_timestamp, self.received_at, self.sent_at):
            if ts is not None:
                return ts
        return None

    @property
    def payload(self) -> Mapping[str, Any]:
        """The wire (camelCase) JSON object, without copying. Read-only by convention.

        For a parsed event it is the parsed dict; for an event built in code
        (or via :func:`attrs.evolve`) it is built from the fields once.
        """
        payload = self._payload
        if payload is None:
            payload = self._build_payload()
            object.__setattr__(self, "_payload", payload)
        return payload

    def to_dict(self) -> dict[str, Any]:
        """A fresh deep copy of the wire form: ``parse_event(d).to_dict() == d``.

        Raises :class:`~lago_segment.errors.InvalidEventPayload` if the payload
        nests deeper than :data:`MAX_DEPTH` (possible only for an event parsed
        from a mapping, whose depth is not checked when parsed).
        """
        return copy_json(self.payload)  # type: ignore[no-any-return]

    def _build_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for a in attrs.fields(type(self)):
            name = a.name
            if name in ("extra", "_payload"):
                continue
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = render_iso(value)
            elif value is None or (name in ("context", "integrations") and not value):
                continue
            elif isinstance(value, Mapping):
                value = dict(value)
            out[_wire_name(name)] = value
        out.update(self.extra)
        return out


@attrs.frozen(kw_only=True)
class Track(SegmentEvent):
    """A ``track`` call: the user did ``event``, with ``properties``.

    >>> from lago_segment.events import Track
    >>> Track(event="Seat Added", user_id="u1", properties={"seats": 2}).payload["event"]
    'Seat Added'
    """

    type: ClassVar[str] = "track"
    event: str
    properties: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Identify(SegmentEvent):
    """An ``identify`` call: who the user is (``traits``)."""

    type: ClassVar[str] = "identify"
    traits: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Group(SegmentEvent):
    """A ``group`` call: the user belongs to ``group_id`` (with the group's ``traits``)."""

    type: ClassVar[str] = "group"
    group_id: str
    traits: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Page(SegmentEvent):
    """A ``page`` call: the user saw a web page."""

    type: ClassVar[str] = "page"
    name: str | None = None
    category: str | None = None
    properties: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Screen(SegmentEvent):
    """A ``screen`` call: the user saw an app screen."""

    type: ClassVar[str] = "screen"
    name: str | None = None
    category: str | None = None
    properties: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Alias(SegmentEvent):
    """An ``alias`` call: ``previous_id`` and ``user_id`` are the same user."""

    type: ClassVar[str] = "alias"
    previous_id: str


@attrs.frozen(kw_only=True)
class Delete(SegmentEvent):
    """A ``delete`` message (Segment webhooks' deletion request for ``user_id``)."""

    type: ClassVar[str] = "delete"


def copy_json(value: Any, budget: int = MAX_DEPTH) -> Any:
    # Bounded as _too_deep is: a mapping given to parse_event is not walked
    # when parsed, so a too-deep one is caught here, before Python's stack is.
    if isinstance(value, Mapping):
        if budget < 0:
            raise InvalidEventPayload(_TOO_DEEP)
        return {k: copy_json(v, budget - 1) for k, v in value.items()}
    if type(value) is list:
        if budget < 0:
            raise InvalidEventPayload(_TOO_DEEP)
        return [copy_json(v, budget - 1) for v in value]
    return value
