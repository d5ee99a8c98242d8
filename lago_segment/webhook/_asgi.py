"""The ASGI 3 adapter: no framework, just the protocol."""

from __future__ import annotations

from lago_segment._http import Receive, Scope, Send, read_asgi_body, send_asgi
from lago_segment._types import ErrorCallback, SupportsForward
from lago_segment.webhook._core import DEFAULT_MAX_BODY_BYTES, Endpoint

__all__ = ["ASGIApp", "asgi_app"]


class ASGIApp:
    """An ASGI 3 application receiving Segment's webhooks; build it with :func:`asgi_app`."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        """The configuration (its repr masks the secret)."""

    def __repr__(self) -> str:
        return f"ASGIApp({self.endpoint!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await _refuse_websocket(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"the Segment webhook app serves HTTP, not {scope['type']!r}")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        response = self.endpoint.precheck(
            scope["method"], scope["path"], headers.get("content-length")
        )
        if response is None:
            body = await read_asgi_body(receive, self.endpoint.max_body_bytes)
            if body is None:  # the client went away
                return
            response = (
                self.endpoint.handle(body, headers)
                if isinstance(body, bytes)
                else self.endpoint.too_large()
            )
        await send_asgi(send, response)


async def _refuse_websocket(receive: Receive, send: Send) -> None:
    # Answered, not raised: a stray WebSocket client is no reason for a traceback.
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


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
