"""The asyncio client: :class:`AsyncLagoClient` and the driver that runs flows with awaits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from lago_segment._retry import RetryPolicy
from lago_segment.errors import ClientClosedError, LagoTransportError
from lago_segment.lago import LagoEvent, PropertyValue

from ._base import BaseClient
from ._batching import DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_SIZE
from ._deadline import within
from ._flows import Call, Flow, Reply, Wait
from ._options import ClientOptions
from ._responses import DEFAULT_MAX_RESPONSE_BYTES, BodyReader, RateLimitInfo
from ._results import BatchResult
from ._urls import US_API_URL

T = TypeVar("T")


async def adrive(flow: Flow[T], post: Callable[[Call], Any], sleep: Callable[[float], Any]) -> T:
    """Run ``flow`` to its end: await ``post`` for each :class:`Call`, ``sleep`` for each Wait."""
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


class AsyncLagoClient(BaseClient):
    """The asyncio twin of :class:`LagoClient`, with one pooled ``httpx.AsyncClient``.

    Same options and behaviour; ``send``, ``send_batch`` and ``estimate_fees``
    are coroutines, and it closes with ``aclose()`` or ``async with``.

    >>> async with AsyncLagoClient("my-api-key") as lago:  # doctest: +SKIP
    ...     result = await lago.send_batch(events)
    """

    _http: httpx.AsyncClient

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
        options = ClientOptions(
            api_key=api_key,
            api_url=api_url,
            timeout=timeout,
            retry=retry,
            http_client=http_client,
            allow_insecure_http=allow_insecure_http,
            on_rate_limit=on_rate_limit,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            max_response_bytes=max_response_bytes,
            proxy=proxy,
        )
        super().__init__(options)
        self._http = http_client or httpx.AsyncClient(**self._pool_options())

    async def _post(self, call: Call) -> httpx.Response:
        self._check_open()
        budget = self._budget(call)
        try:
            response: httpx.Response = await within(budget, self._exchange(call, budget))
        except Exception as exc:
            failure = self._failure(exc)
            if failure is exc:
                raise
            raise failure from None
        return response

    async def _exchange(self, call: Call, budget: float | None) -> httpx.Response:
        response = await self._http.send(self._request(call, budget), stream=True)
        try:
            # within() holds the deadline; the reader only bounds the size.
            reader = BodyReader(response, self._options.max_response_bytes, None)
            if reader.fits:
                await response.aread()
                return response
            async for chunk in response.aiter_bytes():
                reader.add(chunk)
        finally:
            await response.aclose()
        return reader.response()

    async def _sleep(self, seconds: float) -> None:
        policy = self._options.retry
        if policy.sleep is not None:
            policy.sleep(seconds)
        else:
            await asyncio.sleep(seconds)
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} was closed during a retry wait")

    async def _run(self, flow: Flow[T]) -> T:
        return await adrive(flow, self._post, self._sleep)

    async def send(self, event: LagoEvent) -> None:
        """Post one event; see :meth:`LagoClient.send`."""
        await self._run(self._flows.send(event))

    async def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        """Post any number of events; see :meth:`LagoClient.send_batch`."""
        return await self._run(self._flows.send_batch(events))

    async def estimate_fees(
        self,
        code: str,
        external_subscription_id: str,
        properties: Mapping[str, PropertyValue] | None = None,
    ) -> list[dict[str, Any]]:
        """The fees Lago would create; see :meth:`LagoClient.estimate_fees`."""
        flow = self._flows.estimate_fees(code, external_subscription_id, properties)
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
