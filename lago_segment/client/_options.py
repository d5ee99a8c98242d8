"""The clients' options, gathered and checked once: :class:`ClientOptions`.

:class:`~lago_segment.client.LagoClient` and
:class:`~lago_segment.client.AsyncLagoClient` keep their explicit keyword
signatures (users and IDEs see every option with its docs) and build one of
these; the shared base class reads the connection options from it and
:class:`~lago_segment.client._flows.ClientFlows` the rest. Its repr never
shows the API key, nor the userinfo of the API or proxy URL.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import httpx

from lago_segment._retry import RetryPolicy
from lago_segment.errors import ConfigurationError

from ._batching import DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_SIZE
from ._redact import check_api_key, mask, safe_url
from ._responses import DEFAULT_MAX_RESPONSE_BYTES, RateLimitInfo
from ._urls import US_API_URL, check_api_url


def _default_retry(value: RetryPolicy | None) -> RetryPolicy:
    return value if value is not None else RetryPolicy()


def _url_repr(url: str) -> str:
    return repr(safe_url(url))


def _proxy_repr(proxy: str | httpx.Proxy | None) -> str:
    # httpx.Proxy masks its own password; a proxy URL given as text may carry one.
    return _url_repr(proxy) if isinstance(proxy, str) else repr(proxy)


@attrs.frozen(slots=True, kw_only=True)
class ClientOptions:
    """The options both clients share, validated once on construction.

    Raises :class:`~lago_segment.errors.ConfigurationError` (a ``ValueError``)
    naming the first bad option, in this order: ``api_key``,
    ``max_batch_size``, ``max_batch_bytes``, ``max_response_bytes``,
    ``api_url``, ``timeout``, ``proxy`` (given with an ``http_client``).
    """

    api_key: str = attrs.field(repr=mask)
    """The secret: shown as ``'********'`` in the repr."""
    api_url: str = attrs.field(default=US_API_URL, repr=_url_repr)
    """As given; :attr:`origin` is the checked origin requests go to."""
    timeout: float | httpx.Timeout | None = 10.0
    """As given; :attr:`http_timeout` is the ``httpx.Timeout`` requests get."""
    retry: RetryPolicy = attrs.field(default=None, converter=_default_retry)
    http_client: httpx.Client | httpx.AsyncClient | None = None
    allow_insecure_http: bool = False
    on_rate_limit: Callable[[RateLimitInfo], None] | None = None
    max_batch_size: int = MAX_BATCH_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    proxy: str | httpx.Proxy | None = attrs.field(default=None, repr=_proxy_repr)
    origin: str = attrs.field(init=False, repr=False)
    http_timeout: httpx.Timeout = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        check_api_key(self.api_key)
        max_batch_size = self.max_batch_size
        if isinstance(max_batch_size, bool) or not 1 <= max_batch_size <= MAX_BATCH_SIZE:
            raise ConfigurationError(
                "max_batch_size", f"must be between 1 and {MAX_BATCH_SIZE}, not {max_batch_size}"
            )
        max_batch_bytes = self.max_batch_bytes
        if isinstance(max_batch_bytes, bool) or max_batch_bytes < 1:
            raise ConfigurationError("max_batch_bytes", f"must be >= 1, not {max_batch_bytes}")
        max_response_bytes = self.max_response_bytes
        if isinstance(max_response_bytes, bool) or not (
            isinstance(max_response_bytes, int) and max_response_bytes >= 1024
        ):
            raise ConfigurationError(
                "max_response_bytes", f"must be an int >= 1024, not {max_response_bytes!r}"
            )
        origin = check_api_url(self.api_url, allow_insecure_http=self.allow_insecure_http)
        timeout = self.timeout
        if isinstance(timeout, httpx.Timeout):
            http_timeout = timeout
        elif timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ConfigurationError(
                "timeout", f"must be a number of seconds > 0 or an httpx.Timeout, not {timeout!r}"
            )
        else:
            http_timeout = httpx.Timeout(timeout)
        if self.proxy is not None and self.http_client is not None:
            raise ConfigurationError(
                "proxy", "give the proxy to your own http_client, or leave http_client out"
            )
        # The documented way to set fields of a frozen attrs class after __init__.
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "http_timeout", http_timeout)
