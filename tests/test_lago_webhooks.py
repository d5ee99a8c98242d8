"""The Lago webhook receiver's I/O-free core: signatures, tracing, duplicates, dead letters."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from typing import Any

import pytest

from lago_segment import LagoEvent
from lago_segment.errors import ConfigurationError
from lago_segment.lago_webhooks import (
    DeadLetterFile,
    LagoPublicKey,
    RejectedEvent,
    SeenWebhooks,
    handle,
    load_public_key,
    sign_hmac,
    trace_transaction_id,
)
from lago_segment.mapping import MappingSpec
from lago_segment.testing import FakeLago

HMAC_KEY = "3f1d0a8e-hmac-signature-token"
ERRORS = {
    "webhook_type": "events.errors",
    "object_type": "events_errors",
    "organization_id": "org-1",
    "events_errors": {
        "invalid_code": ["m1:api-calls", "m2"],
        "missing_aggregation_property": ["m3:storage"],
        "missing_group_key": None,
        "invalid_filter_values": ["m4"],
    },
}


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def hmac_headers(body: bytes, key: str = HMAC_KEY, unique: str | None = "wh-1") -> dict[str, str]:
    headers = {"X-Lago-Signature": sign_hmac(body, key), "X-Lago-Signature-Algorithm": "hmac"}
    if unique:
        headers["X-Lago-Unique-Key"] = unique
    return headers


def spec(*rules: dict[str, Any]) -> MappingSpec:
    base = {"when": 'type = "track"', "code": "c", "external_subscription_id": "s"}
    return MappingSpec.from_dict({"rules": [{**base, **rule} for rule in rules]})


def test_each_rejected_transaction_id_becomes_one_record_with_reason_message_id_and_rule():
    got: list[RejectedEvent] = []
    body = body_of(ERRORS)
    response = handle(body, hmac_headers(body), got.append, hmac_key=HMAC_KEY)
    assert response.status == 200
    assert response.json() == {"status": "ok", "webhook_type": "events.errors", "rejected": 4}
    assert got == [
        RejectedEvent("invalid_code", "m1:api-calls", "m1", "api-calls", "wh-1", "org-1"),
        RejectedEvent("invalid_code", "m2", "m2", None, "wh-1", "org-1"),
        RejectedEvent(
            "missing_aggregation_property", "m3:storage", "m3", "storage", "wh-1", "org-1"
        ),
        RejectedEvent("invalid_filter_values", "m4", "m4", None, "wh-1", "org-1"),
    ]
    assert response.rejected == tuple(got)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Lago-Signature-Algorithm": "hmac"},
        {"X-Lago-Signature": "AAAA", "X-Lago-Signature-Algorithm": "hmac"},
        {
            "X-Lago-Signature": sign_hmac(body_of(ERRORS), "another-key"),
            "X-Lago-Signature-Algorithm": "hmac",
        },
        {
            "X-Lago-Signature": sign_hmac(body_of(ERRORS), HMAC_KEY),
            "X-Lago-Signature-Algorithm": "jwt",
        },
        {"X-Lago-Signature": sign_hmac(body_of(ERRORS), HMAC_KEY)},
    ],
    ids=["unsigned", "no-signature", "garbage", "wrong-key", "jwt-not-configured", "no-algorithm"],
)
def test_unsigned_or_wrongly_signed_webhooks_are_refused_and_nothing_is_reported(headers):
    got: list[RejectedEvent] = []
    response = handle(body_of(ERRORS), headers, got.append, hmac_key=HMAC_KEY)
    assert response.status == 401
    assert got == []


def test_a_body_changed_after_signing_is_refused():
    body = body_of(ERRORS)
    tampered = body.replace(b"m2", b"m9")
    assert handle(tampered, hmac_headers(body), print, hmac_key=HMAC_KEY).status == 401


def test_a_receiver_without_any_key_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="unsigned is refused"):
        handle(b"{}", {}, print)


def test_a_retried_delivery_with_the_same_unique_key_is_reported_once():
    seen = SeenWebhooks()
    got: list[RejectedEvent] = []
    body = body_of(ERRORS)
    first = handle(body, hmac_headers(body), got.append, hmac_key=HMAC_KEY, seen=seen)
    again = handle(body, hmac_headers(body), got.append, hmac_key=HMAC_KEY, seen=seen)
    assert (first.status, first.duplicate) == (200, False)
    assert (again.status, again.duplicate) == (200, True)
    assert len(got) == 4


def test_a_callback_that_raises_gets_500_and_lagos_retry_is_handled():
    seen = SeenWebhooks()
    calls: list[RejectedEvent] = []

    def flaky(record: RejectedEvent) -> None:
        calls.append(record)
        if len(calls) == 1:
            raise OSError("disk full")

    body = body_of(ERRORS)
    assert handle(body, hmac_headers(body), flaky, hmac_key=HMAC_KEY, seen=seen).status == 500
    retry = handle(body, hmac_headers(body), flaky, hmac_key=HMAC_KEY, seen=seen)
    assert (retry.status, retry.duplicate, len(retry.rejected)) == (200, False, 4)


def test_a_webhook_being_handled_elsewhere_gets_503_so_lago_retries():
    seen = SeenWebhooks()
    assert seen.claim("wh-1") == "new"
    body = body_of(ERRORS)
    assert handle(body, hmac_headers(body), print, hmac_key=HMAC_KEY, seen=seen).status == 503


def test_seen_webhooks_forgets_the_oldest_keys_past_its_capacity():
    seen = SeenWebhooks(capacity=2)
    for key in ("a", "b", "c"):
        seen.claim(key)
        seen.finish(key, ok=True)
    assert [seen.claim(k) for k in ("b", "c", "a")] == ["done", "done", "new"]


def test_other_webhook_types_are_acknowledged_without_reports():
    got: list[RejectedEvent] = []
    body = body_of({"webhook_type": "invoice.created", "object_type": "invoice", "invoice": {}})
    response = handle(body, hmac_headers(body), got.append, hmac_key=HMAC_KEY)
    assert (response.status, response.webhook_type, got) == (200, "invoice.created", [])


def test_a_body_that_is_not_a_json_object_is_400_once_verified():
    body = b"[1, 2]"
    assert handle(body, hmac_headers(body), print, hmac_key=HMAC_KEY).status == 400


def test_a_body_over_the_limit_is_413():
    body = body_of(ERRORS)
    response = handle(body, hmac_headers(body), print, hmac_key=HMAC_KEY, max_body_bytes=10)
    assert response.status == 413


# -- tracing transaction ids back ---------------------------------------------------------


def test_with_the_spec_only_a_real_rule_name_is_split_off():
    two = spec({"name": "api-calls"}, {"name": "storage"})
    assert trace_transaction_id("m1:api-calls", two) == ("m1", "api-calls")
    # A messageId holding a colon, from a single match: not split.
    assert trace_transaction_id("urn:m1", two) == ("urn:m1", None)
    assert trace_transaction_id("urn:m1:storage", two) == ("urn:m1", "storage")


def test_a_spec_of_one_rule_names_it():
    assert trace_transaction_id("m1", spec({"name": "only"})) == ("m1", "only")


def test_ids_from_rules_that_set_their_own_transaction_id_cannot_be_traced():
    explicit = spec({"name": "own", "transaction_id": {"@path": "$.properties.id"}})
    assert trace_transaction_id("order-42", explicit) == (None, None)


def test_the_trace_matches_how_the_spec_derives_transaction_ids():
    two = spec({"name": "api-calls"}, {"name": "all-tracks"})
    event = {
        "type": "track",
        "event": "x",
        "userId": "u",
        "messageId": "ajs-9",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    for lago_event in two.map(event):
        message_id, rule = trace_transaction_id(lago_event.transaction_id, two)
        assert message_id == "ajs-9"
        assert rule in ("api-calls", "all-tracks")
    (single,) = spec({"name": "one"}).map(event)
    assert trace_transaction_id(single.transaction_id) == ("ajs-9", None)


# -- signatures in jwt mode ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> FakeLago:
    pytest.importorskip("cryptography")
    return FakeLago(api_key="k")


def jwt_headers(
    fake: FakeLago, body: bytes, issuer: str = "https://lago.example"
) -> dict[str, str]:
    from lago_segment.testing._fake_lago_webhooks import sign

    return {
        "X-Lago-Signature": sign(fake, body, "jwt", issuer),
        "X-Lago-Signature-Algorithm": "jwt",
    }


def test_a_jwt_signed_webhook_is_verified_with_the_public_key(fake):
    got: list[RejectedEvent] = []
    body = body_of(ERRORS)
    response = handle(
        body, jwt_headers(fake, body), got.append, public_key=fake.webhook_public_key
    )
    assert response.status == 200
    assert len(got) == 4


def test_a_jwt_from_another_key_or_for_another_body_is_refused(fake):
    other = FakeLago(api_key="k")
    body = body_of(ERRORS)
    key = fake.webhook_public_key
    assert handle(body, jwt_headers(other, body), print, public_key=key).status == 401
    signed_other_body = jwt_headers(fake, b'{"webhook_type":"events.errors"}')
    assert handle(body, signed_other_body, print, public_key=key).status == 401


def test_the_issuer_is_checked_when_given(fake):
    body = body_of(ERRORS)
    headers = jwt_headers(fake, body, issuer="https://evil.example")
    key = LagoPublicKey(fake.webhook_public_key)
    assert (
        handle(body, headers, print, public_key=key, issuer="https://lago.example").status == 401
    )
    good = jwt_headers(fake, body)
    assert handle(body, good, print, public_key=key, issuer="https://lago.example").status == 200


def test_a_token_claiming_another_algorithm_is_refused(fake):
    import base64

    body = body_of(ERRORS)
    token = jwt_headers(fake, body)["X-Lago-Signature"]
    _, claims, signature = token.split(".")
    none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    for forged in (f"{none}.{claims}.", f"{none}.{claims}.{signature}"):
        headers = {"X-Lago-Signature": forged, "X-Lago-Signature-Algorithm": "jwt"}
        assert handle(body, headers, print, public_key=fake.webhook_public_key).status == 401


def test_fake_lagos_jwt_is_a_standard_rs256_token(fake):
    jwt = pytest.importorskip("jwt")
    body = body_of(ERRORS)
    token = jwt_headers(fake, body)["X-Lago-Signature"]
    pem = load_public_key(fake.webhook_public_key)
    claims = jwt.decode(token, pem, algorithms=["RS256"])
    assert claims == {"data": body.decode(), "iss": "https://lago.example"}
    # And a token made by PyJWT verifies with the receiver.
    other = jwt.encode({"data": body.decode(), "iss": "x"}, fake._rsa_key, algorithm="RS256")
    headers = {"X-Lago-Signature": other, "X-Lago-Signature-Algorithm": "jwt"}
    assert handle(body, headers, print, public_key=fake.webhook_public_key).status == 200


def test_a_public_key_that_is_not_one_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="public_key"):
        load_public_key("not a key")


def test_the_public_key_is_fetched_from_lago_once_and_cached(fake):
    with fake.serve() as url:
        before = fake.request_count
        key = LagoPublicKey.from_lago("k", api_url=url)
        assert not key.loaded
        body = body_of(ERRORS)
        for _ in range(3):
            assert handle(body, jwt_headers(fake, body), print, public_key=key).status == 200
        assert fake.request_count - before == 1


def test_a_key_that_cannot_be_fetched_gets_503_and_no_secret_is_shown(fake, caplog):
    with fake.serve() as url:
        key = LagoPublicKey.from_lago("wrong-secret-key", api_url=url)
        body = body_of(ERRORS)
        assert handle(body, jwt_headers(fake, body), print, public_key=key).status == 503
    assert "wrong-secret-key" not in repr(key)
    assert "wrong-secret-key" not in caplog.text


# -- the dead-letter file -----------------------------------------------------------------


def test_the_dead_letter_file_is_private_and_holds_replays_records(tmp_path):
    sent = LagoEvent(
        transaction_id="m2", external_subscription_id="s", code="api_calls", timestamp=1
    )
    path = tmp_path / "rejected.jsonl"
    dead = DeadLetterFile(path, lookup={"m2": sent}.get)
    body = body_of(ERRORS)
    assert handle(body, hmac_headers(body), dead, hmac_key=HMAC_KEY).status == 200
    dead.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 4
    assert lines[0] == {
        "error": "Lago events.errors: invalid_code",
        "permanent": True,
        "source": "lago-webhook:wh-1",
        "reason": "invalid_code",
        "transaction_id": "m1:api-calls",
        "message_id": "m1",
        "rule": "api-calls",
        "webhook_id": "wh-1",
    }
    assert lines[1]["lago_event"] == sent.to_dict()


def test_replay_sends_the_dead_letter_records_that_carry_a_lago_event(tmp_path):
    fake = FakeLago(api_key="replay-key")
    sent = LagoEvent(
        transaction_id="m2", external_subscription_id="s", code="api_calls", timestamp=1
    )
    path = tmp_path / "rejected.jsonl"
    dead = DeadLetterFile(path, lookup={"m2": sent}.get)
    dead(RejectedEvent("invalid_code", "m2", "m2", None, "wh-1"))
    dead.close()
    with fake.serve() as url:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "lago_segment",
                "replay",
                "--lago-events",
                str(path),
                "--api-url",
                url,
            ],
            env={**os.environ, "LAGO_API_KEY": "replay-key"},
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert fake.stored_transaction_ids() == ["m2"]


def test_the_apps_never_show_the_hmac_key(tmp_path):
    from lago_segment.lago_webhooks import asgi_app, wsgi_app

    for build in (asgi_app, wsgi_app):
        app = build(print, hmac_key=HMAC_KEY)
        assert HMAC_KEY not in repr(app)
        assert "'***'" in repr(app)


def test_an_app_needs_somewhere_to_report():
    from lago_segment.lago_webhooks import asgi_app

    with pytest.raises(ConfigurationError, match="on_rejected or dead_letter"):
        asgi_app(hmac_key=HMAC_KEY)


def test_a_token_whose_header_nests_too_deep_for_json_is_refused_not_a_500(fake):
    import base64

    body = body_of(ERRORS)
    deep = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).rstrip(b"=").decode()
    headers = {"X-Lago-Signature": f"{deep}.e30.c2ln", "X-Lago-Signature-Algorithm": "jwt"}
    assert handle(body, headers, print, public_key=fake.webhook_public_key).status == 401


def test_the_dead_letter_file_is_0600_whatever_the_umask(tmp_path):
    path = tmp_path / "rejected.jsonl"
    old = os.umask(0o277)
    try:
        DeadLetterFile(path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_dead_letter_file_writes_utf8_and_survives_a_lone_surrogate(tmp_path):
    path = tmp_path / "rejected.jsonl"
    dead = DeadLetterFile(path)
    dead(RejectedEvent("invalid_code", "m-é", "m-é", None, "wh-\ud800"))
    dead.close()
    data = path.read_bytes()
    assert "m-é".encode() in data
    (line,) = [json.loads(text) for text in data.splitlines()]
    assert (line["transaction_id"], line["webhook_id"]) == ("m-é", "wh-\ud800")
