"""parse_event against arbitrary input and against segment-analytics-python's messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lago_segment.errors import InvalidEventPayload
from lago_segment.events import SegmentEvent, parse_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
ID = st.one_of(st.none(), st.text(max_size=5), st.integers(), st.booleans())
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "IDENTIFY", "group", "page", "screen", "alias", "delete"])},
    optional={
        "userId": ID,
        "anonymousId": ID,
        "event": ID,
        "groupId": ID,
        "previousId": ID,
        "timestamp": st.one_of(st.text(max_size=30), st.just("2024-01-01T00:00:00Z")),
        "properties": json_values,
        "context": json_values,
        "version": json_values,
        "extraKey": json_values,
    },
)


def parses_or_rejects(data: Any) -> None:
    try:
        event = parse_event(data)
    except InvalidEventPayload:
        return
    assert isinstance(event, SegmentEvent)


@given(json_values)
def test_arbitrary_json_values_parse_or_raise_invalid_payload(value: Any) -> None:
    parses_or_rejects(value)
    parses_or_rejects(json.dumps(value))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_invalid_payload(data: bytes) -> None:
    parses_or_rejects(data)


@settings(max_examples=300)
@given(message_like)
def test_message_like_values_parse_or_raise_and_valid_ones_round_trip(value: Any) -> None:
    try:
        event = parse_event(json.dumps(value).encode())
    except InvalidEventPayload:
        return
    assert event.to_dict() == value


# --------------------------------------------------------------------- analytics-python


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from segment.analytics.client import Client  # type: ignore[import-untyped]

    # send=False: consumers are created but never started, so no thread, no network.
    c = Client(write_key="test", send=False)
    yield c
    c.join()


CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "track": ("track", {"user_id": "u1", "event": "Seat Added", "properties": {"seats": 3}}),
    "identify": ("identify", {"user_id": 42, "traits": {"email": "a@example.com"}}),
    "group": ("group", {"anonymous_id": "a1", "group_id": "g1", "traits": {"plan": "pro"}}),
    "page": ("page", {"user_id": "u1", "category": "Docs", "name": "Intro"}),
    "screen": ("screen", {"user_id": "u1", "name": "Home", "properties": {"x": 1.5}}),
    "alias": ("alias", {"previous_id": "old", "user_id": "new"}),
}


@pytest.mark.parametrize("kind", sorted(CALLS))
def test_analytics_python_messages_parse_and_round_trip(client: Any, kind: str) -> None:
    method, kwargs = CALLS[kind]
    success, msg = getattr(client, method)(**kwargs)
    assert success
    event = parse_event(msg)
    assert event.type == kind
    assert event.message_id == msg["messageId"]
    assert event.timestamp is not None
    assert event.to_dict() == msg
    assert parse_event(json.dumps(msg)).to_dict() == json.loads(json.dumps(msg))
