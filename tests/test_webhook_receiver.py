"""The webhook receiver's no-I/O core: ``handle(body, headers, forwarder)``."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from support_integrations import RecordingForwarder, ReportingForwarder
from support_webhooks import stringify, track

from lago_segment.errors import (
    DropEvent,
    EventNotSupported,
    ForwarderClosedError,
    InvalidEventPayload,
    MappingError,
    QueueFullError,
    RetryError,
    ValidationError,
)
from lago_segment.events import Track
from lago_segment.webhook import asgi_app, handle, sign, wsgi_app

SECRET = "whsec-do-not-leak-3141"


def hex_hmac(data: bytes) -> str:
    return hmac.new(SECRET.encode(), data, hashlib.sha1).hexdigest()


def test_an_event_is_parsed_and_forwarded(forwarder: RecordingForwarder) -> None:
    response = handle(stringify(track()), {}, forwarder)
    assert response.status == 200
    [event] = forwarder.events
    assert isinstance(event, Track)
    assert event.message_id == "m1"


def test_a_batch_is_forwarded_in_order(forwarder: RecordingForwarder) -> None:
    response = handle(stringify([track(1), track(2), track(3)]), {}, forwarder)
    assert [e.message_id for e in forwarder.events] == ["m1", "m2", "m3"]
    assert (response.received, response.forwarded) == (3, 3)


def test_the_response_body_is_short_json_with_the_counters(forwarder: RecordingForwarder) -> None:
    response = handle(stringify([track(), {"type": "bogus"}]), {}, forwarder)
    assert response.json() == {
        "status": "ok",
        "received": 2,
        "forwarded": 1,
        "unsupported": 1,
        "rejected": 0,
        "dropped": 0,
    }
    assert ("Content-Type", "application/json") in response.headers


def test_an_empty_batch_is_fine(forwarder: RecordingForwarder) -> None:
    response = handle(b"[]", {}, forwarder)
    assert (response.status, response.received) == (200, 0)


# --- signatures ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["X-Signature", "x-signature", "X-SIGNATURE"])
def test_a_signed_event_is_accepted_whatever_the_header_case(
    forwarder: RecordingForwarder, name: str
) -> None:
    body = stringify(track())
    response = handle(body, {name: hex_hmac(body)}, forwarder, secret=SECRET)
    assert response.status == 200
    assert len(forwarder.events) == 1


def test_a_missing_signature_is_refused_when_a_secret_is_set(
    forwarder: RecordingForwarder,
) -> None:
    response = handle(stringify(track()), {}, forwarder, secret=SECRET)
    assert response.status == 401
    assert forwarder.events == []


def test_a_wrong_signature_is_refused(forwarder: RecordingForwarder) -> None:
    body = stringify(track())
    response = handle(body, {"X-Signature": hex_hmac(body + b" ")}, forwarder, secret=SECRET)
    assert response.status == 401
    assert forwarder.events == []


def test_a_signature_with_another_secret_is_refused(forwarder: RecordingForwarder) -> None:
    body = stringify(track())
    response = handle(body, {"X-Signature": sign(body, "other")}, forwarder, secret=SECRET)
    assert response.status == 401


def test_a_batch_is_verified_on_its_first_element_as_json_stringify_writes_it(
    forwarder: RecordingForwarder,
) -> None:
    first = track(1, properties={"city": "Zürich", "b": 1, "a": 2})
    body = stringify([first, track(2)])
    response = handle(
        body,
        {"X-Signature": hex_hmac(stringify(first))},
        forwarder,
        secret=SECRET,
        allow_partially_signed_batches=True,
    )
    assert response.status == 200
    assert response.forwarded == 2


def test_a_batch_signed_with_python_default_separators_is_refused(
    forwarder: RecordingForwarder,
) -> None:
    first = track(1)
    body = stringify([first, track(2)])
    signature = hex_hmac(json.dumps(first).encode())
    response = handle(
        body,
        {"X-Signature": signature},
        forwarder,
        secret=SECRET,
        allow_partially_signed_batches=True,
    )
    assert response.status == 401


def test_a_batch_with_numbers_python_writes_differently_is_verified(
    forwarder: RecordingForwarder,
) -> None:
    # JavaScript writes 1e-7 where Python writes 1e-07: the element's own text is checked.
    first = b'{"type":"track","event":"x","userId":"u","properties":{"rate":1e-7}}'
    body = b"[" + first + b"]"
    response = handle(body, {"X-Signature": hex_hmac(first)}, forwarder, secret=SECRET)
    assert response.status == 200


def test_elements_after_the_first_are_not_forwarded_on_the_first_ones_signature(
    forwarder: RecordingForwarder,
) -> None:
    # Segment's documented behaviour: whoever holds one signed first element
    # could append events, so such a batch is refused by default
    # (tests/test_webhook_security.py covers the setting that allows it).
    first = track(1)
    signature = hex_hmac(stringify(first))
    tampered = stringify([first, track(666)])
    response = handle(tampered, {"X-Signature": signature}, forwarder, secret=SECRET)
    assert response.status == 403
    assert forwarder.events == []


def test_sign_writes_what_segment_sends(forwarder: RecordingForwarder) -> None:
    first = track(1)
    assert sign(stringify(first), SECRET) == hex_hmac(stringify(first))
    assert sign(stringify([first, track(2)]), SECRET) == hex_hmac(stringify(first))


def test_without_a_secret_the_signature_is_not_checked(forwarder: RecordingForwarder) -> None:
    response = handle(stringify(track()), {"X-Signature": "nonsense"}, forwarder)
    assert response.status == 200


def test_an_unsigned_malformed_body_is_refused_as_unauthenticated(
    forwarder: RecordingForwarder,
) -> None:
    assert handle(b"{not json", {}, forwarder, secret=SECRET).status == 401


def test_a_signed_malformed_body_is_a_bad_request(forwarder: RecordingForwarder) -> None:
    body = b"{not json"
    response = handle(body, {"X-Signature": hex_hmac(body)}, forwarder, secret=SECRET)
    assert response.status == 400


def test_the_secret_never_appears_in_responses_reprs_or_logs(
    forwarder: RecordingForwarder, caplog: pytest.LogCaptureFixture
) -> None:
    forwarder.raises = RuntimeError("boom")
    body = stringify(track())
    with caplog.at_level(logging.DEBUG):
        responses = [
            handle(body, {}, forwarder, secret=SECRET),
            handle(body, {"X-Signature": "bad"}, forwarder, secret=SECRET),
            handle(body, {"X-Signature": hex_hmac(body)}, forwarder, secret=SECRET),
        ]
    seen = [repr(r) for r in responses] + [r.body.decode() for r in responses]
    seen += [repr(asgi_app(forwarder, secret=SECRET)), repr(wsgi_app(forwarder, secret=SECRET))]
    seen.append(caplog.text)
    assert all(SECRET not in text for text in seen)


# --- malformed bodies -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe\xfa", b"[" * 100_000 + b"]" * 100_000, b"42", b'"track"', b""],
    ids=["syntax", "not-utf8", "too-deep", "number", "string", "empty"],
)
def test_a_body_that_is_not_a_json_object_or_array_is_a_bad_request(
    forwarder: RecordingForwarder, body: bytes
) -> None:
    response = handle(body, {}, forwarder)
    assert response.status == 400
    assert response.json()["status"] == "error"


def test_a_body_over_the_limit_is_too_large(forwarder: RecordingForwarder) -> None:
    body = stringify(track())
    response = handle(body, {}, forwarder, max_body_bytes=len(body) - 1)
    assert response.status == 413
    assert forwarder.events == []


def test_a_body_at_the_limit_is_accepted(forwarder: RecordingForwarder) -> None:
    body = stringify(track())
    assert handle(body, {}, forwarder, max_body_bytes=len(body)).status == 200


# --- event outcomes ---------------------------------------------------------------


def test_an_unsupported_type_is_answered_200_and_counted_not_reported() -> None:
    forwarder = ReportingForwarder()
    response = handle(stringify({"type": "experiment", "userId": "u"}), {}, forwarder)
    assert (response.status, response.unsupported, response.forwarded) == (200, 1, 0)
    assert forwarder.events == forwarder.reported == []


def test_a_supported_type_in_another_case_is_forwarded(forwarder: RecordingForwarder) -> None:
    response = handle(stringify(track(type="Track")), {}, forwarder)
    assert response.forwarded == 1


@pytest.mark.parametrize(
    "item",
    [track(1, event=None), {"event": "no type"}, "a string", {"type": 7}],
    ids=["missing-field", "no-type", "not-an-object", "type-not-a-string"],
)
def test_an_invalid_event_is_rejected_and_reported(item: object) -> None:
    forwarder = ReportingForwarder()
    response = handle(stringify([track(1), item]), {}, forwarder)
    assert (response.status, response.forwarded, response.rejected) == (200, 1, 1)
    [(error, _)] = forwarder.reported
    assert isinstance(error, InvalidEventPayload)
    assert error.index == 1


@pytest.mark.parametrize(
    "error",
    [MappingError("no rule"), ValidationError("bad"), InvalidEventPayload("bad", "$.x")],
    ids=type,
)
def test_an_event_our_side_refuses_is_reported_and_answered_200(error: Exception) -> None:
    forwarder = ReportingForwarder()
    forwarder.raises = error
    response = handle(stringify(track()), {}, forwarder)
    assert (response.status, response.rejected) == (200, 1)
    assert forwarder.reported[0][0] is error
    assert forwarder.reported[0][1]["messageId"] == "m1"


def test_a_dropped_event_is_counted_not_reported() -> None:
    forwarder = ReportingForwarder()
    forwarder.raises = DropEvent()
    response = handle(stringify(track()), {}, forwarder)
    assert (response.status, response.dropped) == (200, 1)
    assert forwarder.reported == []


def test_an_event_a_handler_does_not_support_is_counted_and_reported() -> None:
    forwarder = ReportingForwarder()
    forwarder.raises = EventNotSupported("no onTrack")
    response = handle(stringify(track()), {}, forwarder)
    assert (response.status, response.unsupported) == (200, 1)
    assert len(forwarder.reported) == 1


@pytest.mark.parametrize(
    "error",
    [QueueFullError("full"), ForwarderClosedError("closed"), RetryError("later"), OSError()],
    ids=type,
)
def test_a_transient_failure_is_answered_500_so_segment_retries(error: Exception) -> None:
    forwarder = ReportingForwarder()
    forwarder.raises = error
    response = handle(stringify([track(1), track(2)]), {}, forwarder)
    assert response.status == 500
    assert response.json()["status"] == "error"
    assert [e for e, _ in forwarder.reported] == [error]


def test_after_a_transient_failure_the_rest_of_the_batch_is_left_for_the_retry() -> None:
    class FailsSecond(RecordingForwarder):
        def forward(self, event: Any, /) -> None:
            if self.events:
                raise QueueFullError("full")
            super().forward(event)

    forwarder = FailsSecond()
    response = handle(stringify([track(1), track(2), track(3)]), {}, forwarder)
    assert (response.status, response.forwarded) == (500, 1)
    assert len(forwarder.events) == 1


def test_an_explicit_error_callback_wins_over_the_forwarders_report() -> None:
    forwarder = ReportingForwarder()
    forwarder.raises = MappingError("no rule")
    seen: list[Exception] = []
    handle(stringify(track()), {}, forwarder, on_error=lambda e, _: seen.append(e))
    assert seen == [forwarder.raises]
    assert forwarder.reported == []


def test_without_any_callback_failures_are_logged(
    forwarder: RecordingForwarder, caplog: pytest.LogCaptureFixture
) -> None:
    forwarder.raises = MappingError("no rule matched")
    with caplog.at_level(logging.ERROR, logger="lago_segment"):
        handle(stringify(track()), {}, forwarder)
    assert "no rule matched" in caplog.text
    assert "m1" in caplog.text


def test_the_docstring_examples_run() -> None:
    import doctest

    from lago_segment.webhook import _receiver

    result = doctest.testmod(_receiver)
    assert (result.failed, result.attempted > 0) == (0, True)
