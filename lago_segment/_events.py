"""Segment messages: the models and the parsers behind :mod:`lago_segment.events`.

Parsing is hand-written on purpose. Every event the library forwards goes
through :func:`parse_event`, whose budget is "at most 3x ``json.loads``"; a
structuring framework (cattrs) walks every value and costs several times that.
So the hot path is plain code: one ``json.loads``, a cheap depth bound, a few
dict lookups and ``isinstance`` checks, and ``datetime.fromisoformat``.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import IO, Any, ClassVar

import attrs

from . import _json
from .errors import InvalidEventPayload

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

logger = logging.getLogger("lago_segment.events")

#: Segment's limit on one message, in bytes of JSON.
MAX_MESSAGE_BYTES = 32 * 1024
#: Segment's limit on one batch request, in bytes of JSON.
MAX_BATCH_BYTES = 500 * 1024
#: How deeply objects and arrays may nest in one message.
MAX_DEPTH = 64

_UTC = timezone.utc
_TOO_DEEP = f"message nests deeper than {MAX_DEPTH} levels"
_EMPTY: Mapping[str, Any] = {}


# --------------------------------------------------------------------------- timestamps

# Python 3.10's fromisoformat rejects "Z" and fractions of other than 3 or 6
# digits; this pattern covers the RFC 3339 forms it misses.
_ISO_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?"
    r"\s*(?:([Zz])|([+-]\d{2}(?::?\d{2})?))?"
)


_Z_NEEDS_REWRITE = sys.version_info < (3, 11)


def _parse_iso(text: str) -> datetime | None:
    """An aware datetime for an ISO-8601 string (naive means UTC), or None."""
    dt: datetime | None
    # Most Segment timestamps end in "Z", which 3.10's fromisoformat rejects
    # (3.11's takes it as it is).
    fast = text[:-1] + "+00:00" if _Z_NEEDS_REWRITE and text[-1:] == "Z" else text
    try:
        dt = datetime.fromisoformat(fast)
    except ValueError:
        dt = _parse_iso_slow(text)
        if dt is None:
            return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=_UTC)
    return dt


def _parse_iso_slow(text: str) -> datetime | None:
    m = _ISO_RE.fullmatch(text)
    if m is None:
        return None
    date, time, frac, zulu, offset = m.groups()
    # Sub-microsecond digits cannot be held by datetime: truncated.
    frac = "" if frac is None else "." + (frac + "00000")[:6]
    if zulu:
        offset = "+00:00"
    elif offset is not None and len(offset) == 3:
        offset += ":00"
    elif offset is not None and ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    try:
        return datetime.fromisoformat(f"{date}T{time}{frac}{offset or ''}")
    except ValueError:
        return None


def _render_iso(dt: datetime) -> str:
    """ISO-8601 UTC with a ``Z``: milliseconds, or microseconds when needed."""
    dt = dt.astimezone(_UTC)
    us = dt.microsecond
    frac = f"{us // 1000:03d}" if us % 1000 == 0 else f"{us:06d}"
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{frac}Z"


# --------------------------------------------------------------------------- models


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
        return _copy_json(self.payload)  # type: ignore[no-any-return]

    def _build_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for a in attrs.fields(type(self)):
            name = a.name
            if name in ("extra", "_payload"):
                continue
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = _render_iso(value)
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


# --------------------------------------------------------------------------- checks

_JSON_TYPE = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _kind(value: object) -> str:
    return _JSON_TYPE.get(type(value)) or type(value).__name__


def _id(d: Mapping[str, Any], key: str) -> str | None:
    """An id field: a string, or an integer held as its decimal string."""
    value = d.get(key)
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise InvalidEventPayload(f"{key} must be a string, not {_kind(value)}", f"$.{key}")


def _required_id(d: Mapping[str, Any], key: str, type_: str) -> str:
    value = _id(d, key)
    if not value:
        raise InvalidEventPayload(f'{type_} event is missing "{key}"', f"$.{key}")
    return value


def _str(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is None or type(value) is str:
        return value
    raise InvalidEventPayload(f"{key} must be a string, not {_kind(value)}", f"$.{key}")


def _obj(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = d.get(key)
    if type(value) is dict:
        return value
    if value is None:
        return {}  # a fresh one: events must not share a mutable default
    if isinstance(value, Mapping):
        return value
    raise InvalidEventPayload(f"{key} must be an object, not {_kind(value)}", f"$.{key}")


def _ts(d: Mapping[str, Any], key: str) -> datetime | None:
    value = d.get(key)
    if value is None:
        return None
    if type(value) is str:
        dt = _parse_iso(value)
        if dt is None:
            raise InvalidEventPayload(f"{key} is not ISO-8601", f"$.{key}")
        return dt
    if isinstance(value, datetime):  # a mapping built in Python may hold one
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    raise InvalidEventPayload(f"{key} must be an ISO-8601 string, not {_kind(value)}", f"$.{key}")


def _too_deep(value: object, budget: int) -> bool:
    """True if ``value`` nests containers more than ``budget`` levels deep."""
    if budget < 0:
        return True
    if type(value) is dict:
        values: Iterable[object] = value.values()
    elif type(value) is list:
        values = value
    else:
        return False
    budget -= 1
    for v in values:
        t = type(v)
        if (t is dict or t is list) and _too_deep(v, budget):
            return True
    return False


def _brackets(text: str | bytes) -> int:
    """An upper bound on nesting depth: the number of opening brackets."""
    if isinstance(text, bytes):
        # One pass in C that drops them, rather than one count() per bracket.
        return len(text) - len(text.translate(None, b"{["))
    return text.count("{") + text.count("[")


def _loads(data: str | bytes, limit: int, what: str) -> Any:
    """``json.loads`` with Segment's size limit, UTF-8 and depth checks."""
    if isinstance(data, str):
        size = len(data)
        if size * 4 > limit:  # only then can the UTF-8 form be over the limit
            size = len(data.encode("utf-8", "surrogatepass"))
    else:
        size = len(data)
    if size > limit:
        raise InvalidEventPayload(f"{what} is {size} bytes, over the {limit}-byte limit")
    if not isinstance(data, str):
        # Decoded here rather than by json.loads, which would also take UTF-16
        # and UTF-32 and let encoded surrogates through: Segment sends UTF-8.
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEventPayload(f"{what} is not valid UTF-8") from None
    try:
        value = _json.loads(data)
    except RecursionError:
        raise InvalidEventPayload(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise InvalidEventPayload(f"{what} is not valid JSON: {exc}") from None
    return value


# --------------------------------------------------------------------------- parsing


def _common(d: Mapping[str, Any]) -> dict[str, Any]:
    # Runs for every parsed message: the common, valid case is checked inline
    # and only anything unusual goes through the helpers, which raise the
    # precise error (or convert a numeric id).
    get = d.get
    message_id = get("messageId")
    if message_id is not None and (type(message_id) is not str or len(message_id) > 100):
        message_id = _message_id(d)
    user_id = get("userId")
    if user_id is not None and type(user_id) is not str:
        user_id = _id(d, "userId")
    anonymous_id = get("anonymousId")
    if anonymous_id is not None and type(anonymous_id) is not str:
        anonymous_id = _id(d, "anonymousId")
    context = get("context")
    if type(context) is not dict:
        context = _obj(d, "context")
    integrations = get("integrations")
    if type(integrations) is not dict:
        integrations = _obj(d, "integrations")
    channel = get("channel")
    if channel is not None and type(channel) is not str:
        channel = _str(d, "channel")
    version = get("version")
    if version is not None and type(version) not in _VERSION_TYPES:
        version = _version(d)
    return {
        "message_id": message_id,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "timestamp": _ts(d, "timestamp") if "timestamp" in d else None,
        "original_timestamp": _ts(d, "originalTimestamp") if "originalTimestamp" in d else None,
        "sent_at": _ts(d, "sentAt") if "sentAt" in d else None,
        "received_at": _ts(d, "receivedAt") if "receivedAt" in d else None,
        "context": context,
        "integrations": integrations,
        "channel": channel,
        "version": version,
    }


_VERSION_TYPES = (int, float, str)


def _message_id(d: Mapping[str, Any]) -> str | None:
    value = _id(d, "messageId")
    if value is not None and len(value) > 100:
        raise InvalidEventPayload("messageId is longer than 100 characters", "$.messageId")
    return value


def _version(d: Mapping[str, Any]) -> int | float | str | None:
    value = d.get("version")
    if value is None or type(value) in (int, float, str):
        return value
    raise InvalidEventPayload(
        f"version must be a number or a string, not {_kind(value)}", "$.version"
    )


# Each type's checker validates the fields only that type has and adds them
# to ``f``, the common fields already checked; _from_dict builds the event.


def _track(d: Mapping[str, Any], f: dict[str, Any]) -> None:
    event = d.get("event")
    if event is None or event == "":
        raise InvalidEventPayload('track event is missing "event"', "$.event")
    if type(event) is not str:
        raise InvalidEventPayload(f"event must be a string, not {_kind(event)}", "$.event")
    f["event"] = event
    f["properties"] = _obj(d, "properties")


def _identify(d: Mapping[str, Any], f: dict[str, Any]) -> None:
    f["traits"] = _obj(d, "traits")


def _group(d: Mapping[str, Any], f: dict[str, Any]) -> None:
    f["group_id"] = _required_id(d, "groupId", "group")
    f["traits"] = _obj(d, "traits")


def _page_or_screen(d: Mapping[str, Any], f: dict[str, Any]) -> None:
    f["name"] = _str(d, "name")
    f["category"] = _str(d, "category")
    f["properties"] = _obj(d, "properties")


def _alias(d: Mapping[str, Any], f: dict[str, Any]) -> None:
    f["previous_id"] = _required_id(d, "previousId", "alias")
    if not f["user_id"]:
        raise InvalidEventPayload('alias event is missing "userId"', "$.userId")


def _delete(d: Mapping[str, Any], f: dict[str, Any]) -> None:
    if not f["user_id"]:
        raise InvalidEventPayload('delete event is missing "userId"', "$.userId")


_Checker = Callable[[Mapping[str, Any], dict[str, Any]], None]
_BUILDERS: dict[str, tuple[type[SegmentEvent], _Checker]] = {
    "track": (Track, _track),
    "identify": (Identify, _identify),
    "group": (Group, _group),
    "page": (Page, _page_or_screen),
    "screen": (Screen, _page_or_screen),
    "alias": (Alias, _alias),
    "delete": (Delete, _delete),
}
_KNOWN: dict[str, frozenset[str]] = {
    name: frozenset(["type"] + [_wire_name(a.name) for a in attrs.fields(cls) if a.name[0] != "_"])
    - {"extra"}
    for name, (cls, _) in _BUILDERS.items()
}


# alias and delete check userId themselves.
_ID_OPTIONAL = frozenset(["alias", "delete"])


def _from_dict(d: dict[str, Any]) -> SegmentEvent:
    """Build an event from a parsed message dict, which the event then owns."""
    type_ = d.get("type")
    if type(type_) is not str:
        if type_ is None:
            raise InvalidEventPayload('message is missing "type"', "$.type")
        raise InvalidEventPayload(f"type must be a string, not {_kind(type_)}", "$.type")
    key = type_ if type_ in _BUILDERS else type_.lower()
    try:
        cls, check = _BUILDERS[key]
    except KeyError:
        raise InvalidEventPayload(f'unknown type "{type_}"', "$.type") from None
    fields = _common(d)
    known = _KNOWN[key]
    fields["extra"] = {} if known.issuperset(d) else {k: v for k, v in d.items() if k not in known}
    check(d, fields)
    if key not in _ID_OPTIONAL and not (fields["user_id"] or fields["anonymous_id"]):
        raise InvalidEventPayload("neither userId nor anonymousId")
    event = cls(**fields)
    # The event owns the message dict: to_dict() hands it back without rebuilding it.
    # (attrs' keyword __init__ costs ~1.5 µs here, about 10% of parse_event and far
    # inside benchmarks/bench_parse.py's 3x-json.loads target: no bypass needed.)
    object.__setattr__(event, "_payload", d)
    return event


def _as_bytes(data: Any, limit: int, what: str) -> Any:
    """A bytes-like ``data`` (bytearray, memoryview, ...) as ``bytes``; else ``data``."""
    try:
        view = memoryview(data)
    except TypeError:
        return data  # not bytes-like: the caller's type checks refuse it
    with view:
        # Refused before copying: the size check after the copy would refuse it anyway.
        if view.nbytes > limit:
            raise InvalidEventPayload(
                f"{what} is {view.nbytes} bytes, over the {limit}-byte limit"
            )
        return view.tobytes()


def _check_object(value: object) -> dict[str, Any]:
    if type(value) is dict:
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise InvalidEventPayload(f"message must be a JSON object, not {_kind(value)}")


def parse_event(data: Mapping[str, Any] | str | bytes | bytearray | memoryview) -> SegmentEvent:
    """Parse and validate one Segment message; dispatch on its ``type``.

    ``data`` is the message as JSON (``str``, or UTF-8 ``bytes``, ``bytearray``
    or ``memoryview``, at most 32 KB) or as a mapping (copied at the top
    level: later changes to the caller's dict do not change the event; nested
    values are shared).

    >>> from lago_segment.events import parse_event
    >>> ev = parse_event(b'{"type": "track", "event": "Seat Added", "userId": "u1"}')
    >>> type(ev).__name__, ev.event, ev.user_id
    ('Track', 'Seat Added', 'u1')

    Raises :class:`~lago_segment.errors.InvalidEventPayload` naming the
    problem and its path, e.g. ``track event is missing "event" @ $.event``.
    """
    if not isinstance(data, (str, bytes, Mapping)):
        data = _as_bytes(data, MAX_MESSAGE_BYTES, "message")
    if isinstance(data, (bytes, str)):
        value = _loads(data, MAX_MESSAGE_BYTES, "message")
        if type(value) is not dict:
            raise InvalidEventPayload(f"message must be a JSON object, not {_kind(value)}")
        if _brackets(data) > MAX_DEPTH and _too_deep(value, MAX_DEPTH):
            raise InvalidEventPayload(_TOO_DEEP)
        return _from_dict(value)
    d = _check_object(data)
    if d is data:
        d = dict(d)
    # No depth walk here (it was 13% of forward()): nothing on the way to Lago
    # recurses into a mapping's values without a bound; to_dict() checks depth.
    return _from_dict(d)


def parse_batch(
    data: Mapping[str, Any] | str | bytes | bytearray | memoryview | list[Any],
) -> list[SegmentEvent]:
    """Parse a batch: a Segment HTTP API body or a JSON array of messages.

    A body is ``{"batch": [...], "context"?, "integrations"?}``; as Segment
    does, the top-level ``context`` and ``integrations`` are merged into each
    item one level deep: the item gets every top-level key its own
    ``context`` (``integrations``) lacks, and its own keys win; nested
    objects such as ``context.library`` are taken whole, not merged.

    The whole batch is at most 500 KB when given as ``str`` or bytes-like (then
    also each message at most 32 KB, measured as compact JSON). An error
    names the item in :attr:`~lago_segment.errors.InvalidEventPayload.index`.
    """
    if not isinstance(data, (str, bytes, Mapping, list)):
        data = _as_bytes(data, MAX_BATCH_BYTES, "batch")
    value: Any = data
    check_size = False
    if isinstance(data, (bytes, str)):
        # No item can be over the per-message limit if the whole batch is not.
        check_size = len(data) > MAX_MESSAGE_BYTES
        value = _loads(data, MAX_BATCH_BYTES, "batch")
    top_context: Mapping[str, Any] = _EMPTY
    top_integrations: Mapping[str, Any] = _EMPTY
    if isinstance(value, Mapping):
        items = value.get("batch")
        if type(items) is not list:
            if items is None:
                raise InvalidEventPayload('batch is missing "batch"', "$.batch")
            raise InvalidEventPayload(f"batch must be an array, not {_kind(items)}", "$.batch")
        top_context = _obj(value, "context")
        top_integrations = _obj(value, "integrations")
    elif type(value) is list:
        items = value
    else:
        raise InvalidEventPayload(f"batch must be a JSON object or array, not {_kind(value)}")
    events = []
    for index, item in enumerate(items):
        try:
            d = _check_object(item)
            if d is item:
                d = dict(d)
            if top_context or top_integrations:
                for key, top in (("context", top_context), ("integrations", top_integrations)):
                    if top:
                        own = _obj(d, key)
                        d[key] = {**top, **own}
            if check_size:
                # surrogatepass: a str batch may hold a lone surrogate ("\ud800"),
                # which plain UTF-8 cannot encode; it is measured, not refused here.
                try:
                    text = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
                except RecursionError:  # measured before the depth check
                    raise InvalidEventPayload(_TOO_DEEP) from None
                size = len(text.encode("utf-8", "surrogatepass"))
                if size > MAX_MESSAGE_BYTES:
                    raise InvalidEventPayload(
                        f"message is {size} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
                    )
            # Only what was parsed from text: a mapping is not walked (see parse_event).
            if value is not data and _too_deep(d, MAX_DEPTH):
                raise InvalidEventPayload(_TOO_DEEP)
            events.append(_from_dict(d))
        except InvalidEventPayload as exc:
            raise exc.located(index=index) from None
    return events


# --------------------------------------------------------------------------- files

_GZIP_MAGIC = b"\x1f\x8b"
OnError = Callable[[InvalidEventPayload], None]


def iter_events(
    source: str | os.PathLike[str] | IO[str] | IO[bytes],
    *,
    strict: bool = True,
    on_error: OnError | None = None,
) -> Iterator[SegmentEvent]:
    """Stream events from JSON lines: a path (``.gz`` read transparently) or an open file.

    One message per line; blank lines are skipped. A path is gzip-decompressed
    when it ends in ``.gz`` or starts with the gzip magic bytes; an open file
    is read as it is (wrap a compressed one in :func:`gzip.open` yourself).
    Lines are read one at a time, never more than 32 KB of one line at once.

    On a bad line: with ``on_error``, it is called with the error (which
    carries :attr:`~lago_segment.errors.InvalidEventPayload.line`, 1-based)
    and reading goes on; else with ``strict=True`` the error is raised; else
    (``strict=False``) it is logged as a warning and reading goes on. A line
    holding a whole batch (``{"batch": [...]}``) is not accepted: it is a bad
    line (use :func:`parse_batch` on it).

    A stream that cannot be read on (a truncated or corrupt ``.gz``, a file
    named ``.gz`` that is not gzip, a text-mode file holding bytes its
    encoding cannot decode) raises :class:`~lago_segment.errors.InvalidEventPayload`
    naming the file and the line where reading stopped, whatever ``strict``
    and ``on_error`` say: nothing after that point can be read.

    >>> import io
    >>> from lago_segment.events import iter_events
    >>> lines = io.BytesIO(b'{"type":"identify","userId":"u1"}\\n\\n[1]\\n')
    >>> bad = []
    >>> [e.user_id for e in iter_events(lines, on_error=bad.append)]
    ['u1']
    >>> bad[0].line
    3
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as raw:
            if name.endswith(".gz") or raw.peek(2)[:2] == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    yield from _iter_lines(
                        unzipped,  # type: ignore[arg-type]
                        name,
                        strict,
                        on_error,
                    )
            else:
                yield from _iter_lines(raw, name, strict, on_error)
    else:
        yield from _iter_lines(source, getattr(source, "name", None), strict, on_error)


def _iter_lines(
    f: IO[str] | IO[bytes],
    name: str | None,
    strict: bool,
    on_error: OnError | None,
) -> Iterator[SegmentEvent]:
    source = name if isinstance(name, str) else None
    limit = MAX_MESSAGE_BYTES + 2  # room for "\r\n"
    readline = f.readline
    number = 0
    while True:
        overlong = 0
        try:
            line = readline(limit)
            if len(line) >= limit and line[-1:] not in ("\n", b"\n"):
                overlong = len(line) + _skip_rest(f, limit)
        except _UNREADABLE as exc:
            # The stream itself is broken (a truncated or non-gzip .gz, bytes
            # that are not text): nothing after this point can be read.
            raise InvalidEventPayload(
                f"the file cannot be read past this point: {_describe(exc)}"
            ).located(line=number + 1, source=source) from None
        if not line:
            return
        number += 1
        try:
            if overlong:
                raise InvalidEventPayload(
                    f"message is {overlong}+ bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
                )
            line = line.strip()
            if not line:
                continue
            event = parse_event(line)
        except InvalidEventPayload as exc:
            error = exc.located(line=number, source=source)
            if on_error is not None:
                on_error(error)
            elif strict:
                raise error from None
            else:
                logger.warning("skipped a bad Segment message: %s", error)
            continue
        yield event


#: What reading a broken stream raises: gzip's EOFError (truncated),
#: BadGzipFile (an OSError: not gzip), zlib.error (corrupt data), and
#: UnicodeDecodeError from a text-mode file.
_UNREADABLE = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed data ends early (truncated gzip)"
    if isinstance(exc, gzip.BadGzipFile):
        return "not gzip data"
    if isinstance(exc, zlib.error):
        return "corrupt gzip data"
    return "not valid text in the file's encoding"


def _skip_rest(f: IO[str] | IO[bytes], limit: int) -> int:
    """Read to the end of an overlong line; return how much more it held."""
    skipped = 0
    while True:
        chunk = f.readline(limit)
        skipped += len(chunk)
        if not chunk or chunk[-1:] in ("\n", b"\n"):
            return skipped


def _copy_json(value: Any, budget: int = MAX_DEPTH) -> Any:
    # Bounded as _too_deep is: a mapping given to parse_event is not walked
    # when parsed, so a too-deep one is caught here, before Python's stack is.
    if isinstance(value, Mapping):
        if budget < 0:
            raise InvalidEventPayload(_TOO_DEEP)
        return {k: _copy_json(v, budget - 1) for k, v in value.items()}
    if type(value) is list:
        if budget < 0:
            raise InvalidEventPayload(_TOO_DEEP)
        return [_copy_json(v, budget - 1) for v in value]
    return value
