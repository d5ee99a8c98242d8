"""Shared fixtures for the client tests: one test body drives the sync and the async client."""

from __future__ import annotations

import inspect
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
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


class RawServer:
    """A loopback TCP server whose replies a test writes byte by byte.

    ``handler(conn, server)`` runs in a thread per connection. ``cut_off`` is
    set when a send failed because the client went away: the client stopped
    the exchange before the server was done. ``stop`` is set when the test
    ends, so handlers give up.
    """

    def __init__(self, handler: Callable[[socket.socket, RawServer], None]) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self.cut_off = threading.Event()
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self.bytes_sent = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        # accept() does not wake when its socket is closed: wake it with a connection.
        socket.create_connection(self._listener.getsockname()).close()
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=10)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.stop.is_set():
                conn.close()
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._handler(conn, self)
            except OSError:
                self.cut_off.set()

    def read_request(self, conn: socket.socket) -> bytes:
        """Read one request (headers and Content-Length body) and record it."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return head

    def send(self, conn: socket.socket, data: bytes) -> None:
        """Send ``data``; a client that went away sets ``cut_off`` (via OSError)."""
        conn.sendall(data)
        self.bytes_sent += len(data)

    def trickle(self, conn: socket.socket, data: bytes, *, every: float = 0.05) -> None:
        """Send ``data`` one byte at a time, until the client leaves or the test ends.

        It gives up after 10 s (then the connection closes): a client that
        does not bound the exchange fails its test instead of hanging it.
        """
        give_up = time.monotonic() + 10.0
        for byte in data:
            if self.stop.wait(every) or time.monotonic() > give_up:
                return
            self.send(conn, bytes([byte]))


def json_reply(status: int = 200, body: bytes = b'{"events":[]}') -> bytes:
    """A complete HTTP/1.1 response with a JSON body."""
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
