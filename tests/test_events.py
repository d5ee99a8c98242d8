"""lago_segment.events: models, parse_event and parse_batch."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from lago_segment.errors import InvalidEventPayload
from lago_segment.events import (
    Alias,
    Delete,
    Group,
    Identify,
    Page,
    Screen,
    SegmentEvent,
    Track,
    parse_batch,
    parse_event,
)

UTC = timezone.utc
TS = "2024-11-25T03:46:25.123Z"

VALID: dict[str, dict[str, Any]] = {
    "track": {
        "type": "track",
        "event": "Seat Added",
        "userId": "u1",
        "properties": {"seats": 2, "price": 9.5, "tags": ["a"], "none": None},
        "timestamp": TS,
    },
    "identify": {"type": "identify", "anonymousId": "a1", "traits": {"email": "x@example.com"}},
    "group": {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"plan": "pro"}},
    "page": {"type": "page", "userId": "u1", "name": "Home", "category": "Docs", "properties": {}},
    "screen": {"type": "screen", "userId": "u1", "name": "Main", "properties": {"x": 1}},
    "alias": {"type": "alias", "userId": "u2", "previousId": "u1"},
    "delete": {"type": "delete", "userId": "u1"},
}
CLASSES = {
    "track": Track,
    "identify": Identify,
    "group": Group,
    "page": Page,
    "screen": Screen,
    "alias": Alias,
    "delete": Delete,
}


def error_of(data: Any) -> InvalidEventPayload:
    with pytest.raises(InvalidEventPayload) as info:
        parse_event(data)
    return info.value


# --------------------------------------------------------------------- every type


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_type_parses_to_its_class(kind: str) -> None:
    event = parse_event(VALID[kind])
    assert type(event) is CLASSES[kind]
    assert event.type == kind


@pytest.mark.parametrize("kind", sorted(VALID))
@pytest.mark.parametrize("encode", [json.dumps, lambda d: json.dumps(d).encode(), dict])
def test_each_type_round_trips_from_every_input_form(kind: str, encode: Any) -> None:
    assert parse_event(encode(VALID[kind])).to_dict() == VALID[kind]


def test_track_fields_are_snake_case() -> None:
    event = parse_event(VALID["track"])
    assert isinstance(event, Track)
    assert (event.event, event.user_id, event.properties["seats"]) == ("Seat Added", "u1", 2)
    assert event.timestamp == datetime(2024, 11, 25, 3, 46, 25, 123000, tzinfo=UTC)


def test_group_page_screen_alias_fields() -> None:
    group = parse_event(VALID["group"])
    page = parse_event(VALID["page"])
    screen = parse_event(VALID["screen"])
    alias = parse_event(VALID["alias"])
    assert isinstance(group, Group)
    assert group.group_id == "g1"
    assert group.traits == {"plan": "pro"}
    assert isinstance(page, Page)
    assert (page.name, page.category) == ("Home", "Docs")
    assert isinstance(screen, Screen)
    assert screen.properties == {"x": 1}
    assert isinstance(alias, Alias)
    assert alias.previous_id == "u1"


def test_type_dispatch_is_case_insensitive_and_kept_on_the_wire() -> None:
    data = {**VALID["track"], "type": "TrAcK"}
    event = parse_event(data)
    assert isinstance(event, Track)
    assert event.to_dict()["type"] == "TrAcK"


def test_common_fields() -> None:
    data = {
        **VALID["identify"],
        "messageId": "m1",
        "originalTimestamp": "2024-01-01T00:00:00Z",
        "sentAt": "2024-01-01T00:00:01.5Z",
        "receivedAt": "2024-01-01T00:00:02+02:00",
        "context": {"ip": "1.2.3.4"},
        "integrations": {"All": True},
        "channel": "server",
        "version": 2,
    }
    event = parse_event(data)
    assert event.message_id == "m1"
    assert event.sent_at == datetime(2024, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert event.received_at == datetime(2023, 12, 31, 22, 0, 2, tzinfo=UTC)
    assert event.context == {"ip": "1.2.3.4"}
    assert event.integrations == {"All": True}
    assert (event.channel, event.version) == ("server", 2)


def test_unknown_top_level_keys_are_kept_in_extra_and_on_the_wire() -> None:
    data = {**VALID["track"], "writeKey": "wk", "_metadata": {"bundled": ["x"]}}
    event = parse_event(data)
    assert event.extra == {"writeKey": "wk", "_metadata": {"bundled": ["x"]}}
    assert event.to_dict() == data


def test_property_values_are_kept_exactly() -> None:
    raw = (
        b'{"type":"track","event":"e","userId":"u",'
        b'"properties":{"big":12345678901234567890,"f":1.0,"s":"1"}}'
    )
    props = parse_event(raw).to_dict()["properties"]
    assert props == {"big": 12345678901234567890, "f": 1.0, "s": "1"}
    assert type(props["f"]) is float


def test_numeric_user_id_is_held_as_a_string_and_kept_on_the_wire() -> None:
    event = parse_event({"type": "identify", "userId": 42})
    assert event.user_id == "42"
    assert event.to_dict()["userId"] == 42


def test_null_optional_fields_read_as_absent() -> None:
    data = {"type": "track", "event": "e", "userId": "u", "properties": None, "context": None}
    event = parse_event(data)
    assert isinstance(event, Track)
    assert (event.properties, event.context) == ({}, {})
    assert event.to_dict() == data


# --------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-25T03:46:25.123Z", datetime(2024, 11, 25, 3, 46, 25, 123000, tzinfo=UTC)),
        ("2024-11-25T03:46:25Z", datetime(2024, 11, 25, 3, 46, 25, tzinfo=UTC)),
        ("2024-11-25T03:46:25.1Z", datetime(2024, 11, 25, 3, 46, 25, 100000, tzinfo=UTC)),
        ("2024-11-25T03:46:25.1234567Z", datetime(2024, 11, 25, 3, 46, 25, 123456, tzinfo=UTC)),
        ("2024-11-25T03:46:25.12345+00:00", datetime(2024, 11, 25, 3, 46, 25, 123450, tzinfo=UTC)),
        ("2024-11-25T05:46:25+0200", datetime(2024, 11, 25, 3, 46, 25, tzinfo=UTC)),
        ("2024-11-25T03:46:25.123z", datetime(2024, 11, 25, 3, 46, 25, 123000, tzinfo=UTC)),
    ],
)
def test_iso_timestamps_parse_to_the_same_instant(text: str, expected: datetime) -> None:
    event = parse_event({**VALID["identify"], "timestamp": text})
    assert event.timestamp == expected
    assert event.timestamp is not None
    assert event.timestamp.tzinfo is not None


def test_naive_timestamp_means_utc() -> None:
    event = parse_event({**VALID["identify"], "timestamp": "2024-11-25T03:46:25"})
    assert event.timestamp == datetime(2024, 11, 25, 3, 46, 25, tzinfo=UTC)


def test_slow_path_parses_what_python_310_fromisoformat_rejects() -> None:
    from lago_segment._time import parse_iso_slow

    assert parse_iso_slow("2024-11-25T03:46:25.1Z") == datetime(
        2024, 11, 25, 3, 46, 25, 100000, tzinfo=UTC
    )
    assert parse_iso_slow("2024-11-25T03:46:25.12+05") == datetime(
        2024, 11, 25, 3, 46, 25, 120000, tzinfo=timezone(timedelta(hours=5))
    )
    assert parse_iso_slow("yesterday") is None


@pytest.mark.parametrize("key", ["timestamp", "originalTimestamp", "sentAt", "receivedAt"])
def test_unparseable_timestamp_names_its_field(key: str) -> None:
    err = error_of({**VALID["identify"], key: "yesterday"})
    assert str(err) == f"{key} is not ISO-8601 @ $.{key}"


def test_non_string_timestamp_is_rejected() -> None:
    err = error_of({**VALID["identify"], "timestamp": 1700000000})
    assert str(err) == "timestamp must be an ISO-8601 string, not number @ $.timestamp"


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"timestamp": "2024-01-01T00:00:01Z", "originalTimestamp": "2024-01-01T00:00:02Z"}, 1),
        ({"originalTimestamp": "2024-01-01T00:00:02Z", "receivedAt": "2024-01-01T00:00:03Z"}, 2),
        ({"receivedAt": "2024-01-01T00:00:03Z", "sentAt": "2024-01-01T00:00:04Z"}, 3),
        ({"sentAt": "2024-01-01T00:00:04Z"}, 4),
    ],
)
def test_effective_timestamp_precedence(present: dict[str, str], expected: int) -> None:
    event = parse_event({**VALID["identify"], **present})
    assert event.effective_timestamp == datetime(2024, 1, 1, 0, 0, expected, tzinfo=UTC)


def test_effective_timestamp_is_none_without_any() -> None:
    assert parse_event(VALID["identify"]).effective_timestamp is None


# --------------------------------------------------------------------- payload, evolve, built


def test_payload_of_a_parsed_event_is_the_parsed_dict_not_a_copy() -> None:
    event = parse_event(json.dumps(VALID["track"]))
    assert event.payload is event.payload
    assert event.payload == VALID["track"]


def test_to_dict_is_a_fresh_deep_copy() -> None:
    event = parse_event(VALID["track"])
    out = event.to_dict()
    out["properties"]["seats"] = 99
    assert event.payload["properties"]["seats"] == 2


def test_mutating_the_callers_dict_does_not_change_the_event() -> None:
    data = dict(VALID["track"])
    event = parse_event(data)
    data["event"] = "Changed"
    data["extra"] = 1
    assert event.payload["event"] == "Seat Added"
    assert "extra" not in event.to_dict()


def test_evolve_rebuilds_the_payload_from_the_fields() -> None:
    event = parse_event(VALID["track"])
    assert event.payload["userId"] == "u1"  # cache filled
    changed = attrs.evolve(event, user_id="u9")
    assert changed.payload["userId"] == "u9"
    assert changed.payload["event"] == "Seat Added"
    assert event.payload["userId"] == "u1"


def test_event_built_in_code_renders_its_wire_form() -> None:
    event = Track(
        event="Seat Added",
        user_id="u1",
        timestamp=datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))),
        properties={"seats": 1},
        extra={"writeKey": "k"},
    )
    assert event.to_dict() == {
        "type": "track",
        "userId": "u1",
        "timestamp": "2024-01-01T00:00:00.000Z",
        "event": "Seat Added",
        "properties": {"seats": 1},
        "writeKey": "k",
    }


def test_built_payload_keeps_microseconds_so_the_instant_is_unchanged() -> None:
    ts = datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    event = Identify(anonymous_id="a", timestamp=ts)
    assert event.payload["timestamp"] == "2024-01-01T00:00:00.123456Z"
    assert parse_event(event.to_dict()).timestamp == ts


def test_built_event_round_trips_through_parse() -> None:
    event = Group(group_id="g", user_id="u", traits={"n": 1}, context={"ip": "x"})
    assert parse_event(event.to_dict()) == event


def test_events_compare_by_fields_not_by_cached_payload() -> None:
    parsed = parse_event(VALID["alias"])
    built = Alias(user_id="u2", previous_id="u1")
    assert parsed == built


def test_segment_event_is_frozen() -> None:
    event = parse_event(VALID["delete"])
    assert isinstance(event, SegmentEvent)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.user_id = "x"  # type: ignore[misc]


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "track", "userId": "u"}, 'track event is missing "event" @ $.event'),
        (
            {"type": "track", "userId": "u", "event": ""},
            'track event is missing "event" @ $.event',
        ),
        ({"type": "group", "userId": "u"}, 'group event is missing "groupId" @ $.groupId'),
        ({"type": "alias", "userId": "u"}, 'alias event is missing "previousId" @ $.previousId'),
        ({"type": "alias", "previousId": "p"}, 'alias event is missing "userId" @ $.userId'),
        ({"type": "delete", "anonymousId": "a"}, 'delete event is missing "userId" @ $.userId'),
        ({"type": "identify"}, "neither userId nor anonymousId @ $"),
        (
            {"type": "page", "userId": "", "anonymousId": None},
            "neither userId nor anonymousId @ $",
        ),
        ({"userId": "u"}, 'message is missing "type" @ $.type'),
        ({"type": "purchase", "userId": "u"}, 'unknown type "purchase" @ $.type'),
        ({"type": 3, "userId": "u"}, "type must be a string, not number @ $.type"),
    ],
)
def test_missing_and_unknown_fields(data: dict[str, Any], message: str) -> None:
    assert str(error_of(data)) == message


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("properties", [1], "properties must be an object, not array @ $.properties"),
        ("context", "x", "context must be an object, not string @ $.context"),
        ("integrations", 1, "integrations must be an object, not number @ $.integrations"),
        ("userId", 1.5, "userId must be a string, not number @ $.userId"),
        ("userId", True, "userId must be a string, not boolean @ $.userId"),
        ("anonymousId", {}, "anonymousId must be a string, not object @ $.anonymousId"),
        ("messageId", ["m"], "messageId must be a string, not array @ $.messageId"),
        ("messageId", "m" * 101, "messageId is longer than 100 characters @ $.messageId"),
        ("event", 7, "event must be a string, not number @ $.event"),
        ("channel", 1, "channel must be a string, not number @ $.channel"),
        ("version", [], "version must be a number or a string, not array @ $.version"),
    ],
)
def test_wrong_types_name_field_and_kind(key: str, value: Any, message: str) -> None:
    assert str(error_of({**VALID["track"], key: value})) == message


@pytest.mark.parametrize(
    ("kind", "key", "value", "message"),
    [
        ("identify", "traits", [], "traits must be an object, not array @ $.traits"),
        ("group", "groupId", 1.5, "groupId must be a string, not number @ $.groupId"),
        ("page", "name", 1, "name must be a string, not number @ $.name"),
        ("screen", "category", False, "category must be a string, not boolean @ $.category"),
        ("alias", "previousId", None, 'alias event is missing "previousId" @ $.previousId'),
    ],
)
def test_wrong_per_type_fields(kind: str, key: str, value: Any, message: str) -> None:
    assert str(error_of({**VALID[kind], key: value})) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1, 2]", "message must be a JSON object, not array @ $"),
        ("null", "message must be a JSON object, not null @ $"),
        ([1], "message must be a JSON object, not array @ $"),
        ("42", "message must be a JSON object, not number @ $"),
    ],
)
def test_non_object_json(data: Any, message: str) -> None:
    assert str(error_of(data)) == message


def test_invalid_json_is_reported() -> None:
    assert str(error_of(b'{"type": ')).startswith("message is not valid JSON: ")


def test_invalid_utf8_is_reported() -> None:
    data = b'{"type":"identify","userId":"\xff\xfe"}'
    assert str(error_of(data)) == "message is not valid UTF-8 @ $"


@pytest.mark.parametrize(
    "data",
    [
        '{"type":"identify","userId":"x"}'.encode("utf-16"),
        b'{"type":"identify","userId":"\xed\xa0\x80"}',  # an encoded surrogate
    ],
)
def test_bytes_must_be_utf8(data: bytes) -> None:
    assert str(error_of(data)) == "message is not valid UTF-8 @ $"


@pytest.mark.parametrize("as_bytes", [True, False])
def test_message_over_32_kb_is_rejected(as_bytes: bool) -> None:
    text = json.dumps({**VALID["track"], "properties": {"blob": "x" * 33_000}})
    err = error_of(text.encode() if as_bytes else text)
    assert err.problem == f"message is {len(text)} bytes, over the 32768-byte limit"


def test_message_size_of_str_counts_utf8_bytes() -> None:
    text = json.dumps({**VALID["track"], "properties": {"blob": "é" * 17_000}}, ensure_ascii=False)
    assert len(text) < 32 * 1024 < len(text.encode())
    assert "over the 32768-byte limit" in str(error_of(text))


def test_message_of_exactly_32_kb_is_accepted() -> None:
    base = json.dumps({**VALID["track"], "properties": {"blob": ""}})
    text = base.replace('"blob": ""', '"blob": "' + "x" * (32 * 1024 - len(base)) + '"')
    assert len(text) == 32 * 1024
    assert isinstance(parse_event(text), Track)


def nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return {**VALID["track"], "properties": value}


def test_nesting_deeper_than_64_is_rejected() -> None:
    assert str(error_of(json.dumps(nested(70)))) == "message nests deeper than 64 levels @ $"


def test_a_mapping_nesting_deeper_than_64_is_rejected_by_to_dict() -> None:
    # A mapping is not walked when parsed (that walk cost 13% of forward()).
    event = parse_event(nested(70))
    with pytest.raises(InvalidEventPayload, match="message nests deeper than 64 levels"):
        event.to_dict()


def test_nesting_of_63_levels_is_accepted() -> None:
    assert isinstance(parse_event(json.dumps(nested(62))), Track)


def test_nesting_that_overflows_the_json_decoder_is_reported() -> None:
    assert str(error_of(b"[" * 30_000)) == "message nests deeper than 64 levels @ $"


def test_many_flat_brackets_are_not_too_deep() -> None:
    data = {**VALID["track"], "properties": {f"k{i}": [i] for i in range(200)}}
    assert isinstance(parse_event(json.dumps(data)), Track)


def test_error_carries_problem_and_path() -> None:
    err = error_of({"type": "track", "userId": "u"})
    assert (err.problem, err.path, err.index, err.line) == (
        'track event is missing "event"',
        "$.event",
        None,
        None,
    )


# --------------------------------------------------------------------- batches


def test_parse_batch_accepts_a_json_array() -> None:
    events = parse_batch(json.dumps([VALID["track"], VALID["identify"]]))
    assert [type(e) for e in events] == [Track, Identify]


def test_parse_batch_accepts_a_segment_body() -> None:
    events = parse_batch({"batch": [VALID["group"], VALID["alias"]]})
    assert [type(e) for e in events] == [Group, Alias]


def test_parse_batch_merges_top_context_and_integrations_item_keys_winning() -> None:
    body = {
        "batch": [
            {**VALID["identify"], "context": {"ip": "own"}, "integrations": {"All": False}},
            VALID["delete"],
        ],
        "context": {"ip": "top", "library": {"name": "lib"}},
        "integrations": {"All": True, "Mixpanel": False},
    }
    first, second = parse_batch(json.dumps(body).encode())
    assert first.context == {"ip": "own", "library": {"name": "lib"}}
    assert first.integrations == {"All": False, "Mixpanel": False}
    assert second.context == {"ip": "top", "library": {"name": "lib"}}
    assert second.payload["integrations"] == {"All": True, "Mixpanel": False}


def test_parse_batch_merge_does_not_mutate_the_input() -> None:
    item = {**VALID["identify"], "context": {"ip": "own"}}
    parse_batch({"batch": [item], "context": {"locale": "fr"}})
    assert item["context"] == {"ip": "own"}


def test_parse_batch_error_carries_the_index() -> None:
    with pytest.raises(InvalidEventPayload) as info:
        parse_batch([VALID["track"], VALID["identify"], {"type": "track", "userId": "u"}])
    assert info.value.index == 2
    assert str(info.value) == 'track event is missing "event" @ $.event (item 2)'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"context": {}}, 'batch is missing "batch" @ $.batch'),
        ({"batch": {}}, "batch must be an array, not object @ $.batch"),
        ("3", "batch must be a JSON object or array, not number @ $"),
    ],
)
def test_parse_batch_rejects_malformed_bodies(data: Any, message: str) -> None:
    with pytest.raises(InvalidEventPayload) as info:
        parse_batch(data)
    assert str(info.value) == message


def test_parse_batch_over_500_kb_is_rejected() -> None:
    data = json.dumps([VALID["identify"]] * 20_000).encode()
    with pytest.raises(InvalidEventPayload, match="over the 512000-byte limit"):
        parse_batch(data)


def test_parse_batch_item_over_32_kb_is_rejected_with_its_index() -> None:
    big = {**VALID["track"], "properties": {"blob": "x" * 33_000}}
    with pytest.raises(InvalidEventPayload, match="over the 32768-byte limit") as info:
        parse_batch(json.dumps([VALID["identify"], big]))
    assert info.value.index == 1


def test_parse_batch_item_nesting_too_deep_is_rejected() -> None:
    with pytest.raises(InvalidEventPayload, match="nests deeper") as info:
        parse_batch(json.dumps([nested(70)]))
    assert info.value.index == 0


@pytest.mark.parametrize("kind", sorted(VALID))
def test_parsed_event_equals_the_one_its_fields_build(kind: str) -> None:
    # The parser goes around attrs' __init__ for speed: it must set every field.
    event = parse_event(VALID[kind])
    fields = {a.name: getattr(event, a.name) for a in attrs.fields(type(event)) if a.init}
    assert event == type(event)(**fields)
