"""Segment messages: the parsers behind :mod:`lago_segment.events`.

Parsing is hand-written on purpose. Every event the library forwards goes
through :func:`parse_event`, whose budget is "at most 3x ``json.loads``"; a
structuring framework (cattrs) walks every value and costs several times that.
So the hot path is plain code: one ``json.loads``, a cheap depth bound, a few
dict lookups and ``isinstance`` checks, and ``datetime.fromisoformat``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from lago_segment import _json
from lago_segment._time import (
    _UTC,
    parse_iso,
)
from lago_segment.errors import InvalidEventPayload
from lago_segment.events._models import (
    _EMPTY,
    _TOO_DEEP,
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
    _wire_name,
)

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
        dt = parse_iso(value)
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
