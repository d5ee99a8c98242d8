"""``lago_segment._json``: orjson (``[speedups]``) and the standard library agree byte for byte.

Every test runs on both backends. ``LAGO_SEGMENT_NO_SPEEDUPS=1 pytest`` runs the
whole suite on the standard library even where orjson is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lago_segment import _json
from lago_segment.client import _batching
from lago_segment.errors import InvalidEventPayload
from lago_segment.events import Track, parse_event
from lago_segment.lago import LagoEvent

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - the speedups extra is optional
    orjson = None


@pytest.fixture(params=["json", "orjson"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "orjson":
        if orjson is None:
            pytest.skip("orjson is not installed")
        monkeypatch.setattr(_json, "_orjson", orjson)
    else:
        monkeypatch.setattr(_json, "_orjson", None)
    return str(request.param)


def stdlib_dumps(value: Any) -> bytes:
    """What the request body was before the speedups: the reference."""
    return json.dumps(value, separators=(",", ":"), check_circular=False).encode()


def exactly(value: Any) -> str:
    # repr tells 1 from 1.0 and -0.0 from 0.0, shows NaN, and keeps key order.
    return repr(value)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.floats(min_value=1e-7, max_value=1e-3)
    | st.floats(min_value=1e15, max_value=1e17)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


# --------------------------------------------------------------------------- dumps


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_dumps_is_byte_identical_to_the_stdlib(value: Any) -> None:
    # Not a fixture (hypothesis runs many examples per test): both paths here.
    reference = stdlib_dumps(value)
    assert _json._std_dumps(value) == reference
    if orjson is not None:
        original = _json._orjson
        _json._orjson = orjson
        try:
            assert _json.dumps(value) == reference
        finally:
            _json._orjson = original


@pytest.mark.parametrize(
    "value",
    [
        2**64,  # orjson refuses integers beyond 64 bits
        -(2**63) - 1,
        2**64 - 1,
        float("nan"),  # orjson writes null
        float("inf"),
        float("-inf"),
        1e-5,  # orjson writes 0.00001, json 1e-05
        1e16,
        123456789012345678.0,
        -0.0,
        5e-324,
        "é€😀",  # json escapes non-ASCII as \uXXXX, beyond the BMP as a pair
        '\x7f\x00\x1f\u2028\u2029"\\/\n\t',
        "\ud800",  # a lone surrogate: orjson refuses it
        {"null": "null", "k": [None, True, False]},
        {"a": {"b": [1, 2.5, "x"]}, "z": 1, "m": 0},  # key order kept
        ("tuple", 1),
    ],
    ids=repr,
)
def test_dumps_matches_the_stdlib_where_orjson_differs(backend: str, value: Any) -> None:
    assert _json.dumps(value) == stdlib_dumps(value)


def test_dumps_refuses_what_the_stdlib_refuses(backend: str) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        _json.dumps({"amount": Decimal("1.5")})
    with pytest.raises(TypeError, match="keys must be"):
        _json.dumps({(1, 2): 1})


def lago_events() -> st.SearchStrategy[LagoEvent]:
    # Only values a LagoEvent accepts (lago.number_problem): below 10**25, at
    # most 15 decimal places, timestamps up to the year 9999.
    limit = 10**24
    property_values = (
        st.text()
        | st.integers(min_value=-limit, max_value=limit)
        | st.floats(min_value=-1e24, max_value=1e24)
        | st.decimals(min_value=-limit, max_value=limit, places=6)
    )
    ids = st.text(min_size=1).filter(str.strip)
    return st.builds(
        LagoEvent,
        transaction_id=ids,
        external_subscription_id=ids,
        code=ids,
        timestamp=st.integers(min_value=0, max_value=253402300799)
        | st.decimals(min_value=0, max_value=2**33, places=3),
        properties=st.dictionaries(st.text(), property_values, max_size=4),
    )


@settings(max_examples=100, deadline=None)
@given(events=st.lists(lago_events(), min_size=1, max_size=5))
def test_the_batch_body_is_the_same_with_and_without_speedups(events: list[LagoEvent]) -> None:
    dicts = [e.to_dict() for e in events]
    assert _batching.batch_body(dicts) == stdlib_dumps({"events": dicts})
    if orjson is not None:
        original = _json._orjson
        _json._orjson = orjson
        try:
            assert _batching.batch_body(dicts) == stdlib_dumps({"events": dicts})
        finally:
            _json._orjson = original


# --------------------------------------------------------------------------- loads


def texts() -> st.SearchStrategy[str]:
    encoded = st.builds(
        lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only),
        json_values,
        st.booleans(),
    )
    return encoded | st.text(alphabet='{}[]",:0123456789.eE+-nulltrfasNIy \\u') | st.text()


def same_as_stdlib(text: str | bytes) -> None:
    try:
        expected: Any = json.loads(text if isinstance(text, str) else text.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            _json.loads(text)
    else:
        assert exactly(_json.loads(text)) == exactly(expected)


@settings(max_examples=150, deadline=None)
@given(text=texts())
def test_loads_returns_exactly_what_the_stdlib_returns(text: str) -> None:
    for backend_module in (None, orjson):
        original = _json._orjson
        _json._orjson = backend_module
        try:
            same_as_stdlib(text)
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                continue  # a lone surrogate has no UTF-8 form
            same_as_stdlib(data)
        finally:
            _json._orjson = original


@pytest.mark.parametrize(
    "text",
    [
        "123456789012345678901234567890",  # orjson would read a float
        "-9223372036854775809",
        "18446744073709551616",
        '{"id": "1234567890123456789"}',  # 19 digits in a string: the stdlib, same result
        "NaN",
        "[Infinity, -Infinity]",
        "1e400",
        "1e-400",
        "-0.0",
        '"\\ud800"',
        "\ufeff{}",
        '{"a": 1, "a": 2}',
        "[1,]",
        "[" * 2000 + "]" * 2000,
    ],
    ids=lambda t: t[:24],
)
def test_loads_matches_the_stdlib_where_orjson_differs(backend: str, text: str) -> None:
    same_as_stdlib(text)
    same_as_stdlib(text.encode("utf-8"))


def test_loads_keeps_a_raw_lone_surrogate_in_a_str(backend: str) -> None:
    same_as_stdlib('["\ud800", "\udc80x"]')


def test_loads_takes_only_utf8_bytes(backend: str) -> None:
    with pytest.raises(UnicodeDecodeError):
        _json.loads('{"a": 1}'.encode("utf-16"))


def test_a_huge_integer_in_a_message_stays_an_integer(backend: str) -> None:
    event = parse_event(
        b"{"
        b'"type": "track", "event": "e", "userId": "u", '
        b'"properties": {"n": 18446744073709551616}}'
    )
    assert isinstance(event, Track)
    assert event.properties["n"] == 2**64
    assert type(event.properties["n"]) is int


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"type": "track",', "message is not valid JSON: Expecting property name"),
        (b"\xff{}", "message is not valid UTF-8"),
        (b"[" * 30_000, "message nests deeper than 64 levels"),
        (b'"text"', "message must be a JSON object, not string"),
    ],
)
def test_bad_messages_give_the_same_errors(backend: str, data: bytes, problem: str) -> None:
    with pytest.raises(InvalidEventPayload) as info:
        parse_event(data)
    assert str(info.value).startswith(problem)


@pytest.mark.skipif(orjson is None, reason="orjson is not installed")
def test_an_orjson_that_formats_floats_otherwise_is_not_used() -> None:
    class OtherOrjson:
        # As a version writing 1e16 without the exponent's sign would.
        @staticmethod
        def dumps(value: Any) -> bytes:
            body: bytes = orjson.dumps(value)
            return body.replace(b"e+", b"e")

    assert _json._agrees(orjson)
    assert not _json._agrees(OtherOrjson)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- switch


def backend_in_a_fresh_process(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "LAGO_SEGMENT_NO_SPEEDUPS"}
    done = subprocess.run(
        [sys.executable, "-c", "from lago_segment import _json; print(_json.BACKEND)"],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_environment_variable_forces_the_stdlib() -> None:
    assert backend_in_a_fresh_process(LAGO_SEGMENT_NO_SPEEDUPS="1") == "json"


@pytest.mark.skipif(orjson is None, reason="orjson is not installed")
def test_orjson_is_used_when_installed() -> None:
    assert backend_in_a_fresh_process() == "orjson"
    assert backend_in_a_fresh_process(LAGO_SEGMENT_NO_SPEEDUPS="0") == "orjson"
