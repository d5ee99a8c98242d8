"""The ASGI 3 app of Segment's webhook receiver: `_http`'s shell, plus the factory."""

from __future__ import annotations

from lago_segment._http import ASGIEndpointApp
from lago_segment._types import ErrorCallback, SupportsForward
from lago_segment.webhook._receiver import DEFAULT_MAX_BODY_BYTES, Endpoint

__all__ = ["ASGIApp", "asgi_app"]


class ASGIApp(ASGIEndpointApp[Endpoint]):
    """An ASGI 3 application receiving Segment's webhooks; build it with :func:`asgi_app`."""

    __slots__ = ()

    _serves = "the Segment webhook app"


def asgi_app(
    forwarder: SupportsForward,
    *,
    secret: str | None = None,
    path: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_error: ErrorCallback | None = None,
    allow_partially_signed_batches: bool = False,
) -> ASGIApp:
    """An ASGI 3 app that forwards what Segment's Webhooks destination POSTs.

    Serve it on its own (``uvicorn.run(asgi_app(forwarder, secret=...))``) or
    mount it in a Starlette/FastAPI app. ``path``, when given, is the only
    ``scope["path"]`` answered (404 elsewhere); leave it None when mounting.
    Only POST is accepted (405 otherwise). A ``Content-Length`` over
    ``max_body_bytes`` is answered 413 before reading, and a streamed body is
    no longer read once past the limit. A WebSocket connection is closed
    (403). See :func:`handle` for the rest: ``allow_partially_signed_batches``
    (off by default, a batch whose signature covers only its first event is
    refused) and the answers. An empty ``secret`` raises
    :class:`~lago_segment.errors.ConfigurationError`.

    ``forward`` runs on the event loop thread, as ``AsyncForwarder`` requires;
    a thread ``Forwarder`` configured to block when its queue is full would
    block the loop, so prefer ``AsyncForwarder`` or a dropping queue here.
    """
    return ASGIApp(
        Endpoint(
            forwarder,
            secret,
            path,
            max_body_bytes,
            on_error,
            allow_partially_signed_batches=allow_partially_signed_batches,
        )
    )
