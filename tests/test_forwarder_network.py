"""Forwarders against a real loopback server: batches in flight at once, and close()
against a server that never answers."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import httpx
import pytest
from support_forwarder import Driver, LoopbackLago, TinySpec, track

from lago_segment.client import AsyncLagoClient, LagoClient, RetryPolicy
from lago_segment.errors import ConfigurationError, ForwarderClosedError
from lago_segment.forwarder import (
    DEFAULT_MAX_IN_FLIGHT,
    AsyncForwarder,
    Forwarder,
    ForwardingFailure,
)


def client_for(driver: Driver, url: str, **options: Any) -> Any:
    if driver.kind == "asyncio":
        return AsyncLagoClient("key", api_url=url, **options)
    return LagoClient("key", api_url=url, **options)


async def close_client(client: Any) -> None:
    if isinstance(client, AsyncLagoClient):
        await client.aclose()
    else:
        client.close()


async def test_max_in_flight_batches_reach_the_server_at_the_same_time(driver: Driver) -> None:
    # The server answers no request before 4 are inside it at once: with fewer
    # in flight the barrier breaks (after 30 s) and the test fails. Four full
    # batches, no partial one (the flush interval is long).
    with LoopbackLago(barrier=threading.Barrier(4)) as lago:
        client = client_for(driver, lago.url)
        fwd = driver.make(
            client, spec=TinySpec(), batch_size=10, max_in_flight=4, flush_interval=60
        )
        for n in range(40):
            fwd.forward(track(n))
        assert await driver.close(fwd, timeout=60)
        await close_client(client)
    assert not lago.broken
    assert lago.max_concurrent == 4
    assert sorted(lago.stored) == sorted(f"m{n}" for n in range(40))
    assert set(lago.stored.values()) == {1}
    assert fwd.stats.delivered == 40


async def test_close_against_a_hanging_server_reports_every_undelivered_event_once(
    driver: Driver,
) -> None:
    errors: list[ForwardingFailure] = []
    with LoopbackLago(hang=True) as lago:
        client = client_for(driver, lago.url, timeout=30.0)
        fwd = driver.make(
            client,
            spec=TinySpec(),
            batch_size=5,
            max_in_flight=2,
            on_error=errors.append,
            flush_interval=60,  # full batches only: the first two go, two stay queued
        )
        for n in range(20):
            fwd.forward(track(n))
        await asyncio.to_thread(lago.stalled.wait, 30)
        for _ in range(3000):  # both senders' requests are in the server
            if lago.concurrent == 2:
                break
            await asyncio.sleep(0.01)
        assert not await driver.close(fwd, timeout=0.2)
        # Before close() returned: each of the 20 events, once (2 batches in flight, 2 queued).
        reported = sorted(e.message_id or "" for e in errors)
        assert reported == sorted(f"m{n}" for n in range(20))
        assert all(isinstance(e.error, ForwarderClosedError) for e in errors)
        assert sum("in flight" in str(e.error) for e in errors) == 10
        # The server lets go (the client sees a dropped connection and would retry),
        # and the user closes the client: none of it reaches on_error.
        lago.release.set()
        if isinstance(fwd, Forwarder):
            for thread in fwd._threads:
                await asyncio.to_thread(thread.join, 30)
        await close_client(client)
    assert len(errors) == 20
    assert lago.stored == {}
    s = fwd.stats
    assert (s.enqueued, s.failed, s.delivered, s.queue_depth) == (20, 20, 0, 0)


async def test_a_forwarder_retries_nothing_once_close_gave_up(driver: Driver) -> None:
    with LoopbackLago(hang=True) as lago:
        retry = RetryPolicy(attempts=50, timeout=None, wait_initial=0, wait_max=0, wait_jitter=0)
        client = client_for(driver, lago.url, timeout=30.0, retry=retry)
        fwd = driver.make(client, spec=TinySpec(), batch_size=5, max_in_flight=1, on_error=[])
        fwd.forward(track(1))
        await asyncio.to_thread(lago.stalled.wait, 30)
        assert not await driver.close(fwd, timeout=0.1)
        lago.release.set()  # the connection drops: a retry would be a second request
        if isinstance(fwd, Forwarder):
            for thread in fwd._threads:
                await asyncio.to_thread(thread.join, 30)
        await close_client(client)
    assert lago.received == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True, None])
def test_max_in_flight_must_be_a_positive_int(driver: Driver, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_in_flight"):
        driver.make(object(), max_in_flight=bad)


def test_the_default_max_in_flight_is_documented_and_used(driver: Driver) -> None:
    fwd = driver.make(object())
    assert fwd.max_in_flight == DEFAULT_MAX_IN_FLIGHT == 8


def test_a_pool_smaller_than_max_in_flight_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    http = httpx.Client(limits=httpx.Limits(max_connections=2))
    client = LagoClient("key", api_url="http://127.0.0.1:9", http_client=http)
    with caplog.at_level(logging.WARNING, logger="lago_segment"):
        Forwarder(client, max_in_flight=4, flush_at_exit=False).close()
    assert "max_in_flight=4" in caplog.text
    assert "allows 2 connections" in caplog.text
    http.close()


async def test_asyncio_senders_start_max_in_flight_tasks() -> None:
    fwd = AsyncForwarder(object(), max_in_flight=3)  # type: ignore[arg-type]
    await fwd.start()
    assert len(fwd._tasks) == 3
    assert await fwd.aclose()


def test_a_client_that_does_not_really_sleep_does_not_pause_the_senders() -> None:
    client = LagoClient("key", api_url="http://127.0.0.1:9", retry=RetryPolicy(sleep=print))
    fwd = Forwarder(client, flush_at_exit=False)
    assert not fwd._state.pauses
    fwd.close()
    sleeping = Forwarder(LagoClient("key", api_url="http://127.0.0.1:9"), flush_at_exit=False)
    assert sleeping._state.pauses
    sleeping.close()


async def test_a_429_holds_every_sender_until_the_reset(driver: Driver) -> None:
    sent_while_paused: list[str] = []
    requests: list[float] = []
    fwd: Forwarder | AsyncForwarder

    def lago_api(request: httpx.Request) -> httpx.Response:
        now = fwd._state.clock()
        if requests and fwd._state.paused_until > now:
            sent_while_paused.append(request.content.decode())
        requests.append(now)
        if len(requests) == 1:
            return httpx.Response(429, headers={"X-RateLimit-Reset": "0.3"}, json={})
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(lago_api)
    if driver.kind == "asyncio":
        client: Any = AsyncLagoClient(
            "key", api_url="http://127.0.0.1:9", http_client=httpx.AsyncClient(transport=transport)
        )
    else:
        client = LagoClient(
            "key", api_url="http://127.0.0.1:9", http_client=httpx.Client(transport=transport)
        )
    errors: list[ForwardingFailure] = []
    fwd = driver.make(
        client, spec=TinySpec(), batch_size=1, max_in_flight=4, on_error=errors.append
    )
    fwd.forward(track(0))
    for _ in range(3000):  # the 429 came back: every sender is paused
        if fwd._state.paused_until:
            break
        await asyncio.sleep(0.01)
    assert fwd._state.paused_until
    for n in range(1, 4):
        fwd.forward(track(n))  # three idle senders could send these at once...
    assert await driver.close(fwd)
    assert sent_while_paused == []  # ...but none did before the reset
    assert (len(requests), errors, fwd.stats.delivered) == (5, [], 4)
