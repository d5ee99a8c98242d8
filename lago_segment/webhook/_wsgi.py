"""The WSGI (PEP 3333) adapter: no framework, just the protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from lago_segment._http import read_wsgi_body, wsgi_headers
from lago_segment._types import ErrorCallback, SupportsForward
from lago_segment.webhook._core import DEFAULT_MAX_BODY_BYTES, Endpoint, WebhookResponse, _respond

__all__ = ["WSGIApp", "wsgi_app"]

StartResponse = Callable[..., Any]


class WSGIApp:
    """A WSGI application receiving Segment's webhooks; build it with :func:`wsgi_app`."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        """The configuration (its repr masks the secret)."""

    def __repr__(self) -> str:
        return f"WSGIApp({self.endpoint!r})"

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

    def _read_and_handle(self, environ: dict[str, Any], length: str | None) -> WebhookResponse:
        limit = self.endpoint.max_body_bytes
        body = read_wsgi_body(environ, length, limit)
        if body is None:
            return _respond(411, "Content-Length required")
        if len(body) > limit:
            return self.endpoint.too_large()
        return self.endpoint.handle(body, wsgi_headers(environ))


def wsgi_app(
    forwarder: SupportsForward,
    *,
    secret: str | None = None,
    path: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_error: ErrorCallback | None = None,
    allow_partially_signed_batches: bool = False,
) -> WSGIApp:
    """A WSGI (PEP 3333) app that forwards what Segment's Webhooks destination POSTs.

    Serve it with any WSGI server (gunicorn, uWSGI, ``wsgiref``) or mount it
    beside a Flask/Django app (e.g. werkzeug's ``DispatcherMiddleware``).
    ``path``, when given, is the only ``PATH_INFO`` answered (404 elsewhere).
    Only POST is accepted (405 otherwise); a ``Content-Length`` over
    ``max_body_bytes`` is answered 413 without reading the body, and a body
    without ``Content-Length`` needs a server that sets
    ``wsgi.input_terminated`` (411 otherwise). See :func:`handle` for the
    rest: ``allow_partially_signed_batches`` (off by default, a batch whose
    signature covers only its first event is refused) and the answers. An
    empty ``secret`` raises :class:`~lago_segment.errors.ConfigurationError`.
    """
    return WSGIApp(
        Endpoint(
            forwarder,
            secret,
            path,
            max_body_bytes,
            on_error,
            allow_partially_signed_batches=allow_partially_signed_batches,
        )
    )
