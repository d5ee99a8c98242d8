"""Shared fixtures for the client tests: one test body drives the sync and the async client."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from lago_segment import LagoEvent
from lago_segment.client import AsyncLagoClient, LagoClient, RetryPolicy
from lago_segment.testing import FakeLago

API_KEY = "sk-live-secret-9f8e7d6c5b4a"


def make_event(n: int = 0, **overrides: Any) -> LagoEvent:
    values: dict[str, Any] = {
        "transaction_id": f"tx-{n}",
        "external_subscription_id": "sub-1",
        "code": "api_calls",
        "timestamp": 1651240791 + n,
        "properties": {"calls": 1},
    }
    values.update(overrides)
    return LagoEvent(**values)


class Runner:
    """Builds sync or async clients and calls their methods the same way."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.waits: list[float] = []
        self._clients: list[LagoClient | AsyncLagoClient] = []
        self._http: list[httpx.Client | httpx.AsyncClient] = []

    @property
    def is_async(self) -> bool:
        return self.kind == "async"

    def http_client(self, **kwargs: Any) -> httpx.Client | httpx.AsyncClient:
        http = httpx.AsyncClient(**kwargs) if self.is_async else httpx.Client(**kwargs)
        self._http.append(http)
        return http

    def client(
        self, api_key: str = API_KEY, *, fake: FakeLago | None = None, **kwargs: Any
    ) -> Any:
        kwargs.setdefault("retry", RetryPolicy(attempts=4, wait_jitter=0, sleep=self.waits.append))
        if fake is not None:
            kwargs.setdefault("api_url", fake.url)
            kwargs.setdefault("http_client", self.http_client(transport=fake.transport))
        cls = AsyncLagoClient if self.is_async else LagoClient
        client = cls(api_key, **kwargs)
        self._clients.append(client)
        return client

    async def run(self, method: Any, *args: Any) -> Any:
        result = method(*args)
        return await result if inspect.isawaitable(result) else result

    async def close(self, client: Any) -> None:
        await self.run(client.aclose if self.is_async else client.close)

    async def close_all(self) -> None:
        for client in self._clients:
            await self.close(client)
        for http in self._http:
            if isinstance(http, httpx.AsyncClient):
                await http.aclose()
            else:
                http.close()


@pytest.fixture(params=["sync", "async"])
async def lago(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    runner = Runner(request.param)
    yield runner
    await runner.close_all()
