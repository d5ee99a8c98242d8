"""The blocking client: :class:`LagoClient` and the driver that runs flows with blocking I/O."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from lago_segment._retry import RetryPolicy
from lago_segment.errors import ClientClosedError, LagoTransportError
from lago_segment.lago import LagoEvent, PropertyValue

from ._base import BaseClient
from ._batching import DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_SIZE
from ._deadline import DeadlineBackend, bound_sockets, request_deadline
from ._flows import Call, Flow, Reply, Wait
from ._options import ClientOptions
from ._responses import DEFAULT_MAX_RESPONSE_BYTES, BodyReader, RateLimitInfo
from ._results import BatchResult
from ._urls import US_API_URL

T = TypeVar("T")


def drive(
    flow: Flow[T], post: Callable[[Call], httpx.Response], sleep: Callable[[float], Any]
) -> T:
    """Run ``flow`` to its end: ``post`` each :class:`Call`, ``sleep`` each :class:`Wait`."""
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


class LagoClient(BaseClient):
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

    _http: httpx.Client

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
        self._backends: list[DeadlineBackend] = []
        if http_client is None:
            http_client = httpx.Client(**self._pool_options())
            self._backends = bound_sockets(http_client)
            self._sockets_bounded = bool(self._backends)
        else:
            # Harmless for the user's own requests: the cap only applies while
            # one of ours runs. Their sockets are theirs to close, though.
            self._sockets_bounded = bool(bound_sockets(http_client))
        self._http = http_client
        self._closing = threading.Event()

    def _post(self, call: Call) -> httpx.Response:
        self._check_open()
        budget = self._budget(call)
        deadline = None if budget is None else time.monotonic() + budget
        token = request_deadline.set(deadline)
        try:
            response = self._http.send(self._request(call, budget), stream=True)
            try:
                reader = BodyReader(response, self._options.max_response_bytes, deadline)
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
            # _failure() raises ClientClosedError then.
            failure = self._failure(exc)
            if failure is exc:
                raise
            raise failure from None
        finally:
            request_deadline.reset(token)

    def _sleep(self, seconds: float) -> None:
        # An Event, not time.sleep: close() from another thread ends the wait.
        if self._closing.wait(seconds):
            raise ClientClosedError(f"{type(self).__name__} was closed during a retry wait")

    def _run(self, flow: Flow[T]) -> T:
        return drive(flow, self._post, self._options.retry.sleep or self._sleep)

    def send(self, event: LagoEvent) -> None:
        """Post one event (retrying per the policy).

        A duplicate transaction_id counts as success. Raises a
        :class:`~lago_segment.LagoAPIError` subclass when Lago refuses it, a
        :class:`~lago_segment.LagoTransportError` when no answer came back,
        :class:`~lago_segment.errors.ClientClosedError` once the client is
        closed, and ``TypeError`` for anything but one ``LagoEvent``.
        """
        self._run(self._flows.send(event))

    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        """Post any number of events in batches of at most 100 (and the byte cap).

        Never raises for API or transport failures: every event ends in exactly
        one of ``delivered``, ``duplicates`` and ``failed``. One event Lago
        rejects is set aside and the rest of its batch resent. Raises
        ``TypeError`` (before sending anything) unless given an iterable of
        ``LagoEvent``, and :class:`~lago_segment.errors.ClientClosedError`
        (carrying the result so far) if the client is closed meanwhile.
        """
        return self._run(self._flows.send_batch(events))

    def estimate_fees(
        self,
        code: str,
        external_subscription_id: str,
        properties: Mapping[str, PropertyValue] | None = None,
    ) -> list[dict[str, Any]]:
        """The fees Lago would create for such an event (pay-in-advance charges only)."""
        return self._run(self._flows.estimate_fees(code, external_subscription_id, properties))

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
