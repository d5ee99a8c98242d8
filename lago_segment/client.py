"""Sync and async clients for Lago's events API.

Both clients are thin shells over one I/O-free core (``lago_segment._core``):
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
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._core import (
    DEFAULT_MAX_BATCH_BYTES,
    EU_API_URL,
    MAX_BATCH_SIZE,
    US_API_URL,
    Call,
    ClientCore,
    Flow,
    RateLimitInfo,
    Reply,
    RetryPolicy,
    Wait,
    mask,
)
from ._results import BatchResult, DeliveryFailure
from .lago import LagoEvent, PropertyValue

__all__ = [
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
    try:
        while True:
            step = flow.send(reply)
            if isinstance(step, Wait):
                sleep(step.seconds)
                reply = None
                continue
            try:
                reply = post(step)
            except httpx.TransportError as exc:
                reply = exc
    except StopIteration as stop:
        result: T = stop.value
        return result


async def _adrive(flow: Flow[T], post: Callable[[Call], Any], sleep: Callable[[float], Any]) -> T:
    reply: Reply = None
    try:
        while True:
            step = flow.send(reply)
            if isinstance(step, Wait):
                await sleep(step.seconds)
                reply = None
                continue
            try:
                reply = await post(step)
            except httpx.TransportError as exc:
                reply = exc
    except StopIteration as stop:
        result: T = stop.value
        return result


class _BaseClient:
    """Options and repr shared by both clients."""

    _core: ClientCore
    _timeout: httpx.Timeout
    _owns_http: bool

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy | None,
        allow_insecure_http: bool,
        on_rate_limit: Callable[[RateLimitInfo], None] | None,
        max_batch_size: int,
        max_batch_bytes: int,
    ) -> None:
        self._core = ClientCore.create(
            api_key,
            api_url=api_url,
            retry=retry,
            allow_insecure_http=allow_insecure_http,
            on_rate_limit=on_rate_limit,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
        )
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)

    def _request_options(self, http_client: object) -> dict[str, Any]:
        # Our own pool carries the headers and timeout as defaults (cheaper per
        # request); a client the user brought gets them on every request.
        if http_client is None:
            return {}
        return {"headers": self._core.headers, "timeout": self._timeout}

    @property
    def api_url(self) -> str:
        """The Lago origin this client posts to (without ``/api/v1``)."""
        return self._core.api_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._core.policy

    def __repr__(self) -> str:
        key = mask(self._core.api_key)
        return f"{type(self).__name__}(api_url={self.api_url!r}, api_key={key})"


class LagoClient(_BaseClient):
    """A blocking client for Lago's events API, with one pooled ``httpx.Client``.

    ``api_url`` is ``US_API_URL`` (default), ``EU_API_URL`` or your self-hosted
    origin. ``timeout`` applies to each HTTP request; ``retry`` decides the
    retries and their overall deadline. Bring your own ``http_client`` for
    proxies, custom transports or mocks: it is used as is and not closed by
    :meth:`close`.

    >>> with LagoClient("my-api-key", api_url=EU_API_URL) as lago:  # doctest: +SKIP
    ...     lago.send(event)
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = US_API_URL,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        allow_insecure_http: bool = False,
        on_rate_limit: Callable[[RateLimitInfo], None] | None = None,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
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
        )
        self._owns_http = http_client is None
        self._http = (
            httpx.Client(headers=self._core.headers, timeout=self._timeout)
            if http_client is None
            else http_client
        )
        self._per_request = self._request_options(http_client)

    def _post(self, call: Call) -> httpx.Response:
        return self._http.post(self._core.url(call.path), content=call.body, **self._per_request)

    def _run(self, flow: Flow[T]) -> T:
        return _drive(flow, self._post, self._core.policy.sleep or time.sleep)

    def send(self, event: LagoEvent) -> None:
        """Post one event (retrying per the policy).

        A duplicate transaction_id counts as success. Raises a
        :class:`~lago_segment.LagoAPIError` subclass when Lago refuses it, or a
        :class:`~lago_segment.LagoTransportError` when no answer came back.
        """
        self._run(self._core.send(event))

    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        """Post any number of events in batches of at most 100 (and the byte cap).

        Never raises for API or transport failures: every event ends in exactly
        one of ``delivered``, ``duplicates`` and ``failed``. One event Lago
        rejects is set aside and the rest of its batch resent.
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
        """Close the connection pool (not a ``http_client`` you passed in)."""
        if self._owns_http:
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


async def _async_sleep(policy: RetryPolicy, seconds: float) -> None:
    if policy.sleep is not None:
        policy.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


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
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        on_rate_limit: Callable[[RateLimitInfo], None] | None = None,
        max_batch_size: int = MAX_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
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
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            headers=self._core.headers, timeout=self._timeout
        )
        self._per_request = self._request_options(http_client)

    async def _post(self, call: Call) -> httpx.Response:
        url = self._core.url(call.path)
        return await self._http.post(url, content=call.body, **self._per_request)

    async def _run(self, flow: Flow[T]) -> T:
        policy = self._core.policy
        return await _adrive(flow, self._post, lambda s: _async_sleep(policy, s))

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
        """Close the connection pool (not a ``http_client`` you passed in)."""
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
