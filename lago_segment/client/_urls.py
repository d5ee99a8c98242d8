"""Lago's origins and the check of the ``api_url`` a client is given."""

from __future__ import annotations

import ipaddress

import httpx

from lago_segment._types import EU_API_URL, US_API_URL
from lago_segment.errors import ConfigurationError

__all__ = ["EU_API_URL", "US_API_URL", "check_api_url"]


def check_api_url(api_url: str, *, allow_insecure_http: bool) -> str:
    """Validate a Lago origin and return it without a trailing ``/`` or ``/api/v1``.

    ``http://`` is refused unless the host is loopback or the caller opted in:
    the API key would travel in clear text.
    """
    try:
        url = httpx.URL(api_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError("api_url", f"is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            "api_url", f"must be an http(s) origin like {US_API_URL}, not {api_url!r}"
        )
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise ConfigurationError(
            "api_url",
            f"{api_url!r} is plain http to a remote host: the API key would travel in clear "
            "text. Use https, or pass allow_insecure_http=True if you really mean it",
        )
    base = str(url.copy_with(query=None, fragment=None)).rstrip("/")
    return base.removesuffix("/api/v1")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
