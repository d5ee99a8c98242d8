"""50,000 events from several threads (or tasks) through the real clients to a faulty
FakeLago, several batches in flight at once: each is stored exactly once, forward()
never waits on the network, and the counters add up."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from support_forwarder import Driver, TinySpec, track

from lago_segment.client import AsyncLagoClient, LagoClient, RetryPolicy
from lago_segment.forwarder import AsyncForwarder, Forwarder, ForwardingFailure
from lago_segment.testing import FakeLago, Fault

N = 50_000
WORKERS = 4
API_KEY = "forwarder-test-key"
NO_WAIT = RetryPolicy(attempts=100, timeout=None, wait_initial=0, wait_max=0, wait_jitter=0)


class GatedTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """FakeLago's transport behind a gate: every request waits until it is open."""

    def __init__(self, inner: httpx.MockTransport) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        self.gate.wait()
        with self.lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            return self.inner.handle_request(request)
        finally:
            with self.lock:
                self.concurrent -= 1

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.entered.set()
        if not self.gate.is_set():
            await asyncio.to_thread(self.gate.wait)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def fake() -> FakeLago:
    lago = FakeLago(api_key=API_KEY, rate_limit_reset=0)
    lago.fail_randomly(
        0.2,
        seed=5,
        faults=[
            Fault.RATE_LIMIT,
            Fault.SERVER_ERROR,
            502,
            Fault.TIMEOUT,
            Fault.DROP,
            Fault.ACCEPT_THEN_DROP,
        ],
    )
    return lago


def make_client(driver: Driver, transport: GatedTransport) -> Any:
    if driver.kind == "asyncio":
        return AsyncLagoClient(
            API_KEY,
            api_url=FakeLago.url,
            retry=NO_WAIT,
            http_client=httpx.AsyncClient(transport=transport),
        )
    return LagoClient(
        API_KEY, api_url=FakeLago.url, retry=NO_WAIT, http_client=httpx.Client(transport=transport)
    )


def events_for(worker: int) -> list[dict[str, Any]]:
    return [track(n) for n in range(worker, N, WORKERS)]


async def forward_from_workers(fwd: Forwarder | AsyncForwarder) -> None:
    if isinstance(fwd, AsyncForwarder):

        async def task(worker: int) -> None:
            for i, event in enumerate(events_for(worker)):
                fwd.forward(event)
                if i % 250 == 0:
                    await asyncio.sleep(0)  # let the other tasks in

        await asyncio.gather(*(task(w) for w in range(WORKERS)))
        return

    def worker(w: int) -> None:
        for event in events_for(w):
            fwd.forward(event)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("mode", ["memory", "spool"])
async def test_50k_events_from_concurrent_callers_are_stored_exactly_once_despite_faults(
    driver: Driver, fake: FakeLago, mode: str, tmp_path: Path
) -> None:
    transport = GatedTransport(fake.transport)
    errors: list[ForwardingFailure] = []
    fwd = driver.make(
        make_client(driver, transport),
        spec=TinySpec(),
        max_queue_size=N,
        on_error=errors.append,
        flush_interval=0.005,
        spool=tmp_path / "spool.db" if mode == "spool" else None,
        spool_retry_wait=0,
        max_in_flight=4,
    )
    # Lago does not answer at all until every caller is done: forward() never waits on it.
    await forward_from_workers(fwd)
    assert fwd.stats.enqueued == N
    transport.gate.set()
    assert await driver.close(fwd, timeout=120)

    stored = fake.stored_transaction_ids()
    assert len(stored) == N
    assert set(stored) == {f"m{n}" for n in range(N)}
    assert errors == []
    s = fwd.stats
    assert (s.received, s.mapped, s.enqueued, s.delivered, s.failed) == (N, N, N, N, 0)
    assert s.queue_depth == 0
    assert s.duplicates > 0  # ACCEPT_THEN_DROP happened: the retry came back a duplicate
    assert s.retried > 0
    assert fake.injected_faults
    if driver.kind == "thread":
        assert transport.max_concurrent > 1  # batches really were in flight together
