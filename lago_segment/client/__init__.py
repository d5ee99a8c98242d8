"""Sync and async clients for Lago's events API.

Both clients are thin shells over one I/O-free core (``lago_segment.client._flows``):
they only post bytes and sleep; batching, retries and the reading of Lago's
answers are shared, so :class:`LagoClient` and :class:`AsyncLagoClient`
behave identically.

>>> from lago_segment.client import LagoClient
>>> with LagoClient("my-api-key") as lago:  # doctest: +SKIP
...     result = lago.send_batch(events)
...     for failure in result.failed:
...         print(failure.event.transaction_id, failure.error)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpcore
import httpx

from lago_segment._retry import RetryPolicy
from lago_segment.errors import (
    ClientClosedError,
    ConfigurationError,
    LagoConnectionError,
    LagoTimeoutError,
    LagoTransportError,
)
from lago_segment.lago import LagoEvent, PropertyValue

from ._batching import DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_SIZE
from ._flows import Call, ClientCore, Flow, Reply, Wait
from ._redact import mask, safe_url
from ._responses import DEFAULT_MAX_RESPONSE_BYTES, BodyReader, RateLimitInfo
from ._results import BatchResult, DeliveryFailure
from ._urls import EU_API_URL, US_API_URL

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "EU_API_URL",
    "US_API_URL",
    "AsyncLagoClient",
    "BatchResult",
    "DeliveryFailure",
    "LagoClient",
    "RateLimitInfo",
    "RetryPolicy",
]

T = TypeVar("T")


def _drive(
    flow: Flow[T], post: Callable[[Call], httpx.Response], sleep: Callable[[float], Any]
) -> T:
    reply: Reply = None
    closed: ClientClosedError | None = None
    try:
        while True:
            step = flow.send(reply) if closed is None else flow.throw(closed)
            try:
                if isinstance(step, Wait):
                    sleep(step.seconds)
                    reply = None
                    continue
                reply = post(step)
            except (httpx.TransportError, LagoTransportError) as exc:
                reply = exc
            except ClientClosedError as exc:
                closed = exc  # the flow annotates it with what was settled
    except StopIteration as stop:
        result: T = stop.value
        return result


async def _adrive(flow: Flow[T], post: Callable[[Call], Any], sleep: Callable[[float], Any]) -> T:
    reply: Reply = None
    closed: ClientClosedError | None = None
    try:
        while True:
            step = flow.send(reply) if closed is None else flow.throw(closed)
            try:
                if isinstance(step, Wait):
                    await sleep(step.seconds)
                    reply = None
                    continue
                reply = await post(step)
            except (httpx.TransportError, LagoTransportError) as exc:
                reply = exc
            except ClientClosedError as exc:
                closed = exc
    except StopIteration as stop:
        result: T = stop.value
        return result


# The instant (time.monotonic) by which the current request must be over; read
# by every socket operation of the sync client's own pool (see _DeadlineStream).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "lago_segment_request_deadline", default=None
)


def _left(timeout: float | None, phase: str) -> float | None:
    deadline = _deadline.get()
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


class _DeadlineStream(httpcore.NetworkStream):
    # httpcore's timeouts are per socket operation: a server trickling one byte
    # per second never trips them. Capping each operation at what is left of
    # the request's deadline bounds the whole exchange, headers included.
    def __init__(self, stream: httpcore.NetworkStream, backend: _DeadlineBackend) -> None:
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
        return _DeadlineStream(inner, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend
        self.streams: weakref.WeakSet[_DeadlineStream] = weakref.WeakSet()

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
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _left(timeout, "connect"), socket_options)
        return _DeadlineStream(stream, self)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_sockets(http: httpx.Client) -> list[_DeadlineBackend]:
    # httpx has no public way to give its pool a network backend: reach the
    # pools of the client's own transports. If httpx changes, the deadline
    # still holds between reads (BodyReader), only less tightly.
    transports = [getattr(http, "_transport", None), *getattr(http, "_mounts", {}).values()]
    backends = []
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend) and not isinstance(
            backend, _DeadlineBackend
        ):
            backend = pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
        if isinstance(backend, _DeadlineBackend):
            backends.append(backend)
    return backends


def _exchange_bound(timeout: httpx.Timeout) -> float | None:
    # The whole exchange gets the longest of the per-phase timeouts.
    values = [t for t in (timeout.connect, timeout.read, timeout.write, timeout.pool) if t]
    return max(values) if values else None


class _BaseClient:
    """Options, deadlines, closing and repr shared by both clients."""

    _core: ClientCore
    _timeout: httpx.Timeout
    _owns_http: bool
    _closed: bool

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str,
        timeout: float | httpx.Timeout | None,
        retry: RetryPolicy | None,
        allow_insecure_http: bool,
        on_rate_limit: Callable[[RateLimitInfo], None] | None,
        max_batch_size: int,
        max_batch_bytes: int,
        max_response_bytes: int,
        proxy: str | httpx.Proxy | None,
        http_client: object,
    ) -> None:
        self._core = ClientCore.create(
            api_key,
            api_url=api_url,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            on_rate_limit=on_rate_limit,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            max_response_bytes=max_response_bytes,
        )
        if isinstance(timeout, httpx.Timeout):
            self._timeout = timeout
        elif timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ConfigurationError(
                "timeout", f"must be a number of seconds > 0 or an httpx.Timeout, not {timeout!r}"
            )
        else:
            self._timeout = httpx.Timeout(timeout)
        self._bound = _exchange_bound(self._timeout)
        if proxy is not None and http_client is not None:
            raise ConfigurationError(
                "proxy", "give the proxy to your own http_client, or leave http_client out"
            )
        self._proxy = proxy
        self._owns_http = http_client is None
        self._closed = False
        self._headers = {} if http_client is None else dict(self._core.headers)

    def _pool_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"headers": self._core.headers, "timeout": self._timeout}
        if self._proxy is not None:
            options["proxy"] = self._proxy
        elif self._core.api_url.startswith("http://"):
            # A proxy from the environment (HTTP_PROXY, ALL_PROXY) would see the
            # Bearer key in clear: plain http goes direct unless the proxy was
            # given explicitly. https keeps the environment's proxies (the
            # proxy only sees a CONNECT) and trust_env's other settings.
            options["mounts"] = {"http://": None}
        return options

    def _budget(self, call: Call) -> float | None:
        # The whole exchange ends by the client's timeout, or by what is left
        # of the retry policy's overall deadline if that comes first.
        if call.timeout is None:
            return self._bound
        return call.timeout if self._bound is None else min(self._bound, call.timeout)

    def _request_timeout(self, budget: float | None) -> httpx.Timeout:
        if budget is None or (self._bound is not None and budget >= self._bound):
            return self._timeout  # the usual case: no new object per request
        t = self._timeout
        return httpx.Timeout(
            connect=budget if t.connect is None else min(t.connect, budget),
            read=budget if t.read is None else min(t.read, budget),
            write=budget if t.write is None else min(t.write, budget),
            pool=budget if t.pool is None else min(t.pool, budget),
        )

    def _check_open(self, http: httpx.Client | httpx.AsyncClient) -> None:
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} is closed")
        if http.is_closed:
            raise ClientClosedError(f"the http_client of this {type(self).__name__} is closed")

    def _scrubbed(self, exc: Exception) -> Exception:
        # Whatever a transport raises, its message must not carry a secret out
        # (httpx's own errors are wrapped, and scrubbed, by the core).
        redact = self._core.redact
        if isinstance(exc, (httpx.TransportError, LagoTransportError)) or redact.chain_is_clean(
            exc
        ):
            return exc
        return LagoConnectionError(redact(f"{type(exc).__name__}: {exc}"))

    @property
    def api_url(self) -> str:
        """The Lago origin this client posts to (without ``/api/v1``; userinfo masked)."""
        return safe_url(self._core.api_url)

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._core.policy

    @property
    def closed(self) -> bool:
        """True once closed: every call then raises ``ClientClosedError``."""
        return self._closed

    @property
    def max_response_bytes(self) -> int:
        """The longest response body this client reads (longer: ``LagoResponseTooLargeError``)."""
        return self._core.max_response_bytes

    def redact(self, text: str) -> str:
        """``text`` with this client's secrets (API key, URL userinfo) replaced by ``********``.

        The client already scrubs everything it lets out (exceptions, results,
        its log records); use this for text of your own that may quote a
        transport library's message, before logging or writing it.

        >>> LagoClient("sk_live_123").redact("header b'Bearer sk_live_123'")  # doctest: +SKIP
        "header b'Bearer ********'"
        """
        return self._core.redact(text)

    def __repr__(self) -> str:
        key = mask(self._core.api_key)
        return f"{type(self).__name__}(api_url={self.api_url!r}, api_key={key})"


class LagoClient(_BaseClient):
    """A blocking client for Lago's events API, with one pooled ``httpx.Client``.

    ``api_url`` is ``US_API_URL`` (default), ``EU_API_URL`` or your self-hosted
    origin. ``timeout`` bounds each HTTP exchange as a whole (connecting,
    sending, and reading the answer, however slowly it trickles); ``retry``
    decides the retries and their overall deadline. Answers longer than
    ``max_response_bytes`` (1 MiB) are cut off and count as a failed attempt.
    ``proxy`` is used for every request; without it, proxies from the
    environment apply to ``https://`` only. Bring your own ``http_client`` for
    custom transports or mocks: it is used as is and not closed by :meth:`close`.

    >>> with LagoClient("my-api-key", api_url=EU_API_URL) as lago:  # doctest: +SKIP
    ...     lago.send(event)
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = US_API_URL,
        timeout: float | httpx.Timeout | None = 10.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        allow_insecure_http: bool = False,
        on_rate_limit: Callable[[RateLimitInfo], None] | None = None,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | httpx.Proxy | None = None,
    ) -> None:
        super().__init__(
            api_key,
            api_url=api_url,
            timeout=timeout,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            on_rate_limit=on_rate_limit,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            max_response_bytes=max_response_bytes,
            proxy=proxy,
            http_client=http_client,
        )
        self._backends: list[_DeadlineBackend] = []
        if http_client is None:
            http_client = httpx.Client(**self._pool_options())
            self._backends = _bound_sockets(http_client)
            self._sockets_bounded = bool(self._backends)
        else:
            # Harmless for the user's own requests: the cap only applies while
            # one of ours runs. Their sockets are theirs to close, though.
            self._sockets_bounded = bool(_bound_sockets(http_client))
        self._http = http_client
        self._closing = threading.Event()

    def _post(self, call: Call) -> httpx.Response:
        self._check_open(self._http)
        budget = self._budget(call)
        deadline = None if budget is None else time.monotonic() + budget
        token = _deadline.set(deadline)
        try:
            request = self._http.build_request(
                "POST",
                self._core.url(call.path),
                content=call.body,
                headers=self._headers,
                timeout=self._request_timeout(budget),
            )
            response = self._http.send(request, stream=True)
            try:
                reader = BodyReader(response, self._core.max_response_bytes, deadline)
                if reader.fits and self._sockets_bounded:
                    response.read()  # the sockets hold the deadline
                    return response
                for chunk in response.iter_bytes():
                    reader.add(chunk)
            finally:
                response.close()
            return reader.response()
        except Exception as exc:
            # close() from another thread ends the request any which way:
            # that is not a delivery failure.
            self._check_open(self._http)
            scrubbed = self._scrubbed(exc)
            if scrubbed is exc:
                raise
            raise scrubbed from None
        finally:
            _deadline.reset(token)

    def _sleep(self, seconds: float) -> None:
        # An Event, not time.sleep: close() from another thread ends the wait.
        if self._closing.wait(seconds):
            raise ClientClosedError(f"{type(self).__name__} was closed during a retry wait")

    def _run(self, flow: Flow[T]) -> T:
        return _drive(flow, self._post, self._core.policy.sleep or self._sleep)

    def send(self, event: LagoEvent) -> None:
        """Post one event (retrying per the policy).

        A duplicate transaction_id counts as success. Raises a
        :class:`~lago_segment.LagoAPIError` subclass when Lago refuses it, a
        :class:`~lago_segment.LagoTransportError` when no answer came back,
        :class:`~lago_segment.errors.ClientClosedError` once the client is
        closed, and ``TypeError`` for anything but one ``LagoEvent``.
        """
        self._run(self._core.send(event))

    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        """Post any number of events in batches of at most 100 (and the byte cap).

        Never raises for API or transport failures: every event ends in exactly
        one of ``delivered``, ``duplicates`` and ``failed``. One event Lago
        rejects is set aside and the rest of its batch resent. Raises
        ``TypeError`` (before sending anything) unless given an iterable of
        ``LagoEvent``, and :class:`~lago_segment.errors.ClientClosedError`
        (carrying the result so far) if the client is closed meanwhile.
        """
        return self._run(self._core.send_batch(events))

    def estimate_fees(
        self,
        code: str,
        external_subscription_id: str,
        properties: Mapping[str, PropertyValue] | None = None,
    ) -> list[dict[str, Any]]:
        """The fees Lago would create for such an event (pay-in-advance charges only)."""
        return self._run(self._core.estimate_fees(code, external_subscription_id, properties))

    def close(self) -> None:
        """Close the client: later calls raise ``ClientClosedError``, retry waits end.

        Closes the connection pool, not a ``http_client`` you passed in.
        Closing twice is harmless.
        """
        self._closed = True
        self._closing.set()
        if self._owns_http:
            for backend in self._backends:
                backend.abort()  # requests in flight in other threads end now
            self._http.close()

    def __enter__(self) -> LagoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _within(budget: float | None, coro: Any) -> Any:
    # asyncio.timeout is 3.11+; wait_for works everywhere (one more task).
    if budget is None:
        return await coro
    try:
        return await asyncio.wait_for(coro, budget)
    except asyncio.TimeoutError:
        raise LagoTimeoutError(
            f"no complete answer within the request timeout ({budget:.3g} s)"
        ) from None


class AsyncLagoClient(_BaseClient):
    """The asyncio twin of :class:`LagoClient`, with one pooled ``httpx.AsyncClient``.

    Same options and behaviour; ``send``, ``send_batch`` and ``estimate_fees``
    are coroutines, and it closes with ``aclose()`` or ``async with``.

    >>> async with AsyncLagoClient("my-api-key") as lago:  # doctest: +SKIP
    ...     result = await lago.send_batch(events)
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = US_API_URL,
        timeout: float | httpx.Timeout | None = 10.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        on_rate_limit: Callable[[RateLimitInfo], None] | None = None,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | httpx.Proxy | None = None,
    ) -> None:
        super().__init__(
            api_key,
            api_url=api_url,
            timeout=timeout,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            on_rate_limit=on_rate_limit,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            max_response_bytes=max_response_bytes,
            proxy=proxy,
            http_client=http_client,
        )
        self._http = http_client or httpx.AsyncClient(**self._pool_options())

    async def _post(self, call: Call) -> httpx.Response:
        self._check_open(self._http)
        budget = self._budget(call)
        try:
            response: httpx.Response = await _within(budget, self._exchange(call, budget))
        except Exception as exc:
            self._check_open(self._http)
            scrubbed = self._scrubbed(exc)
            if scrubbed is exc:
                raise
            raise scrubbed from None
        return response

    async def _exchange(self, call: Call, budget: float | None) -> httpx.Response:
        request = self._http.build_request(
            "POST",
            self._core.url(call.path),
            content=call.body,
            headers=self._headers,
            timeout=self._request_timeout(budget),
        )
        response = await self._http.send(request, stream=True)
        try:
            # _within() holds the deadline; the reader only bounds the size.
            reader = BodyReader(response, self._core.max_response_bytes, None)
            if reader.fits:
                await response.aread()
                return response
            async for chunk in response.aiter_bytes():
                reader.add(chunk)
        finally:
            await response.aclose()
        return reader.response()

    async def _sleep(self, seconds: float) -> None:
        policy = self._core.policy
        if policy.sleep is not None:
            policy.sleep(seconds)
        else:
            await asyncio.sleep(seconds)
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} was closed during a retry wait")

    async def _run(self, flow: Flow[T]) -> T:
        return await _adrive(flow, self._post, self._sleep)

    async def send(self, event: LagoEvent) -> None:
        """Post one event; see :meth:`LagoClient.send`."""
        await self._run(self._core.send(event))

    async def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        """Post any number of events; see :meth:`LagoClient.send_batch`."""
        return await self._run(self._core.send_batch(events))

    async def estimate_fees(
        self,
        code: str,
        external_subscription_id: str,
        properties: Mapping[str, PropertyValue] | None = None,
    ) -> list[dict[str, Any]]:
        """The fees Lago would create; see :meth:`LagoClient.estimate_fees`."""
        flow = self._core.estimate_fees(code, external_subscription_id, properties)
        return await self._run(flow)

    async def aclose(self) -> None:
        """Close the client (see :meth:`LagoClient.close`); not a ``http_client`` you passed in."""
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncLagoClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
