"""LagoClient and AsyncLagoClient, each test run against both (see the ``lago`` fixture)."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import respx
from support_client import API_KEY, Runner, lago, make_event

from lago_segment.client import EU_API_URL, US_API_URL, RateLimitInfo, RetryPolicy
from lago_segment.errors import (
    ConfigurationError,
    LagoAPIError,
    LagoAuthenticationError,
    LagoConnectionError,
    LagoNotFoundError,
    LagoRateLimitError,
    LagoServerError,
    LagoTimeoutError,
    LagoValidationError,
)
from lago_segment.testing import FakeLago, Fault

__all__ = ["lago"]

EVENT_URL = f"{US_API_URL}/api/v1/events"
BATCH_URL = f"{US_API_URL}/api/v1/events/batch"
OK_BATCH = httpx.Response(200, json={"events": []})


def lago_error(status: int, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "error": "Lago says no", **extra})


async def test_send_posts_the_event_with_bearer_auth(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(EVENT_URL).respond(200, json={"event": {}})
    await lago.run(lago.client().send, make_event())
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"event": make_event().to_dict()}


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, LagoAPIError),
        (401, LagoAuthenticationError),
        (403, LagoAuthenticationError),
        (404, LagoNotFoundError),
        (422, LagoValidationError),
    ],
)
async def test_send_raises_the_typed_error_without_retrying(
    lago: Runner, respx_mock: respx.MockRouter, status: int, error_class: type[LagoAPIError]
) -> None:
    route = respx_mock.post(EVENT_URL).mock(
        return_value=lago_error(
            status,
            code="some_code",
            error_details={"code": ["x"]},
        ),
    )
    with pytest.raises(error_class) as caught:
        await lago.run(lago.client().send, make_event())
    assert route.call_count == 1
    assert type(caught.value) is error_class
    assert (caught.value.status_code, caught.value.code) == (status, "some_code")
    assert caught.value.error == "Lago says no"
    assert caught.value.error_details == {"code": ["x"]}


async def test_error_carries_the_request_id(lago: Runner, respx_mock: respx.MockRouter) -> None:
    respx_mock.post(EVENT_URL).mock(
        return_value=httpx.Response(
            404, json={"error": "Not Found"}, headers={"x-request-id": "r1"}
        )
    )
    with pytest.raises(LagoNotFoundError) as caught:
        await lago.run(lago.client().send, make_event())
    assert caught.value.request_id == "r1"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_send_retries_a_transient_status_then_succeeds(
    lago: Runner, respx_mock: respx.MockRouter, status: int
) -> None:
    route = respx_mock.post(EVENT_URL)
    route.side_effect = [lago_error(status), httpx.Response(200, json={"event": {}})]
    await lago.run(lago.client().send, make_event())
    assert route.call_count == 2


async def test_server_error_is_raised_when_retries_run_out(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(EVENT_URL).mock(return_value=lago_error(503))
    client = lago.client(retry=RetryPolicy(attempts=3, sleep=lago.waits.append))
    with pytest.raises(LagoServerError):
        await lago.run(client.send, make_event())
    assert route.call_count == 3


async def test_rate_limit_error_carries_the_rate_limit_headers(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    headers = {"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"}
    respx_mock.post(EVENT_URL).mock(return_value=httpx.Response(429, headers=headers))
    with pytest.raises(LagoRateLimitError) as caught:
        await lago.run(lago.client().send, make_event())
    assert (caught.value.limit, caught.value.remaining, caught.value.reset) == (500, 0, 2.0)


async def test_429_without_headers_backs_off_exponentially(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(EVENT_URL).mock(return_value=httpx.Response(429))
    with pytest.raises(LagoRateLimitError) as caught:
        await lago.run(lago.client().send, make_event())
    assert caught.value.limit is None
    assert lago.waits == [0.1, 0.2, 0.4]


async def test_retry_after_header_sets_the_wait(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(EVENT_URL)
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": "7"}),
        httpx.Response(200, json={"event": {}}),
    ]
    await lago.run(lago.client().send, make_event())
    assert lago.waits == [7.0]


async def test_ratelimit_reset_header_sets_the_wait(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(EVENT_URL)
    route.side_effect = [
        httpx.Response(429, headers={"X-RateLimit-Reset": "3"}),
        httpx.Response(200, json={"event": {}}),
    ]
    await lago.run(lago.client().send, make_event())
    assert lago.waits == [3.0]


async def test_deadline_stops_retrying_before_a_wait_that_would_pass_it(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(EVENT_URL).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "60"})
    )
    policy = RetryPolicy(attempts=10, timeout=30.0, sleep=lago.waits.append)
    with pytest.raises(LagoRateLimitError):
        await lago.run(lago.client(retry=policy).send, make_event())
    assert route.call_count == 1
    assert lago.waits == []


async def test_deadline_counts_time_spent_waiting(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    route = respx_mock.post(EVENT_URL).mock(return_value=lago_error(503))
    policy = RetryPolicy(
        attempts=100, timeout=10.5, wait_initial=2, wait_max=4, wait_jitter=0,
        sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    with pytest.raises(LagoServerError):
        await lago.run(lago.client(retry=policy).send, make_event())
    # waits 2 + 4 + 4 = 10 fit in the deadline; the next 4 would not.
    assert (route.call_count, now[0]) == (4, 10.0)


async def test_connect_errors_are_retried_then_raised_as_connection_error(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(EVENT_URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(LagoConnectionError) as caught:
        await lago.run(lago.client().send, make_event())
    assert route.call_count == 4
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_read_timeouts_are_retried_then_raised_as_timeout_error(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(EVENT_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LagoTimeoutError):
        await lago.run(lago.client().send, make_event())
    assert route.call_count == 4


async def test_send_counts_a_duplicate_transaction_id_as_success(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(EVENT_URL).mock(
        return_value=lago_error(422, error_details={"transaction_id": ["value_already_exist"]})
    )
    await lago.run(lago.client().send, make_event())


async def test_rate_limit_headers_reach_the_callback(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    seen: list[RateLimitInfo] = []
    headers = {
        "X-RateLimit-Limit": "500",
        "X-RateLimit-Remaining": "499",
        "X-RateLimit-Reset": "1",
    }
    respx_mock.post(EVENT_URL).mock(return_value=httpx.Response(200, json={}, headers=headers))
    await lago.run(lago.client(on_rate_limit=seen.append).send, make_event())
    assert seen == [RateLimitInfo(limit=500, remaining=499, reset=1.0)]


async def test_a_failing_rate_limit_callback_is_logged_not_raised(
    lago: Runner, respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_info: RateLimitInfo) -> None:
        raise RuntimeError("observer bug")

    headers = {"X-RateLimit-Remaining": "1"}
    respx_mock.post(EVENT_URL).mock(return_value=httpx.Response(200, json={}, headers=headers))
    await lago.run(lago.client(on_rate_limit=broken).send, make_event())
    assert "on_rate_limit callback failed" in caplog.text


async def test_send_batch_reports_exhausted_retries_as_not_permanent(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(BATCH_URL).mock(return_value=lago_error(503))
    result = await lago.run(lago.client().send_batch, [make_event(0), make_event(1)])
    assert [f.permanent for f in result.failed] == [False, False]
    assert isinstance(result.failed[0].error, LagoServerError)
    assert result.retries == 3


async def test_send_batch_reports_refused_auth_as_permanent(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(BATCH_URL).mock(return_value=lago_error(401))
    result = await lago.run(lago.client().send_batch, [make_event(0)])
    assert [f.permanent for f in result.failed] == [True]
    assert isinstance(result.failed[0].error, LagoAuthenticationError)


async def test_send_batch_reports_transport_failure_per_event(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(BATCH_URL).mock(side_effect=httpx.ConnectError("refused"))
    result = await lago.run(lago.client().send_batch, [make_event(0), make_event(1)])
    assert len(result.failed) == 2
    assert isinstance(result.failed[0].error, LagoConnectionError)


async def test_poison_event_is_set_aside_and_the_rest_resent(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    def atomic_lago(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        bad = {
            str(i): {"timestamp": ["invalid_format"]}
            for i, e in enumerate(events)
            if e["transaction_id"] == "tx-42"
        }
        return lago_error(422, error_details=bad) if bad else OK_BATCH

    route = respx_mock.post(BATCH_URL).mock(side_effect=atomic_lago)
    events = [make_event(n) for n in range(100)]
    result = await lago.run(lago.client().send_batch, events)
    assert result.delivered == tuple(e for e in events if e.transaction_id != "tx-42")
    assert [f.event.transaction_id for f in result.failed] == ["tx-42"]
    assert result.failed[0].permanent
    assert result.failed[0].error.error_details == {"timestamp": ["invalid_format"]}
    assert route.call_count == 2


async def test_batch_level_422_fails_every_event(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(BATCH_URL).mock(
        return_value=lago_error(422, error_details={"events": ["too_many_events"]})
    )
    result = await lago.run(lago.client().send_batch, [make_event(0), make_event(1)])
    assert len(result.failed) == 2


async def test_send_batch_splits_into_requests_of_at_most_100(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    result = await lago.run(lago.client(fake=fake).send_batch, [make_event(n) for n in range(250)])
    assert (len(result.delivered), fake.request_count) == (250, 3)


async def test_send_batch_splits_by_the_byte_cap(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    client = lago.client(fake=fake, max_batch_bytes=2_000)
    result = await lago.run(client.send_batch, [make_event(n) for n in range(40)])
    assert len(result.delivered) == 40
    assert fake.request_count > 1
    assert fake.stored_transaction_ids() == [f"tx-{n}" for n in range(40)]


async def test_events_lago_already_has_count_as_duplicates(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    client = lago.client(fake=fake)
    await lago.run(client.send_batch, [make_event(1), make_event(3)])
    result = await lago.run(client.send_batch, [make_event(n) for n in range(5)])
    assert [e.transaction_id for e in result.duplicates] == ["tx-1", "tx-3"]
    assert [e.transaction_id for e in result.delivered] == ["tx-0", "tx-2", "tx-4"]
    assert result.ok
    assert sorted(fake.stored_transaction_ids()) == [f"tx-{n}" for n in range(5)]


async def test_a_lost_response_is_retried_and_recognised_as_duplicate(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    fake.script(Fault.ACCEPT_THEN_DROP)
    result = await lago.run(lago.client(fake=fake).send_batch, [make_event(0), make_event(1)])
    assert len(result.duplicates) == 2
    assert result.retries == 1
    assert fake.stored_transaction_ids() == ["tx-0", "tx-1"]


async def test_ten_thousand_events_through_random_faults_are_stored_exactly_once(
    lago: Runner,
) -> None:
    fake = FakeLago(api_key=API_KEY)
    fake.fail_randomly(0.3, seed=7)
    events = [make_event(n) for n in range(10_000)]
    client = lago.client(fake=fake, retry=RetryPolicy(attempts=50, sleep=lambda _s: None))
    result = await lago.run(client.send_batch, events)
    assert result.ok
    assert len(result.delivered) + len(result.duplicates) == 10_000
    assert sorted(fake.stored_transaction_ids()) == sorted(e.transaction_id for e in events)
    assert result.retries > 0


async def test_send_batch_through_a_real_loopback_socket(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    fake.script(None, Fault.ACCEPT_THEN_DROP, Fault.SERVER_ERROR, Fault.DROP)
    with fake.serve() as url:
        client = lago.client(api_url=url)
        result = await lago.run(client.send_batch, [make_event(n) for n in range(150)])
        await lago.close(client)
    assert result.ok
    assert (len(result.delivered), len(result.duplicates)) == (100, 50)
    assert fake.stored_transaction_ids() == [f"tx-{n}" for n in range(150)]


async def test_a_socket_timeout_is_retried(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY, timeout_delay=5.0)
    fake.script(Fault.TIMEOUT)
    with fake.serve() as url:
        client = lago.client(api_url=url, timeout=0.2)
        await lago.run(client.send, make_event())
        await lago.close(client)
    assert fake.stored_transaction_ids() == ["tx-0"]


def test_http_to_a_remote_host_is_refused(lago: Runner) -> None:
    with pytest.raises(ConfigurationError, match="clear text"):
        lago.client(api_url="http://lago.example.com")


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000", "http://localhost", "http://[::1]:8080"])
def test_http_to_loopback_is_allowed(lago: Runner, url: str) -> None:
    assert lago.client(api_url=url).api_url == url.rstrip("/")


def test_http_to_a_remote_host_is_allowed_when_opted_in(lago: Runner) -> None:
    client = lago.client(api_url="http://lago.internal/api/v1/", allow_insecure_http=True)
    assert client.api_url == "http://lago.internal"


async def test_eu_region_posts_to_the_eu_host(lago: Runner, respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{EU_API_URL}/api/v1/events").respond(200, json={})
    await lago.run(lago.client(api_url=EU_API_URL).send, make_event())
    assert route.called


def test_repr_masks_the_api_key(lago: Runner) -> None:
    text = repr(lago.client())
    assert API_KEY not in text
    assert "********" in text


async def test_errors_and_logs_never_contain_the_api_key(
    lago: Runner, respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    respx_mock.post(EVENT_URL).mock(return_value=lago_error(503))
    respx_mock.post(BATCH_URL).mock(side_effect=httpx.ConnectError("refused"))
    client = lago.client()
    with pytest.raises(LagoServerError) as caught:
        await lago.run(client.send, make_event())
    result = await lago.run(client.send_batch, [make_event()])
    assert caplog.records
    assert all(r.name.startswith(("lago_segment", "httpx", "httpcore")) for r in caplog.records)
    assert API_KEY not in caplog.text
    assert API_KEY not in str(caught.value) + repr(caught.value)
    assert API_KEY not in repr(result)


async def test_a_users_http_client_is_used_and_left_open(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    http = lago.http_client(transport=fake.transport)
    client = lago.client(api_url=fake.url, http_client=http)
    await lago.run(client.send, make_event())
    await lago.close(client)
    assert not http.is_closed
    assert fake.stored_transaction_ids() == ["tx-0"]


async def test_close_closes_the_clients_own_pool(lago: Runner) -> None:
    client = lago.client()
    await lago.close(client)
    assert client._http.is_closed


async def test_estimate_fees_returns_lagos_fees(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    fake.fees["seats"] = [{"amount_cents": 1200, "item": {"code": "seats"}}]
    client = lago.client(fake=fake)
    fees = await lago.run(client.estimate_fees, "seats", "sub-1", {"seats": 1})
    assert fees == [{"amount_cents": 1200, "item": {"code": "seats"}}]


async def test_context_manager_closes_the_client(lago: Runner) -> None:
    client = lago.client()
    if lago.is_async:
        async with client:
            pass
    else:
        with client:
            pass
    assert client._http.is_closed
