"""Shared helpers for the forwarder tests: fake clients, a tiny spec, and one driver
that runs the same test against :class:`Forwarder` and :class:`AsyncForwarder`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from lago_segment.client import BatchResult, DeliveryFailure
from lago_segment.errors import LagoServerError, LagoValidationError
from lago_segment.forwarder import AsyncForwarder, Forwarder
from lago_segment.lago import LagoEvent


def track(n: int, **extra: Any) -> dict[str, Any]:
    """A raw Segment track call whose messageId is ``m<n>``."""
    return {
        "type": "track",
        "event": "API Call",
        "messageId": f"m{n}",
        "userId": "u1",
        "timestamp": "2024-01-01T00:00:00Z",
        "properties": {"sub": "sub-1", "calls": n},
        **extra,
    }


def lago(n: int, sub: str = "sub-1") -> LagoEvent:
    return LagoEvent(
        transaction_id=f"m{n}",
        external_subscription_id=sub,
        code="api_calls",
        timestamp=1704067200,
        properties={"calls": n},
    )


class TinySpec:
    """Maps every track call to one Lago event (transaction_id = messageId)."""

    def map(self, event: Any) -> list[LagoEvent]:
        data = event if isinstance(event, Mapping) else event.payload
        if data.get("type") != "track":
            return []
        return [lago(data["properties"]["calls"], data["properties"].get("sub", "sub-1"))]


class FakeSender:
    """Records batches; ``fail`` maps transaction_ids to (error, permanent); ``gate``
    (an Event) blocks every request until set."""

    def __init__(self) -> None:
        self.batches: list[list[LagoEvent]] = []
        self.fail: dict[str, tuple[Exception, bool]] = {}
        self.duplicates: set[str] = set()
        self.raise_error: Exception | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.stored: list[str] = []
        """transaction_ids Lago stored, in order (failures and duplicates excluded)."""

    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        batch = list(events)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        if self.raise_error is not None:
            raise self.raise_error
        self.batches.append(batch)
        delivered = tuple(
            e
            for e in batch
            if e.transaction_id not in self.fail and e.transaction_id not in self.duplicates
        )
        self.stored.extend(e.transaction_id for e in delivered)
        return BatchResult(
            delivered=delivered,
            duplicates=tuple(e for e in batch if e.transaction_id in self.duplicates),
            failed=tuple(
                DeliveryFailure(e, *self.fail[e.transaction_id])  # type: ignore[arg-type]
                for e in batch
                if e.transaction_id in self.fail
            ),
        )


class AsyncFakeSender(FakeSender):
    async def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:  # type: ignore[override]
        if self.gate is not None:
            self.entered.set()
            await asyncio.to_thread(self.gate.wait)
            gate, self.gate = self.gate, None
            try:
                return FakeSender.send_batch(self, events)
            finally:
                self.gate = gate
        return FakeSender.send_batch(self, events)


PERMANENT = LagoValidationError(422, "Unprocessable Entity", code="validation_errors")
TRANSIENT = LagoServerError(503, "Service Unavailable")


class Driver:
    """Runs one test body against either forwarder: ``await d.flush(f)`` works for both."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def sender(self) -> FakeSender:
        return AsyncFakeSender() if self.kind == "asyncio" else FakeSender()

    def make(self, client: Any, **options: Any) -> Forwarder | AsyncForwarder:
        options.setdefault("flush_interval", 0.01)
        if self.kind == "asyncio":
            options.pop("flush_at_exit", None)
            options.pop("atexit_timeout", None)
            return AsyncForwarder(client, **options)
        options.setdefault("flush_at_exit", False)
        return Forwarder(client, **options)

    async def flush(self, forwarder: Forwarder | AsyncForwarder, timeout: float = 10) -> bool:
        if isinstance(forwarder, AsyncForwarder):
            return await forwarder.flush(timeout)
        return await asyncio.to_thread(forwarder.flush, timeout)

    async def close(self, forwarder: Forwarder | AsyncForwarder, timeout: float = 10) -> bool:
        if isinstance(forwarder, AsyncForwarder):
            return await forwarder.aclose(timeout)
        return await asyncio.to_thread(forwarder.close, timeout)


class LoopbackLago:
    """A tiny Lago batch endpoint on 127.0.0.1 (a real server, real sockets).

    Like Lago, it stores each transaction_id once (a resend is a duplicate, not a
    second event). ``stall_after`` batches in, it holds the next request until
    :attr:`release` is set: a request in flight when the client dies. With
    ``hang=True`` it holds every request until :attr:`release` is set (headers
    never come), and stores nothing it did not answer. With ``barrier``, each
    request waits at the barrier before being answered, so a request is only
    answered once ``barrier.parties`` requests are in the server at once
    (:attr:`broken` tells whether that ever failed). :attr:`max_concurrent` is
    the most requests it held at once.
    """

    def __init__(
        self,
        stall_after: int | None = None,
        *,
        hang: bool = False,
        barrier: threading.Barrier | None = None,
    ) -> None:
        import http.server
        import json

        self.stored: dict[str, int] = {}
        self.received = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self.broken = False
        self.stalled = threading.Event()
        self.release = threading.Event()
        lago = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    lago.received += 1
                    lago.concurrent += 1
                    lago.max_concurrent = max(lago.max_concurrent, lago.concurrent)
                    stall = stall_after is not None and lago.received == stall_after + 1
                    if not hang:
                        for event in body["events"]:
                            tx = event["transaction_id"]
                            lago.stored[tx] = lago.stored.get(tx, 0) + 1
                try:
                    if barrier is not None:
                        try:
                            barrier.wait(30)
                        except threading.BrokenBarrierError:
                            lago.broken = True
                    if stall or hang:  # the answer is late: the client may give up first
                        lago.stalled.set()
                        lago.release.wait()
                        if hang:
                            return  # no answer at all
                finally:
                    with lock:
                        lago.concurrent -= 1
                payload = json.dumps({"events": body["events"]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client is gone: the answer is lost, as intended

            def log_message(self, format: str, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackLago:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
