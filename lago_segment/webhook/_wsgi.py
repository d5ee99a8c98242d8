"""The WSGI (PEP 3333) app of Segment's webhook receiver: `_http`'s shell, plus the factory."""

from __future__ import annotations

from lago_segment._http import WSGIEndpointApp
from lago_segment._types import ErrorCallback, SupportsForward
from lago_segment.webhook._receiver import DEFAULT_MAX_BODY_BYTES, Endpoint

__all__ = ["WSGIApp", "wsgi_app"]


class WSGIApp(WSGIEndpointApp[Endpoint]):
    """A WSGI application receiving Segment's webhooks; build it with :func:`wsgi_app`."""

    __slots__ = ()


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
