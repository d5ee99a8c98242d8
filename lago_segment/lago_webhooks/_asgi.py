"""The ASGI 3 adapter of the Lago webhook receiver: no framework, just the protocol."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lago_segment._http import Receive, Scope, Send, read_asgi_body, send_asgi
from lago_segment.lago_webhooks._core import (
    DEFAULT_MAX_BODY_BYTES,
    Endpoint,
)
from lago_segment.lago_webhooks._rejected import RejectedCallback
from lago_segment.lago_webhooks._signatures import LagoPublicKey

if TYPE_CHECKING:
    from lago_segment.mapping import MappingSpec

__all__ = ["LagoWebhookASGIApp", "asgi_app"]


class LagoWebhookASGIApp:
    """An ASGI 3 application receiving Lago's webhooks; build it with :func:`asgi_app`."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        """The configuration (its repr masks the HMAC key)."""

    def __repr__(self) -> str:
        return f"LagoWebhookASGIApp({self.endpoint!r})"

    def close(self) -> None:
        """Close the dead-letter file, if one was asked for (done at lifespan shutdown)."""
        self.endpoint.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"the Lago webhook app serves HTTP, not {scope['type']!r}")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        endpoint = self.endpoint
        response = endpoint.precheck(scope["method"], scope["path"], headers.get("content-length"))
        if response is None:
            body = await read_asgi_body(receive, endpoint.max_body_bytes)
            if body is None:  # the client went away
                return
            if body is False:
                response = endpoint.too_large()
            else:
                assert isinstance(body, bytes)
                if endpoint.needs_key:
                    await _load_key(endpoint)
                # Callbacks may write files: off the event loop, like the key fetch.
                response = await asyncio.to_thread(endpoint.handle, body, headers)
        await send_asgi(send, response)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Fetch the public key now, so the first webhook is answered fast.
                if self.endpoint.needs_key:
                    await _load_key(self.endpoint)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _load_key(endpoint: Endpoint) -> None:
    from lago_segment.errors import LagoSegmentError

    assert endpoint.public_key is not None
    # On failure handle() answers 503 and logs why; Lago retries.
    with contextlib.suppress(LagoSegmentError):
        await asyncio.to_thread(endpoint.public_key.get)


def asgi_app(
    on_rejected: RejectedCallback | Iterable[RejectedCallback] | None = None,
    *,
    hmac_key: str | None = None,
    public_key: LagoPublicKey | str | bytes | None = None,
    issuer: str | None = None,
    spec: MappingSpec | None = None,
    dead_letter: str | os.PathLike[str] | None = None,
    path: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> LagoWebhookASGIApp:
    """An ASGI 3 app that receives Lago's webhooks and reports rejected events.

    Give ``hmac_key`` and/or ``public_key`` (a :class:`LagoPublicKey`, e.g.
    ``LagoPublicKey.from_lago(api_key)``, which is fetched at the app's
    start-up); ``on_rejected`` callbacks and/or ``dead_letter`` (a JSON-lines
    file, see :class:`DeadLetterFile`); ``spec`` to trace transaction ids to
    their rules. ``path``, when given, is the only path answered (404
    elsewhere). Callbacks run in a worker thread, not on the event loop. See
    :func:`handle` for the answers.
    """
    return LagoWebhookASGIApp(
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
