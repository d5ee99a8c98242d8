"""Lago's events.errors webhook end to end over loopback HTTP: FakeLago stores events,
post-validates them against its billable metrics and posts a signed webhook to the
receiver, served by uvicorn (ASGI) or wsgiref (WSGI), in hmac and jwt modes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest

pytest.importorskip("cryptography")
from support_servers import call_asgi, serve_asgi, serve_wsgi

from lago_segment.client import LagoClient
from lago_segment.lago_webhooks import (
    LagoPublicKey,
    RejectedEvent,
    asgi_app,
    wsgi_app,
)
from lago_segment.mapping import MappingSpec
from lago_segment.testing import FakeLago

API_KEY = "lago-webhook-test-key"
PATH = "/lago"

SPEC = MappingSpec.from_dict(
    {
        "rules": [
            {
                "name": "api-calls",
                "when": 'type = "track" and event = "API Call"',
                "code": "api_calls",
                "external_subscription_id": {"@path": "$.userId"},
                "properties": {"region": {"@path": "$.properties.region"}},
            },
            {
                "name": "storage",
                "when": 'type = "track"',
                "code": "storage_gb",
                "external_subscription_id": {"@path": "$.userId"},
                "properties": {"gb": {"@path": "$.properties.gb"}},
            },
        ]
    }
)


def segment(message_id: str, event: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": event,
        "userId": "sub-1",
        "messageId": message_id,
        "timestamp": "2026-01-01T00:00:00Z",
        "properties": properties,
    }


SERVERS: dict[str, tuple[Callable[..., Any], Callable[[Any], Iterator[str]]]] = {
    "asgi": (asgi_app, partial(serve_asgi, path=PATH)),
    "wsgi": (wsgi_app, partial(serve_wsgi, path=PATH)),
}


@pytest.fixture
def fake() -> Iterator[tuple[FakeLago, str]]:
    fake = FakeLago(api_key=API_KEY)
    fake.add_billable_metric("api_calls", filters={"region": ["eu", "us"]})
    fake.add_billable_metric("storage_gb", "sum_agg", field_name="gb")
    with fake.serve() as url:
        yield fake, url


def deliver(url: str, events: list[dict[str, Any]]) -> None:
    with LagoClient(API_KEY, api_url=url) as client:
        result = client.send_batch([e for event in events for e in SPEC.map(event)])
    assert not result.failed  # Lago takes them all with 200: the trouble comes later


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("algorithm", ["hmac", "jwt"])
def test_events_lago_refuses_later_come_back_traced_to_message_and_rule(fake, server, algorithm):
    lago, lago_url = fake
    deliver(
        lago_url,
        [
            segment("m-ok", "API Call", region="eu", gb=2),
            segment("m-region", "API Call", region="mars", gb=1),
            segment("m-nogb", "Page Upload"),
        ],
    )
    got: list[RejectedEvent] = []
    build, serve = SERVERS[server]
    keys: dict[str, Any] = (
        {"hmac_key": lago.webhook_hmac_key}
        if algorithm == "hmac"
        else {"public_key": LagoPublicKey.from_lago(API_KEY, api_url=lago_url)}
    )
    app = build(got.append, spec=SPEC, path=PATH, **keys)
    for url in serve(app):
        response = lago.send_events_errors(url, algorithm=algorithm)
        assert response is not None
        assert response.status_code == 200
        assert response.json()["rejected"] == 2
    assert sorted(got, key=lambda r: r.transaction_id) == [
        RejectedEvent(
            "missing_aggregation_property",
            "m-nogb",
            "m-nogb",
            None,
            response.request.headers["X-Lago-Unique-Key"],
            "fake-organization",
        ),
        RejectedEvent(
            "invalid_filter_values",
            "m-region:api-calls",
            "m-region",
            "api-calls",
            response.request.headers["X-Lago-Unique-Key"],
            "fake-organization",
        ),
    ]


@pytest.mark.parametrize("server", SERVERS)
def test_lagos_retries_of_one_webhook_are_reported_once(fake, server):
    lago, _ = fake
    got: list[RejectedEvent] = []
    build, serve = SERVERS[server]
    payload = {
        "webhook_type": "events.errors",
        "object_type": "events_errors",
        "events_errors": {"invalid_code": ["m1"]},
    }
    for url in serve(build(got.append, hmac_key=lago.webhook_hmac_key, path=PATH)):
        first = lago.send_webhook(url, payload, unique_key="wh-7")
        retry = lago.send_webhook(url, payload, unique_key="wh-7")
    assert (first.status_code, retry.status_code) == (200, 200)
    assert retry.json()["duplicate"] is True
    assert [r.transaction_id for r in got] == ["m1"]


@pytest.mark.parametrize("server", SERVERS)
def test_an_unsigned_webhook_over_http_is_refused(fake, server):
    lago, _ = fake
    got: list[RejectedEvent] = []
    build, serve = SERVERS[server]
    body = json.dumps({"webhook_type": "events.errors", "events_errors": {"invalid_code": ["x"]}})
    for url in serve(build(got.append, hmac_key=lago.webhook_hmac_key, path=PATH)):
        response = httpx.post(url, content=body)
        wrong_path = httpx.post(url + "/other", content=body)
        wrong_method = httpx.get(url)
    assert response.status_code == 401
    assert (wrong_path.status_code, wrong_method.status_code) == (404, 405)
    assert wrong_method.headers["Allow"] == "POST"
    assert got == []


def test_the_asgi_app_closes_a_websocket_instead_of_raising(fake):
    lago, _ = fake
    app = asgi_app(print, hmac_key=lago.webhook_hmac_key)
    sent, _ = call_asgi(app, {"type": "websocket", "path": "/"}, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_the_asgi_app_fetches_the_public_key_at_start_up(fake):
    _lago, lago_url = fake
    key = LagoPublicKey.from_lago(API_KEY, api_url=lago_url)
    for _url in serve_asgi(asgi_app(print, public_key=key, path=PATH), PATH):
        assert key.loaded


def test_the_dead_letter_option_writes_each_rejected_event(fake, tmp_path):
    lago, lago_url = fake
    deliver(lago_url, [segment("m-nogb", "Page Upload")])
    path = tmp_path / "rejected.jsonl"
    app = wsgi_app(hmac_key=lago.webhook_hmac_key, dead_letter=path, spec=SPEC, path=PATH)
    for url in serve_wsgi(app, PATH):
        response = lago.send_events_errors(url)
        assert response is not None
        assert response.status_code == 200
    app.close()
    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    # One rule matched, so the transaction_id is the bare messageId: the rule is unknown.
    assert (record["reason"], record["message_id"], record["rule"]) == (
        "missing_aggregation_property",
        "m-nogb",
        None,
    )
