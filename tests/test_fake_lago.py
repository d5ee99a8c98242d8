"""FakeLago behaves like Lago's events API, and injects the faults it is told to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lago_segment.errors import ConfigurationError
from lago_segment.testing import FakeLago, Fault

KEY = "fake-key"


@pytest.fixture
def fake() -> FakeLago:
    return FakeLago(api_key=KEY)


@pytest.fixture
def http(fake: FakeLago) -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=fake.transport, base_url=fake.url, headers={"Authorization": f"Bearer {KEY}"}
    ) as client:
        yield client


def event(n: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{n}",
        "external_subscription_id": "sub-1",
        "code": "api_calls",
        "timestamp": 1651240791,
        **overrides,
    }


def test_a_wrong_api_key_gets_401(fake: FakeLago) -> None:
    with httpx.Client(transport=fake.transport, base_url=fake.url) as client:
        response = client.post("/api/v1/events", json={"event": event()}, headers={})
    assert response.status_code == 401
    assert response.json() == {"status": 401, "error": "Unauthorized"}


def test_a_single_event_is_stored_and_echoed_as_lago_renders_it(
    fake: FakeLago, http: httpx.Client
) -> None:
    response = http.post("/api/v1/events", json={"event": event(timestamp="1651240791.5")})
    assert response.status_code == 200
    body = response.json()["event"]
    assert body["transaction_id"] == "tx-0"
    assert body["timestamp"] == "2022-04-29T13:59:51.500Z"
    assert {"lago_id", "external_subscription_id", "code", "created_at"} <= set(body)
    assert fake.stored_transaction_ids() == ["tx-0"]


def test_camel_case_keys_are_dropped_so_the_id_is_missing(
    fake: FakeLago, http: httpx.Client
) -> None:
    raw = {"transactionId": "tx-0", "external_subscription_id": "s", "code": "c", "timestamp": 1}
    response = http.post("/api/v1/events", json={"event": raw})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"transaction_id": ["value_is_mandatory"]}
    assert fake.events == []


@pytest.mark.parametrize("timestamp", ["2022-04-29T12:00Z", "1651240791\n", "١٢٣"])
def test_a_timestamp_that_is_not_unix_seconds_is_an_invalid_format(
    http: httpx.Client, timestamp: str
) -> None:
    response = http.post("/api/v1/events", json={"event": event(timestamp=timestamp)})
    assert response.json()["error_details"] == {"timestamp": ["invalid_format"]}


def test_unknown_keys_are_dropped_silently(fake: FakeLago, http: httpx.Client) -> None:
    http.post("/api/v1/events", json={"event": event(external_customer_id="c")})
    assert "external_customer_id" not in fake.events[0]


def test_a_batch_is_atomic_with_index_keyed_error_details(
    fake: FakeLago, http: httpx.Client
) -> None:
    events = [event(0), event(1, timestamp="yesterday"), event(2, code="")]
    response = http.post("/api/v1/events/batch", json={"events": events})
    assert response.status_code == 422
    assert response.json()["error_details"] == {
        "1": {"timestamp": ["invalid_format"]},
        "2": {"code": ["value_is_mandatory"]},
    }
    assert fake.events == []


def test_a_valid_batch_answers_200_with_every_event(http: httpx.Client) -> None:
    response = http.post("/api/v1/events/batch", json={"events": [event(0), event(1)]})
    assert [e["transaction_id"] for e in response.json()["events"]] == ["tx-0", "tx-1"]


@pytest.mark.parametrize(
    ("events", "problem"), [([], "no_events"), ([event(n) for n in range(101)], "too_many_events")]
)
def test_batch_size_limits(http: httpx.Client, events: list[Any], problem: str) -> None:
    response = http.post("/api/v1/events/batch", json={"events": events})
    assert response.json()["error_details"] == {"events": [problem]}


def test_a_known_transaction_id_is_value_already_exist(http: httpx.Client) -> None:
    http.post("/api/v1/events", json={"event": event()})
    response = http.post("/api/v1/events", json={"event": event()})
    assert response.json()["error_details"] == {"transaction_id": ["value_already_exist"]}


def test_the_same_transaction_id_on_another_subscription_is_stored(
    fake: FakeLago, http: httpx.Client
) -> None:
    http.post("/api/v1/events", json={"event": event()})
    http.post("/api/v1/events", json={"event": event(external_subscription_id="sub-2")})
    assert fake.stored_transaction_ids() == ["tx-0", "tx-0"]


def test_scripted_faults_come_in_order_then_normal_answers(
    fake: FakeLago, http: httpx.Client
) -> None:
    fake.script(Fault.RATE_LIMIT, 502, None)
    statuses = [
        http.post("/api/v1/events", json={"event": event(n)}).status_code for n in range(4)
    ]
    assert statuses == [429, 502, 200, 200]


def test_an_injected_429_carries_rate_limit_headers(fake: FakeLago, http: httpx.Client) -> None:
    fake.script(Fault.RATE_LIMIT)
    headers = http.post("/api/v1/events", json={"event": event()}).headers
    assert (headers["x-ratelimit-remaining"], headers["x-ratelimit-reset"]) == ("0", "1")


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Fault.TIMEOUT, httpx.ReadTimeout), (Fault.DROP, httpx.RemoteProtocolError)],
)
def test_transport_faults_store_nothing(
    fake: FakeLago, http: httpx.Client, fault: Fault, error: type[Exception]
) -> None:
    fake.script(fault)
    with pytest.raises(error):
        http.post("/api/v1/events", json={"event": event()})
    assert fake.events == []


def test_accept_then_drop_stores_but_loses_the_response(
    fake: FakeLago, http: httpx.Client
) -> None:
    fake.script(Fault.ACCEPT_THEN_DROP)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/api/v1/events", json={"event": event()})
    assert fake.stored_transaction_ids() == ["tx-0"]


def test_random_faults_replay_with_the_same_seed(http: httpx.Client) -> None:
    def run() -> list[Fault | int]:
        fake = FakeLago(api_key=KEY)
        fake.fail_randomly(0.5, seed=3, faults=[Fault.SERVER_ERROR, 500])
        with httpx.Client(transport=fake.transport, base_url=fake.url) as client:
            for _ in range(30):
                client.post("/api/v1/events", json={})
        return fake.injected_faults

    first = run()
    assert first == run()
    assert 0 < len(first) < 30


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_fail_randomly_refuses_a_rate_outside_0_to_1(fake: FakeLago, rate: float) -> None:
    with pytest.raises(ConfigurationError, match="rate"):
        fake.fail_randomly(rate)


def test_concurrent_batches_from_threads_are_each_stored_once(fake: FakeLago) -> None:
    def post(thread: int) -> None:
        with httpx.Client(
            transport=fake.transport, base_url=fake.url, headers={"Authorization": f"Bearer {KEY}"}
        ) as client:
            for batch in range(10):
                events = [event(thread * 1000 + batch * 10 + i) for i in range(10)]
                client.post("/api/v1/events/batch", json={"events": events}).raise_for_status()

    threads = [threading.Thread(target=post, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = fake.stored_transaction_ids()
    assert len(ids) == len(set(ids)) == 400


def test_serve_answers_over_loopback_and_shuts_down(fake: FakeLago) -> None:
    with fake.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        response = httpx.post(
            f"{url}/api/v1/events",
            json={"event": event()},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/api/v1/events", json={"event": event()})


def test_estimate_fees_returns_the_configured_fees(fake: FakeLago, http: httpx.Client) -> None:
    fake.fees["seats"] = [{"amount_cents": 100}]
    body = {"event": {"code": "seats", "external_subscription_id": "sub-1"}}
    assert http.post("/api/v1/events/estimate_fees", json=body).json() == {
        "fees": [{"amount_cents": 100}]
    }
