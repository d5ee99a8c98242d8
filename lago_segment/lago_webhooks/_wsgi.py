"""The WSGI (PEP 3333) adapter of the Lago webhook receiver: no framework, just the protocol."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from lago_segment._http import read_wsgi_body, wsgi_headers
from lago_segment.lago_webhooks._core import (
    DEFAULT_MAX_BODY_BYTES,
    Endpoint,
    LagoWebhookResponse,
    _respond,
)
from lago_segment.lago_webhooks._rejected import RejectedCallback
from lago_segment.lago_webhooks._signatures import LagoPublicKey

if TYPE_CHECKING:
    from lago_segment.mapping import MappingSpec

__all__ = ["LagoWebhookWSGIApp", "wsgi_app"]

StartResponse = Callable[..., Any]


class LagoWebhookWSGIApp:
    """A WSGI application receiving Lago's webhooks; build it with :func:`wsgi_app`."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        """The configuration (its repr masks the HMAC key)."""

    def __repr__(self) -> str:
        return f"LagoWebhookWSGIApp({self.endpoint!r})"

    def close(self) -> None:
        """Close the dead-letter file, if one was asked for (at the server's shutdown)."""
        self.endpoint.close()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or None
        response = self.endpoint.precheck(
            environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), length
        )
        if response is None:
            response = self._read_and_handle(environ, length)
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        start_response(status, list(response.headers))
        return [response.body]

    def _read_and_handle(self, environ: dict[str, Any], length: str | None) -> LagoWebhookResponse:
        limit = self.endpoint.max_body_bytes
        body = read_wsgi_body(environ, length, limit)
        if body is None:
            return _respond(411, "Content-Length required")
        if len(body) > limit:
            return self.endpoint.too_large()
        return self.endpoint.handle(body, wsgi_headers(environ))


def wsgi_app(
    on_rejected: RejectedCallback | Iterable[RejectedCallback] | None = None,
    *,
    hmac_key: str | None = None,
    public_key: LagoPublicKey | str | bytes | None = None,
    issuer: str | None = None,
    spec: MappingSpec | None = None,
    dead_letter: str | os.PathLike[str] | None = None,
    path: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> LagoWebhookWSGIApp:
    """A WSGI (PEP 3333) app that receives Lago's webhooks and reports rejected events.

    The options are :func:`asgi_app`'s. A :class:`LagoPublicKey` fetched from
    Lago is loaded on the first jwt webhook; call its ``get()`` at start-up to
    answer that one fast too. See :func:`handle` for the answers.
    """
    return LagoWebhookWSGIApp(
        Endpoint.create(
            on_rejected,
            hmac_key=hmac_key,
            public_key=public_key,
            issuer=issuer,
            spec=spec,
            dead_letter=dead_letter,
            path=path,
            max_body_bytes=max_body_bytes,
        )
    )
