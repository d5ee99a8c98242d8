"""The ASGI and WSGI adapters: through real HTTP on loopback, and at the protocol level."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support_integrations import RecordingForwarder
from support_servers import call_asgi, serve_asgi, serve_wsgi
from support_webhooks import stringify

from lago_segment.testing import FakeLagoFixture
from lago_segment.webhook import ASGIApp, WSGIApp, asgi_app, sign, wsgi_app

SECRET = "whsec-adapters-2718"
PATH = "/segment"
LIMIT = 4096
EVENT = {"type": "track", "event": "API Call", "userId": "u1", "messageId": "m1"}


SERVERS: dict[str, tuple[Callable[..., Any], Callable[[Any], Iterator[str]]]] = {
    "asgi": (asgi_app, serve_asgi),
    "wsgi": (wsgi_app, serve_wsgi),
}


@pytest.fixture(params=SERVERS)
def url(request: pytest.FixtureRequest, forwarder: RecordingForwarder) -> Iterator[str]:
    """The URL of the webhook endpoint, served by uvicorn (ASGI) or wsgiref (WSGI)."""
    build, serve = SERVERS[request.param]
    app = build(forwarder, secret=SECRET, path=PATH, max_body_bytes=LIMIT)
    for base in serve(app):
        yield base + PATH


def post(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(url, content=body, headers={"User-Agent": "Segment.io/1.0", **headers})


def test_a_signed_event_is_forwarded(url: str, forwarder: RecordingForwarder) -> None:
    body = stringify(EVENT)
    response = post(url, body, **{"X-Signature": sign(body, SECRET)})
    assert response.status_code == 200
    assert response.json()["forwarded"] == 1
    assert [e.message_id for e in forwarder.events] == ["m1"]


def test_a_batch_signed_as_a_whole_is_forwarded(url: str, forwarder: RecordingForwarder) -> None:
    second = {**EVENT, "messageId": "m2", "properties": {"city": "Zürich"}}
    body = stringify([EVENT, second])
    signature = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    response = post(url, body, **{"X-Signature": signature})
    assert response.status_code == 200
    assert [e.message_id for e in forwarder.events] == ["m1", "m2"]


def test_a_batch_signed_through_its_first_event_is_forbidden(
    url: str, forwarder: RecordingForwarder
) -> None:
    body = stringify([EVENT, {**EVENT, "messageId": "m2"}])
    response = post(url, body, **{"X-Signature": sign(body, SECRET)})
    assert response.status_code == 403
    assert forwarder.events == []


@pytest.mark.parametrize("server", SERVERS)
def test_a_batch_signed_through_its_first_event_is_forwarded_only_when_allowed(
    server: str, forwarder: RecordingForwarder
) -> None:
    build, serve = SERVERS[server]
    body = stringify([EVENT, {**EVENT, "messageId": "m2"}])
    app = build(forwarder, secret=SECRET, allow_partially_signed_batches=True)
    for base in serve(app):
        response = post(base, body, **{"X-Signature": sign(body, SECRET)})
    assert response.status_code == 200
    assert [e.message_id for e in forwarder.events] == ["m1", "m2"]


def test_a_bad_signature_is_unauthorized(url: str, forwarder: RecordingForwarder) -> None:
    response = post(url, stringify(EVENT), **{"X-Signature": "0" * 40})
    assert response.status_code == 401
    assert forwarder.events == []


def test_only_post_is_allowed(url: str) -> None:
    response = httpx.get(url)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_another_path_is_not_found(url: str) -> None:
    assert post(url + "/other", stringify(EVENT)).status_code == 404


def test_a_declared_length_over_the_limit_is_too_large(
    url: str, forwarder: RecordingForwarder
) -> None:
    body = stringify([EVENT] * 100)
    assert len(body) > LIMIT
    response = post(url, body, **{"X-Signature": sign(body, SECRET)})
    assert response.status_code == 413
    assert forwarder.events == []


def test_a_transient_failure_is_a_500(url: str, forwarder: RecordingForwarder) -> None:
    forwarder.raises = RuntimeError("queue gone")
    body = stringify(EVENT)
    response = post(url, body, **{"X-Signature": sign(body, SECRET)})
    assert response.status_code == 500
    assert "queue gone" not in response.text


# --- the ASGI protocol, without a server ---------------------------------------------


def run_asgi(
    app: ASGIApp, messages: list[dict[str, Any]], *, length: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Run one HTTP request through ``app``; return what it sent and how many messages it read."""
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return call_asgi(app, scope, messages)


def chunks(*parts: bytes) -> list[dict[str, Any]]:
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def test_asgi_stops_reading_a_streamed_body_past_the_limit(
    forwarder: RecordingForwarder,
) -> None:
    app = asgi_app(forwarder, max_body_bytes=10)
    sent, read = run_asgi(app, chunks(b"x" * 6, b"x" * 6, b"x" * 6, b"x" * 6))
    assert sent[0]["status"] == 413
    assert read == 2


def test_asgi_answers_a_declared_length_over_the_limit_without_reading(
    forwarder: RecordingForwarder,
) -> None:
    sent, read = run_asgi(asgi_app(forwarder, max_body_bytes=10), chunks(b"x"), length=11)
    assert (sent[0]["status"], read) == (413, 0)


def test_asgi_assembles_a_body_sent_in_chunks(forwarder: RecordingForwarder) -> None:
    body = stringify(EVENT)
    sent, _ = run_asgi(asgi_app(forwarder), chunks(body[:5], body[5:]))
    assert sent[0]["status"] == 200
    assert len(forwarder.events) == 1


def test_asgi_sends_nothing_when_the_client_disconnects(forwarder: RecordingForwarder) -> None:
    sent, _ = run_asgi(asgi_app(forwarder), [*chunks(b"{", b"}")[:1], {"type": "http.disconnect"}])
    assert sent == []
    assert forwarder.events == []


def test_asgi_completes_the_lifespan_protocol(forwarder: RecordingForwarder) -> None:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent, _ = call_asgi(asgi_app(forwarder), {"type": "lifespan"}, messages)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# --- the WSGI protocol, without a server ---------------------------------------------


class CountingInput(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads += 1
        return super().read(size)


def run_wsgi(app: WSGIApp, body: bytes, **environ: Any) -> tuple[str, bytes, CountingInput]:
    stream = CountingInput(body)
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "wsgi.input": stream, **environ}
    statuses: list[str] = []
    out = b"".join(app(env, lambda status, headers: statuses.append(status)))
    return statuses[0], out, stream


def test_wsgi_answers_a_declared_length_over_the_limit_without_reading(
    forwarder: RecordingForwarder,
) -> None:
    status, _, stream = run_wsgi(
        wsgi_app(forwarder, max_body_bytes=10), b"x" * 11, CONTENT_LENGTH="11"
    )
    assert status.startswith("413")
    assert stream.reads == 0


def test_wsgi_stops_reading_an_unsized_body_past_the_limit(
    forwarder: RecordingForwarder,
) -> None:
    app = wsgi_app(forwarder, max_body_bytes=10)
    status, _, stream = run_wsgi(app, b"x" * 100_000, **{"wsgi.input_terminated": True})
    assert status.startswith("413")
    assert stream.tell() == 11


def test_wsgi_requires_a_length_when_the_server_cannot_end_the_body(
    forwarder: RecordingForwarder,
) -> None:
    status, _, stream = run_wsgi(wsgi_app(forwarder), stringify(EVENT))
    assert status.startswith("411")
    assert stream.reads == 0


def test_wsgi_reads_no_further_than_content_length(forwarder: RecordingForwarder) -> None:
    body = stringify(EVENT)
    status, _, stream = run_wsgi(
        wsgi_app(forwarder), body + b"garbage", CONTENT_LENGTH=str(len(body))
    )
    assert status == "200 OK"
    assert stream.tell() == len(body)


def test_asgi_closes_a_websocket_instead_of_raising(forwarder: RecordingForwarder) -> None:
    scope = {"type": "websocket", "path": "/"}
    sent, _ = call_asgi(asgi_app(forwarder), scope, [{"type": "websocket.connect"}])
    assert [m["type"] for m in sent] == ["websocket.close"]


# --- hostile requests through real servers -------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_log(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the servers logged: uvicorn's records and wsgiref's stderr, tracebacks included."""
    handler = _Records()
    # uvicorn's own loggers do not propagate to the root; wsgiref prints to sys.stderr.
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)

    def text() -> str:
        lines = [handler.format(record) for record in handler.records]
        lines += [r.exc_text or "" for r in handler.records if r.exc_info]
        lines += [
            f"(a record with a traceback: {r.getMessage()})" for r in handler.records if r.exc_info
        ]
        return "\n".join(lines) + capsys.readouterr().err

    yield text
    for logger in loggers:
        logger.removeHandler(handler)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE = {
    "utf-16": stringify([EVENT]).decode().encode("utf-16-le"),
    "utf-16-bom": stringify(EVENT).decode().encode("utf-16"),
    "lone-surrogate": b'[{"a":"\\ud800"}]',
    "lone-surrogate-event": b'[{"type":"track","event":"\\ud800","userId":"u1"}]',
    "json-string-items": stringify([EVENT, json.dumps({**EVENT, "messageId": "evil"})]),
    "first-element-signed": stringify([EVENT, {**EVENT, "messageId": "evil"}]),
    **{f"nested-{depth}": nested(depth) for depth in range(960, 1001, 4)},
    **{f"nested-{depth}-first": b"[" + nested(depth) + b",{}]" for depth in range(960, 1001, 8)},
}


def test_hostile_bodies_get_a_4xx_and_no_traceback_in_the_server_log(
    url: str, forwarder: RecordingForwarder, server_log: Callable[[], str]
) -> None:
    with httpx.Client(headers={"User-Agent": "Segment.io/1.0"}) as client:
        for name, body in HOSTILE.items():
            response = client.post(url, content=body, headers={"X-Signature": "0" * 40})
            assert response.status_code == 401, name
            # Signed the way Segment signs: at worst a batch of rejected non-events.
            response = client.post(url, content=body, headers={"X-Signature": sign(body, SECRET)})
            assert 400 <= response.status_code < 500 or response.status_code == 200, name
    assert "evil" not in [e.message_id for e in forwarder.events]
    log = server_log()
    assert "Traceback" not in log
    assert "(a record with a traceback" not in log


# --- replay, end to end ----------------------------------------------------------------

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


@pytest.mark.parametrize("server", SERVERS)
def test_a_replayed_request_is_billed_once(server: str) -> None:
    build, serve = SERVERS[server]
    events = [
        {
            **EVENT,
            "messageId": f"m{n}",
            "properties": {"sub": "sub-1"},
            "timestamp": "2026-01-01T00:00:00Z",
        }
        for n in (1, 2)
    ]
    body = stringify(events)
    signature = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    with FakeLagoFixture() as lago:
        forwarder = lago.forwarder(SPEC, flush_at_exit=False)
        for base in serve(build(forwarder, secret=SECRET, path=PATH)):
            statuses = [post(base + PATH, body, **{"X-Signature": signature}).status_code]
            forwarder.flush()
            # The same request again, as a retrying Segment or an attacker would send it.
            statuses.append(post(base + PATH, body, **{"X-Signature": signature}).status_code)
        lago.close()
        assert statuses == [200, 200]
        lago.assert_stored(transaction_ids=["m1", "m2"])
