"""The I/O-free client flows: plain function calls, no socket."""

from __future__ import annotations

import email.utils
from collections.abc import Iterator

import httpx
import pytest
from support_client import make_event

from lago_segment._retry import RetryPolicy
from lago_segment.client._batching import plan_batches
from lago_segment.client._flows import ClientFlows, Wait
from lago_segment.client._options import ClientOptions
from lago_segment.client._responses import rate_limit_info, rejected_indices, server_wait
from lago_segment.client._urls import check_api_url
from lago_segment.errors import ConfigurationError
from lago_segment.testing import set_testing


def test_plan_batches_cuts_at_the_size_limit() -> None:
    batches = list(plan_batches([make_event(n) for n in range(205)], 100, 10**9))
    assert [len(b.events) for b in batches] == [100, 100, 5]


def test_plan_batches_halves_a_batch_over_the_byte_cap() -> None:
    events = [make_event(n) for n in range(8)]
    one = len(next(plan_batches(events[:1], 100, 10**9)).body)
    batches = list(plan_batches(events, 100, one * 3))
    assert all(len(b.body) <= one * 3 for b in batches)
    assert [e for b in batches for e in b.events] == events


def test_plan_batches_sends_an_oversized_event_alone_rather_than_dropping_it() -> None:
    batches = list(plan_batches([make_event(0), make_event(1)], 100, 10))
    assert [len(b.events) for b in batches] == [1, 1]


def test_rejected_indices_reads_index_keyed_details() -> None:
    details = {"0": {"code": ["x"]}, "2": {"timestamp": ["invalid_format"]}}
    assert rejected_indices(details, 3) == {
        0: {"code": ["x"]},
        2: {"timestamp": ["invalid_format"]},
    }


@pytest.mark.parametrize(
    "details",
    [{}, {"events": ["no_events"]}, {"5": {"code": ["x"]}}, {"0": ["x"]}, {"²": {"code": ["x"]}}],
)
def test_rejected_indices_is_none_when_the_batch_was_refused_as_a_whole(
    details: dict[str, object],
) -> None:
    assert rejected_indices(details, 3) is None


def test_retry_after_as_an_http_date_is_seconds_from_now() -> None:
    when = email.utils.formatdate(1_000_030, usegmt=True)
    assert server_wait(httpx.Headers({"Retry-After": when}), now=1_000_000) == 30


def test_retry_after_wins_over_ratelimit_reset() -> None:
    headers = httpx.Headers({"Retry-After": "2", "X-RateLimit-Reset": "9"})
    assert server_wait(headers) == 2


def test_ratelimit_reset_as_an_epoch_instant_is_made_relative() -> None:
    assert server_wait(httpx.Headers({"X-RateLimit-Reset": "1700000005"}), now=1700000000) == 5


@pytest.mark.parametrize("name", ["Retry-After", "X-RateLimit-Reset"])
@pytest.mark.parametrize("value", ["inf", "nan", "1e400"])
def test_a_non_finite_wait_header_is_ignored(name: str, value: str) -> None:
    assert server_wait(httpx.Headers({name: value})) is None


def test_non_finite_rate_limit_headers_are_ignored_not_raised() -> None:
    headers = httpx.Headers({"X-RateLimit-Limit": "inf", "X-RateLimit-Remaining": "nan"})
    assert rate_limit_info(headers) is None


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://lago.example.com/", "https://lago.example.com"),
        ("https://lago.example.com/api/v1", "https://lago.example.com"),
        ("https://example.com/lago/", "https://example.com/lago"),
    ],
)
def test_check_api_url_keeps_the_origin_and_prefix(url: str, base: str) -> None:
    assert check_api_url(url, allow_insecure_http=False) == base


@pytest.mark.parametrize("url", ["ftp://lago.example.com", "lago.example.com", ""])
def test_check_api_url_refuses_what_is_not_http(url: str) -> None:
    with pytest.raises(ConfigurationError, match="api_url"):
        check_api_url(url, allow_insecure_http=False)


@pytest.mark.parametrize("options", [{"attempts": 0}, {"timeout": -1}, {"wait_max": "5"}])
def test_retry_policy_refuses_bad_values(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_backoff_is_capped_by_wait_max() -> None:
    policy = RetryPolicy(wait_initial=1, wait_max=3, wait_jitter=0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 3, 3]


@pytest.fixture
def testing_mode() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


def test_set_testing_retries_without_waiting(testing_mode: None) -> None:
    flows = ClientFlows(
        ClientOptions(
            api_key="key",
            api_url="https://lago.test",
            retry=RetryPolicy(attempts=3),
            max_batch_bytes=10**6,
        )
    )
    flow = flows.send(make_event())
    steps = [next(flow)]
    for _ in range(2):
        steps.append(flow.send(httpx.Response(503, headers={"Retry-After": "60"})))
    assert not any(isinstance(step, Wait) for step in steps)
    assert len(steps) == 3


@pytest.mark.parametrize("size", [0, 101])
def test_batch_size_must_be_between_1_and_100(size: int) -> None:
    with pytest.raises(ConfigurationError, match="max_batch_size"):
        ClientFlows(
            ClientOptions(
                api_key="key",
                api_url="https://lago.test",
                max_batch_size=size,
                max_batch_bytes=10**6,
            )
        )


def test_retry_policy_takes_the_six_fields_of_staminas_vocabulary() -> None:
    policy = RetryPolicy(
        attempts=1, timeout=None, wait_initial=0, wait_max=0, wait_jitter=0, wait_exp_base=1
    )
    assert (policy.attempts, policy.timeout, policy.wait_exp_base) == (1, None, 1)
    assert RetryPolicy().wait_exp_base == 2.0


def test_backoff_grows_by_wait_exp_base() -> None:
    policy = RetryPolicy(wait_initial=1, wait_max=100, wait_jitter=0, wait_exp_base=3)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [1, 3, 9, 27, 81]
    constant = RetryPolicy(wait_initial=2, wait_max=100, wait_jitter=0, wait_exp_base=1)
    assert [constant.backoff(n) for n in (1, 2, 3)] == [2, 2, 2]


def test_the_client_flow_waits_grow_by_wait_exp_base() -> None:
    policy = RetryPolicy(
        attempts=4, timeout=None, wait_initial=1, wait_max=100, wait_jitter=0, wait_exp_base=3
    )
    flows = ClientFlows(
        ClientOptions(
            api_key="key",
            api_url="https://lago.test",
            retry=policy,
            max_batch_bytes=10**6,
        )
    )
    flow = flows.send(make_event())
    next(flow)
    waits = []
    for _ in range(3):
        wait = flow.send(httpx.Response(503))
        assert isinstance(wait, Wait)
        waits.append(wait.seconds)
        flow.send(None)  # the wait is over: the flow resends
    assert waits == [1, 3, 9]
