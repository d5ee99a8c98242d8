"""Receive Segment's Webhooks destination in your own app, and forward what arrives.

The core, :func:`handle`, takes the body bytes and headers of a request and
returns a :class:`WebhookResponse` (status code, short JSON body, counters);
it does no I/O, so it fits any framework. :func:`asgi_app` and
:func:`wsgi_app` wrap it as standalone apps with no framework dependency.
Recipes for FastAPI, Starlette, Flask and Django are in ``docs/webhooks.md``.

Example::

    from lago_segment.webhook import asgi_app

    app = asgi_app(forwarder, secret=os.environ["SEGMENT_WEBHOOK_SECRET"])
"""

from __future__ import annotations

from lago_segment._types import ErrorCallback, SupportsForward
from lago_segment.webhook._asgi import ASGIApp, asgi_app
from lago_segment.webhook._receiver import DEFAULT_MAX_BODY_BYTES, WebhookResponse, handle, sign
from lago_segment.webhook._wsgi import WSGIApp, wsgi_app

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ASGIApp",
    "ErrorCallback",
    "SupportsForward",
    "WSGIApp",
    "WebhookResponse",
    "asgi_app",
    "handle",
    "sign",
    "wsgi_app",
]
