"""Whole-exchange deadlines: one request ends by its timeout, however slowly bytes trickle.

httpcore's timeouts are per socket operation: a server trickling one byte per
second never trips them. The sync client therefore wraps its pool's network
backend (:class:`DeadlineBackend`, :class:`DeadlineStream`) so that every
socket operation is capped at what is left of the deadline the request set in
:data:`request_deadline`; the async client wraps the whole exchange in
:func:`within`. :func:`exchange_bound` is the bound itself, from the client's
``httpx.Timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import time
import weakref
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from lago_segment.errors import LagoTimeoutError

#: The instant (time.monotonic) by which the current request must be over; read
#: by every socket operation of the sync client's own pool (see DeadlineStream).
request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "lago_segment_request_deadline", default=None
)


def _left(timeout: float | None, phase: str) -> float | None:
    deadline = request_deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise _TIMEOUTS[phase]("the request timeout passed")
    return left if timeout is None else min(timeout, left)


_TIMEOUTS: dict[str, type[httpcore.TimeoutException]] = {
    "connect": httpcore.ConnectTimeout,
    "read": httpcore.ReadTimeout,
    "write": httpcore.WriteTimeout,
}


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the request's deadline."""

    # Capping each operation at what is left of the request's deadline bounds
    # the whole exchange, headers included.
    def __init__(self, stream: httpcore.NetworkStream, backend: DeadlineBackend) -> None:
        self._stream = stream
        self._backend = backend
        backend.streams.add(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, "read"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, "write"))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._stream.start_tls(ssl_context, server_hostname, _left(timeout, "connect"))
        return DeadlineStream(inner, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """A network backend whose streams end by the request's deadline, and can be aborted."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend
        self.streams: weakref.WeakSet[DeadlineStream] = weakref.WeakSet()

    def abort(self) -> None:
        """Shut every open socket down: a read blocked in another thread ends now.

        (Closing a socket does not wake a thread blocked reading it; shutting
        it down does.)
        """
        for stream in list(self.streams):
            sock = stream.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _left(timeout, "connect"), local_address, socket_options
        )
        return DeadlineStream(stream, self)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _left(timeout, "connect"), socket_options)
        return DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bound_sockets(http: httpx.Client) -> list[DeadlineBackend]:
    """Give the pools of ``http``'s own transports a :class:`DeadlineBackend`; return them."""
    # httpx has no public way to give its pool a network backend: reach the
    # pools of the client's own transports. If httpx changes, the deadline
    # still holds between reads (BodyReader), only less tightly.
    transports = [getattr(http, "_transport", None), *getattr(http, "_mounts", {}).values()]
    backends = []
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(
            backend, DeadlineBackend
        ):
            backend = pool._network_backend = DeadlineBackend(backend)  # type: ignore[union-attr]
        if isinstance(backend, DeadlineBackend):
            backends.append(backend)
    return backends


def exchange_bound(timeout: httpx.Timeout) -> float | None:
    """How long a whole exchange may take: the longest of the per-phase timeouts."""
    values = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t]
    return max(values) if values else None


async def within(budget: float | None, coro: Any) -> Any:
    """Await ``coro``; a :class:`~lago_segment.errors.LagoTimeoutError` after ``budget`` s."""
    # asyncio.timeout is 3.11+; wait_for works everywhere (one more task).
    if budget is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, budget)
    except asyncio.TimeoutError:
        raise LagoTimeoutError(
            f"no complete answer within the request timeout ({budget:.3g} s)"
        ) from None
