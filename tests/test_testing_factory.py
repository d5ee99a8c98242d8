"""The Segment event factory of lago_segment.testing."""

from __future__ import annotations

import pytest

from lago_segment.errors import InvalidEventPayload
from lago_segment.events import parse_event
from lago_segment.testing._factory import SegmentEventFactory

TYPES = ["track", "identify", "group", "page", "screen", "alias", "delete"]


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_is_a_valid_segment_message(kind: str) -> None:
    message = SegmentEventFactory()(kind)
    event = parse_event(message)
    assert event.type == kind
    assert event.to_dict() == message


@pytest.mark.parametrize("kind", TYPES)
def test_messages_carry_what_analytics_python_sends(kind: str) -> None:
    message = SegmentEventFactory()(kind)
    assert {"messageId", "timestamp", "sentAt", "userId"} <= message.keys()
    assert message["context"]["library"]["name"] == "analytics-python"


def test_same_seed_builds_the_same_messages() -> None:
    assert SegmentEventFactory(seed=3).batch(3) == SegmentEventFactory(seed=3).batch(3)


def test_different_seeds_build_different_message_ids() -> None:
    assert SegmentEventFactory(seed=1)()["messageId"] != SegmentEventFactory(seed=2)()["messageId"]


def test_each_message_gets_a_new_id_and_a_later_timestamp() -> None:
    first, second = SegmentEventFactory().batch(2)
    assert first["messageId"] != second["messageId"]
    assert parse_event(first).timestamp < parse_event(second).timestamp  # type: ignore[operator]


def test_overrides_accept_wire_and_snake_case_names() -> None:
    make = SegmentEventFactory()
    assert make(userId="a")["userId"] == "a"
    assert make(user_id="b")["userId"] == "b"
    assert make("group", group_id="g")["groupId"] == "g"


def test_omit_removes_a_key_to_build_an_invalid_message() -> None:
    make = SegmentEventFactory()
    message = make("track", event=SegmentEventFactory.OMIT)
    assert "event" not in message
    with pytest.raises(InvalidEventPayload, match="event"):
        parse_event(message)


def test_overrides_do_not_leak_into_the_next_message() -> None:
    make = SegmentEventFactory()
    make("track")["properties"]["calls"] = 99
    assert make("track")["properties"] == {"calls": 1}


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="type must be one of"):
        SegmentEventFactory()("click")
