"""The webhook receiver as an attacker meets it: what the signature covers, hostile bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support_integrations import RecordingForwarder, ReportingForwarder
from support_webhooks import stringify, track

from lago_segment.errors import ConfigurationError, InvalidEventPayload, LagoSegmentError
from lago_segment.testing import FakeLagoFixture
from lago_segment.webhook import WebhookResponse, asgi_app, handle, sign, wsgi_app

SECRET = "whsec-security-1618"


def hex_hmac(data: bytes) -> str:
    return hmac.new(SECRET.encode(), data, hashlib.sha1).hexdigest()


# --- what the signature covers --------------------------------------------------------


def test_a_captured_request_cannot_carry_appended_events(forwarder: RecordingForwarder) -> None:
    captured = stringify(track(1))
    signature = hex_hmac(captured)  # seen once, on a single-event request
    tampered = b"[" + captured + b"," + stringify(track(666)) + b"]"
    response = handle(tampered, {"X-Signature": signature}, forwarder, secret=SECRET)
    assert 400 <= response.status < 500
    assert forwarder.events == []


def test_a_batch_signed_only_through_its_first_element_is_refused_whole(
    forwarder: RecordingForwarder, caplog: pytest.LogCaptureFixture
) -> None:
    body = stringify([track(1), track(2), track(3)])
    with caplog.at_level(logging.WARNING, logger="lago_segment"):
        response = handle(body, {"X-Signature": sign(body, SECRET)}, forwarder, secret=SECRET)
    assert response.status == 403
    assert response.json()["error"] == "X-Signature covers only the first event of this batch"
    assert forwarder.events == []
    assert "allow_partially_signed_batches" in caplog.text
    assert SECRET not in caplog.text


def test_a_batch_signed_as_a_whole_is_accepted(forwarder: RecordingForwarder) -> None:
    body = stringify([track(1), track(2)])
    response = handle(body, {"X-Signature": hex_hmac(body)}, forwarder, secret=SECRET)
    assert (response.status, response.forwarded) == (200, 2)


def test_a_batch_of_one_signed_through_its_element_is_accepted(
    forwarder: RecordingForwarder,
) -> None:
    body = stringify([track(1)])
    response = handle(body, {"X-Signature": sign(body, SECRET)}, forwarder, secret=SECRET)
    assert (response.status, response.forwarded) == (200, 1)


def test_partially_signed_batches_are_forwarded_whole_when_allowed(
    forwarder: RecordingForwarder,
) -> None:
    # The documented risk of the setting: the appended event gets through.
    signature = hex_hmac(stringify(track(1)))
    tampered = stringify([track(1), track(666)])
    response = handle(
        tampered,
        {"X-Signature": signature},
        forwarder,
        secret=SECRET,
        allow_partially_signed_batches=True,
    )
    assert (response.status, response.forwarded) == (200, 2)
    assert forwarder.events[1].user_id == "u666"


def test_allowing_partially_signed_batches_still_needs_a_good_signature(
    forwarder: RecordingForwarder,
) -> None:
    body = stringify([track(1), track(2)])
    response = handle(
        body,
        {"X-Signature": hex_hmac(stringify(track(2)))},
        forwarder,
        secret=SECRET,
        allow_partially_signed_batches=True,
    )
    assert response.status == 401
    assert forwarder.events == []


# --- the secret -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", "  \n"], ids=["empty", "blank"])
@pytest.mark.parametrize("entry", ["handle", "asgi_app", "wsgi_app", "sign"])
def test_an_empty_secret_is_a_configuration_error(
    forwarder: RecordingForwarder, entry: str, secret: str
) -> None:
    calls: dict[str, Callable[[], object]] = {
        "handle": lambda: handle(
            b"{}", {"X-Signature": hex_hmac(b"{}")}, forwarder, secret=secret
        ),
        "asgi_app": lambda: asgi_app(forwarder, secret=secret),
        "wsgi_app": lambda: wsgi_app(forwarder, secret=secret),
        "sign": lambda: sign(b"{}", secret),
    }
    with pytest.raises(ConfigurationError, match=r"^secret: is empty"):
        calls[entry]()
    assert forwarder.events == []


def test_a_secret_that_cannot_be_utf8_is_a_configuration_error(
    forwarder: RecordingForwarder,
) -> None:
    # os.environ holds undecodable bytes as lone surrogates; HMAC would fail on every request.
    secret = "whsec-\udcff-not-utf8"
    for build in (asgi_app, wsgi_app):
        with pytest.raises(ConfigurationError, match=r"^secret: is not valid UTF-8 text$"):
            build(forwarder, secret=secret)


def test_a_secret_that_is_not_text_is_a_configuration_error(
    forwarder: RecordingForwarder,
) -> None:
    with pytest.raises(ConfigurationError, match=r"^secret: must be a string"):
        handle(b"{}", {}, forwarder, secret=b"bytes-secret")  # type: ignore[arg-type]


# --- hostile bodies: a 4xx, never an exception ------------------------------------------


def handle_at_stack_depth(frames: int, body: bytes, signature: str) -> WebhookResponse:
    """``handle`` called ``frames`` frames deeper, as inside a server's request handling."""
    if frames:
        return handle_at_stack_depth(frames - 1, body, signature)
    return handle(body, {"X-Signature": signature}, RecordingForwarder(), secret=SECRET)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE = {
    "utf-16": stringify([track(1)]).decode().encode("utf-16-le"),
    "utf-16-bom": stringify([track(1)]).decode().encode("utf-16"),
    "utf-32": stringify(track(1)).decode().encode("utf-32"),
    "lone-surrogate": b'[{"a":"\\ud800"}]',
    "lone-surrogate-event": b'[{"type":"track","event":"\\udfff","userId":"u1"}]',
    "nested-980": nested(980),
    "nested-980-first": b"[" + nested(979) + b",{}]",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("signature", ["0" * 40, "not hex", "é"], ids=["zeros", "text", "latin"])
def test_a_hostile_body_with_a_wrong_signature_is_unauthorized(
    body: bytes, signature: str
) -> None:
    for frames in (0, 15, 30, 45, 60):
        assert handle_at_stack_depth(frames, body, signature).status == 401


@pytest.mark.parametrize("depth", range(950, 1001, 5))
def test_a_deeply_nested_array_is_never_a_server_error_at_any_stack_depth(depth: int) -> None:
    # Where the nesting exhausts the stack depends on the Python version and on
    # how deep the server already is: probe around Python's default limit of 1000.
    for body in (nested(depth), b"[" + nested(depth) + b",{}]"):
        for frames in (0, 20, 40, 60):
            assert handle_at_stack_depth(frames, body, "0" * 40).status == 401
            for signature in (sign(body, SECRET), hex_hmac(body)):
                # Signed: unverifiable or unparsable here (4xx), or a batch of rejected non-events.
                response = handle_at_stack_depth(frames, body, signature)
                assert response.status in (200, 400, 401, 403)
                assert response.forwarded == 0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_body_signed_whole_but_not_utf8_is_a_bad_request(
    forwarder: RecordingForwarder, encoding: str
) -> None:
    # json.loads would take it; Segment sends UTF-8.
    body = stringify(track(1)).decode().encode(encoding)
    response = handle(body, {"X-Signature": hex_hmac(body)}, forwarder, secret=SECRET)
    assert response.status == 400
    assert forwarder.events == []


def test_a_lone_surrogate_is_signed_as_json_stringify_escapes_it(
    forwarder: RecordingForwarder,
) -> None:
    # Since ES2019 JSON.stringify writes a lone surrogate as an escape, so Segment
    # signs its ASCII text; the event then fails parsing like any other.
    first = b'{"type":"track","event":"\\ud800","userId":"u1"}'
    body = b"[" + first + b"]"
    assert sign(body, SECRET) == hex_hmac(first)
    response = handle(body, {"X-Signature": hex_hmac(first)}, forwarder, secret=SECRET)
    assert response.status < 500


def test_a_text_body_is_taken_as_its_utf8_bytes(forwarder: RecordingForwarder) -> None:
    # e.g. AWS Lambda's event["body"].
    body = stringify(track(1, properties={"city": "Zürich"}))
    response = handle(body.decode(), {"X-Signature": hex_hmac(body)}, forwarder, secret=SECRET)
    assert (response.status, response.forwarded) == (200, 1)


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_a_bytes_like_body_is_accepted(
    forwarder: RecordingForwarder, wrap: Callable[[bytes], Any]
) -> None:
    body = stringify(track(1))
    response = handle(wrap(body), {"X-Signature": hex_hmac(body)}, forwarder, secret=SECRET)
    assert (response.status, response.forwarded) == (200, 1)


# --- items that are not events --------------------------------------------------------


@pytest.mark.parametrize("secret", [None, SECRET], ids=["unsigned", "signed-whole"])
def test_a_json_string_holding_an_event_is_not_an_event(secret: str | None) -> None:
    forwarder = ReportingForwarder()
    body = stringify([track(1), json.dumps(track(666))])
    response = handle(body, {"X-Signature": hex_hmac(body)}, forwarder, secret=secret)
    assert (response.status, response.forwarded, response.rejected) == (200, 1, 1)
    assert [e.user_id for e in forwarder.events] == ["u1"]
    [(error, _)] = forwarder.reported
    assert isinstance(error, InvalidEventPayload)
    assert str(error) == "message must be a JSON object, not string @ $ (item 1)"


def test_a_batch_of_one_json_string_forwards_nothing() -> None:
    forwarder = ReportingForwarder()
    body = stringify([json.dumps(track(666))])
    response = handle(body, {"X-Signature": sign(body, SECRET)}, forwarder, secret=SECRET)
    assert (response.status, response.rejected, forwarder.events) == (200, 1, [])


def test_an_unexpected_parse_failure_is_rejected_not_retried(
    forwarder: RecordingForwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing is deterministic: a 500 would make Segment resend the same
    # request for four hours, and hold back the events after it.
    import lago_segment.events

    def broken(item: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(lago_segment.events, "parse_event", broken)
    response = handle(stringify([track(1), track(2)]), {}, forwarder)
    assert (response.status, response.rejected) == (200, 2)


# --- replay ---------------------------------------------------------------------------

SPEC = {
    "rules": [
        {
            "name": "api-calls",
            "when": 'type = "track" and event = "API Call"',
            "code": "api_calls",
            "external_subscription_id": {"@path": "$.properties.sub"},
        }
    ]
}


@pytest.mark.parametrize("delivered_before_replay", [True, False])
def test_a_replayed_signed_request_bills_each_event_once(delivered_before_replay: bool) -> None:
    events = [
        track(n, properties={"sub": "sub-1"}, timestamp="2026-01-01T00:00:00Z") for n in (1, 2)
    ]
    body = stringify(events)
    headers = {"X-Signature": hex_hmac(body)}
    with FakeLagoFixture() as lago:
        forwarder = lago.forwarder(SPEC, flush_at_exit=False)
        first = handle(body, headers, forwarder, secret=SECRET)
        if delivered_before_replay:
            forwarder.flush()
        replayed = handle(body, headers, forwarder, secret=SECRET)
        lago.close()
        assert (first.forwarded, replayed.forwarded) == (2, 2)
        lago.assert_stored(transaction_ids=["m1", "m2"])


# --- anything in, a 2xx or 4xx out ----------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_EVENTS = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "identify", "Track", "bogus"])},
    optional={
        "event": st.text(max_size=8) | st.integers(),
        "userId": st.text(max_size=8) | st.integers() | st.none(),
        "messageId": st.text(max_size=8),
        "timestamp": st.text(max_size=25),
        "properties": _JSON,
        "context": _JSON,
    },
)
_BODIES = (
    st.binary(max_size=300)
    | st.text(max_size=300)
    | _JSON.map(stringify)
    | st.lists(_EVENTS | _JSON, max_size=4).map(stringify)
    | _EVENTS.map(stringify)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=_BODIES,
    headers=st.dictionaries(st.text(max_size=12), st.text(max_size=45), max_size=3),
    signature=st.sampled_from(["segment", "whole", "given", "none"]),
    secret=st.sampled_from([None, SECRET]),
    allow=st.booleans(),
)
def test_any_body_and_headers_get_a_2xx_or_4xx_answer(
    body: bytes | str,
    headers: dict[str, str],
    signature: str,
    secret: str | None,
    allow: bool,
) -> None:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if signature == "segment":
        headers["X-Signature"] = sign(body, SECRET)
    elif signature == "whole":
        headers["x-signature"] = hex_hmac(raw)
    forwarder = RecordingForwarder()
    try:
        response = handle(
            body,
            headers,
            forwarder,
            secret=secret,
            on_error=lambda error, event: None,
            allow_partially_signed_batches=allow,
        )
    except LagoSegmentError:
        return
    assert 200 <= response.status < 500
    assert response.json()["status"] in ("ok", "error")
    assert response.forwarded == len(forwarder.events)
