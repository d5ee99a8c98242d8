"""Hostile input: whatever comes in, only the library's own errors come out, and one
bad event costs no more than itself."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lago_segment import LagoSegmentError
from lago_segment._time import ISO_RE, parse_iso
from lago_segment.errors import InvalidEventPayload, MappingError
from lago_segment.events import MAX_MESSAGE_BYTES, iter_events, parse_batch, parse_event
from lago_segment.events._parser import _loads
from lago_segment.forwarder import ForwardingFailure
from lago_segment.mapping import MappingSpec
from lago_segment.testing import FakeLagoFixture

IDENTIFY = b'{"type":"identify","userId":"u1"}'


def track(n: int, cents: object) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "API Call",
        "messageId": f"m{n}",
        "userId": "u1",
        "timestamp": "2024-01-01T00:00:00Z",
        "properties": {"sub": "sub-1", "cents": cents},
    }


def spec_with(directive: str) -> MappingSpec:
    return MappingSpec.from_dict(
        {
            "rules": [
                {
                    "name": "priced",
                    "when": 'type = "track"',
                    "code": "api_calls",
                    "external_subscription_id": {"@path": "$.properties.sub"},
                    "precise_total_amount_cents": {directive: {"@path": "$.properties.cents"}},
                }
            ]
        }
    )


# --- section 3: one event never costs more than its own size ---------------------------


def test_decimal_directive_refuses_an_amount_lago_cannot_store() -> None:
    # 13 bytes that, rendered in plain notation, would be a billion digits.
    with pytest.raises(MappingError, match="more than 25 digits") as info:
        spec_with("@decimal").map(track(1, "1e999999999"))
    assert info.value.field == "precise_total_amount_cents"
    assert info.value.message_id == "m1"


def test_decimal_directive_refuses_an_exponent_no_rendering_could_finish() -> None:
    with pytest.raises(MappingError, match="more than 25 digits"):
        spec_with("@decimal").map(track(1, "1e999999999999999999"))


@pytest.mark.parametrize(
    ("directive", "value"),
    [("@number", "1e300"), ("@number", 10**30), ("@integer", "1e25"), ("@decimal", 1e-20)],
)
def test_number_directives_apply_the_same_bound(directive: str, value: object) -> None:
    with pytest.raises(MappingError, match="converted number has more than"):
        spec_with(directive).map(track(1, value))


def test_number_directives_keep_numbers_within_the_bound() -> None:
    [event] = spec_with("@decimal").map(track(1, "9999999999999999999999999.5"))
    assert event.to_dict()["precise_total_amount_cents"] == "9999999999999999999999999.5"


def test_a_forwarder_reports_the_oversized_amount_alone_and_delivers_the_rest() -> None:
    errors: list[ForwardingFailure] = []
    batch = [track(n, "1e999999999" if n == 4 else str(n)) for n in range(9)]
    with FakeLagoFixture() as lago:
        forwarder = lago.forwarder(
            spec_with("@decimal"),
            mapping_errors="report",
            on_error=errors.append,
            flush_at_exit=False,
        )
        forwarder.forward({"batch": batch})
        forwarder.flush()
        lago.assert_stored(transaction_ids=[f"m{n}" for n in range(9) if n != 4])
    assert [(e.stage, e.message_id) for e in errors] == [("mapping", "m4")]
    assert isinstance(errors[0].error, MappingError)


def test_a_forwarder_reports_a_lone_surrogate_alone_and_delivers_the_rest() -> None:
    # JSON's "\ud800" parses to a str with no UTF-8 form: in a batch request it
    # would fail the other events with it, so it is refused in its own event.
    errors: list[ForwardingFailure] = []
    spec = MappingSpec.from_dict(
        {
            "rules": [
                {
                    "name": "calls",
                    "when": 'type = "track"',
                    "code": "api_calls",
                    "external_subscription_id": {"@path": "$.properties.sub"},
                    "properties": {"note": {"@path": "$.properties.note"}},
                }
            ]
        }
    )
    batch = [track(n, "1") for n in range(5)]
    for n, item in enumerate(batch):
        item["properties"]["note"] = "caf\u00e9 \ud800" if n == 2 else "caf\u00e9"
    with FakeLagoFixture() as lago:
        forwarder = lago.forwarder(
            spec, mapping_errors="report", on_error=errors.append, flush_at_exit=False
        )
        for event in parse_batch(json.dumps({"batch": batch})):  # "\\ud800" on the wire
            forwarder.forward(event)
        forwarder.flush()
        lago.assert_stored(transaction_ids=["m0", "m1", "m3", "m4"])
    assert [(e.stage, e.message_id) for e in errors] == [("mapping", "m2")]
    assert "properties.note: holds a lone UTF-16 surrogate ('\\ud800' at index 5)" in str(
        errors[0].error
    )


# --- section 4: parsers raise only the library's errors --------------------------------


def test_parse_batch_measures_a_long_str_holding_a_lone_surrogate() -> None:
    item = {"type": "identify", "userId": "u1", "traits": {"note": "\ud800"}}
    text = json.dumps([item] * 1000, ensure_ascii=False)
    assert len(text) > MAX_MESSAGE_BYTES
    assert "\ud800" in text
    events = parse_batch(text)
    assert len(events) == 1000
    assert events[0].payload["traits"] == {"note": "\ud800"}


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_parse_event_and_parse_batch_take_bytes_like_input(wrap: Callable[[bytes], Any]) -> None:
    assert parse_event(wrap(IDENTIFY)) == parse_event(IDENTIFY)
    assert parse_batch(wrap(b"[" + IDENTIFY + b"]")) == parse_batch(b"[" + IDENTIFY + b"]")


def test_bytes_like_input_over_the_limit_is_refused_before_it_is_copied() -> None:
    with pytest.raises(InvalidEventPayload, match="over the 32768-byte limit"):
        parse_event(memoryview(b" " * (MAX_MESSAGE_BYTES + 1)))


@pytest.mark.parametrize("value", [12, None, 1.5, object()])
def test_parse_event_refuses_what_is_neither_json_nor_a_mapping(value: object) -> None:
    with pytest.raises(InvalidEventPayload, match="must be a JSON object"):
        parse_event(value)  # type: ignore[arg-type]


def _gzip_lines(n: int) -> bytes:
    return gzip.compress(b"".join(IDENTIFY + b"\n" for _ in range(n)))


def test_iter_events_on_a_truncated_gz_names_the_file_after_the_events_it_could_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(_gzip_lines(2000)[:-30])
    events = iter_events(path, strict=False)
    read = []
    for _ in range(2000):
        try:
            read.append(next(events))
        except InvalidEventPayload as exc:
            error = exc
            break
    else:
        pytest.fail("the truncated file was read to its end")
    assert "not a valid gzip file: it ends before" in error.problem
    assert error.source == str(path)
    assert error.line == len(read) + 1
    assert read  # what came before the damage was yielded


def test_iter_events_on_a_gz_that_is_not_gzip_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.gz"
    path.write_bytes(IDENTIFY + b"\n")
    errors: list[InvalidEventPayload] = []
    with pytest.raises(InvalidEventPayload, match="not a valid gzip file") as info:
        list(iter_events(path, on_error=errors.append))
    assert (info.value.source, info.value.line) == (str(path), 1)
    assert str(path) in str(info.value)


def test_iter_events_on_a_text_file_that_cannot_be_decoded() -> None:
    stream = io.TextIOWrapper(io.BytesIO(IDENTIFY + b"\n\xff\xfe\n"), encoding="utf-8")
    with pytest.raises(InvalidEventPayload, match="not valid text"):
        list(iter_events(stream))


# Property-based: arbitrary input, and nothing but LagoSegmentError escapes. No
# deadline: on a loaded machine one slow example is not a failure.
_PROPERTY = settings(deadline=None)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    [
        "type",
        "event",
        "userId",
        "anonymousId",
        "messageId",
        "timestamp",
        "sentAt",
        "properties",
        "context",
        "integrations",
        "batch",
        "groupId",
        "previousId",
        "version",
        "channel",
    ]
)
_TYPES = st.sampled_from(["track", "identify", "group", "page", "screen", "alias", "delete"])
_MESSAGES = st.dictionaries(_KEYS, _JSON | _TYPES | st.text(max_size=40), max_size=8)
_TEXT = st.text() | _MESSAGES.map(json.dumps) | st.lists(_MESSAGES).map(json.dumps)
_BYTES = st.binary() | _TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))


def _only_our_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(LagoSegmentError):
        call()


@_PROPERTY
@given(_BYTES | _TEXT | _BYTES.map(bytearray) | _BYTES.map(memoryview))
def test_parse_event_raises_only_our_errors_on_any_input(data: Any) -> None:
    _only_our_errors(lambda: parse_event(data))


@_PROPERTY
@given(_BYTES | _TEXT | _BYTES.map(bytearray))
def test_parse_batch_raises_only_our_errors_on_any_input(data: Any) -> None:
    _only_our_errors(lambda: parse_batch(data))


@_PROPERTY
@given(_MESSAGES | _JSON)
def test_parsers_raise_only_our_errors_on_any_json_value(value: Any) -> None:
    _only_our_errors(lambda: parse_event(value))
    _only_our_errors(lambda: parse_batch(value))
    _only_our_errors(lambda: parse_batch({"batch": [value], "context": value}))


@_PROPERTY
@given(_MESSAGES)
def test_parsed_events_render_back_to_json(value: dict[str, Any]) -> None:
    try:
        event = parse_event(json.dumps(value))
    except LagoSegmentError:
        return
    assert json.loads(json.dumps(event.to_dict())) == event.to_dict()
    event.effective_timestamp  # noqa: B018 (must not raise)


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None
)
@given(
    lines=st.lists(_BYTES, max_size=5),
    compress=st.booleans(),
    cut=st.integers(min_value=0, max_value=64),
    suffix=st.sampled_from([".jsonl", ".gz"]),
)
def test_iter_events_raises_only_our_errors_on_any_file(
    tmp_path: Path, lines: list[bytes], compress: bool, cut: int, suffix: str
) -> None:
    data = b"\n".join(lines)
    if compress:
        data = gzip.compress(data)
        data = data[: len(data) - cut]
    path = tmp_path / f"input{suffix}"
    path.write_bytes(data)
    for options in ({"strict": True}, {"strict": False}, {"on_error": lambda _e: None}):
        _only_our_errors(lambda: list(iter_events(path, **options)))  # noqa: B023


@_PROPERTY
@given(_BYTES | _TEXT)
def test_the_json_reader_raises_only_our_errors_on_any_input(data: str | bytes) -> None:
    _only_our_errors(lambda: _loads(data, MAX_MESSAGE_BYTES, "message"))


@_PROPERTY
@given(st.text() | st.datetimes().map(lambda d: d.isoformat()) | st.from_regex(ISO_RE))
def test_the_timestamp_reader_gives_an_aware_datetime_or_none(text: str) -> None:
    parsed = parse_iso(text)
    assert parsed is None or parsed.utcoffset() is not None
