"""What both client shells share: the connection pool's options, budgets, repr.

:class:`BaseClient` is built from the shell's validated
:class:`~lago_segment.client._options.ClientOptions`, works out each exchange's
time budget, builds the request, turns whatever a transport raised into what
the caller may see, and gives both clients their read-only properties. The
sync and async shells add only the I/O.
"""

from __future__ import annotations

from typing import Any

import httpx

from lago_segment._retry import RetryPolicy
from lago_segment.errors import ClientClosedError, LagoConnectionError, LagoTransportError

from ._deadline import exchange_bound
from ._flows import Call, ClientFlows
from ._options import ClientOptions
from ._redact import mask, safe_url


class BaseClient:
    """Deadlines, closing, properties and repr shared by both clients, from their options."""

    _options: ClientOptions
    _flows: ClientFlows
    _http: httpx.Client | httpx.AsyncClient
    _timeout: httpx.Timeout
    _owns_http: bool
    _closed: bool

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self._flows = ClientFlows(options)
        self._timeout = options.http_timeout
        self._bound = exchange_bound(self._timeout)
        self._owns_http = options.http_client is None
        self._closed = False
        self._headers = {} if options.http_client is None else dict(self._flows.headers)

    def _pool_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"headers": self._flows.headers, "timeout": self._timeout}
        if self._options.proxy is not None:
            options["proxy"] = self._options.proxy
        elif self._options.origin.startswith("http://"):
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

    def _request(self, call: Call, budget: float | None) -> httpx.Request:
        return self._http.build_request(
            "POST",
            self._flows.url(call.path),
            content=call.body,
            headers=self._headers,
            timeout=self._request_timeout(budget),
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} is closed")
        if self._http.is_closed:
            raise ClientClosedError(f"the http_client of this {type(self).__name__} is closed")

    def _failure(self, exc: Exception) -> Exception:
        # What a failed exchange raises: ClientClosedError if the client was
        # closed meanwhile (that is not a delivery failure); else ``exc``, unless
        # its message could carry a secret out (httpx's own errors are wrapped,
        # and scrubbed, by the flows).
        self._check_open()
        redact = self._flows.redact
        if isinstance(exc, (httpx.TransportError, LagoTransportError)) or redact.chain_is_clean(
            exc
        ):
            return exc
        return LagoConnectionError(redact(f"{type(exc).__name__}: {exc}"))

    @property
    def api_url(self) -> str:
        """The Lago origin this client posts to (without ``/api/v1``; userinfo masked)."""
        return safe_url(self._options.origin)

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._options.retry

    @property
    def closed(self) -> bool:
        """True once closed: every call then raises ``ClientClosedError``."""
        return self._closed

    @property
    def max_response_bytes(self) -> int:
        """The longest response body this client reads (longer: ``LagoResponseTooLargeError``)."""
        return self._options.max_response_bytes

    def redact(self, text: str) -> str:
        """``text`` with this client's secrets (API key, URL userinfo) replaced by ``********``.

        The client already scrubs everything it lets out (exceptions, results,
        its log records); use this for text of your own that may quote a
        transport library's message, before logging or writing it.

        >>> LagoClient("sk_live_123").redact("header b'Bearer sk_live_123'")  # doctest: +SKIP
        "header b'Bearer ********'"
        """
        return self._flows.redact(text)

    def __repr__(self) -> str:
        key = mask(self._options.api_key)
        return f"{type(self).__name__}(api_url={self.api_url!r}, api_key={key})"
