"""The ASGI 3 app of Lago's webhook receiver: `_http`'s shell, plus the factory."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from lago_segment._http import ASGIEndpointApp
from lago_segment.lago_webhooks._receiver import (
    DEFAULT_MAX_BODY_BYTES,
    Endpoint,
    LagoWebhookResponse,
)
from lago_segment.lago_webhooks._rejected import RejectedCallback
from lago_segment.lago_webhooks._signatures import LagoPublicKey

if TYPE_CHECKING:
    from lago_segment.mapping import MappingSpec

__all__ = ["LagoWebhookASGIApp", "asgi_app"]


class LagoWebhookASGIApp(ASGIEndpointApp[Endpoint]):
    """An ASGI 3 application receiving Lago's webhooks; build it with :func:`asgi_app`."""

    __slots__ = ()

    _serves = "the Lago webhook app"

    def close(self) -> None:
        """Close the dead-letter file, if one was asked for (done at lifespan shutdown)."""
        self.endpoint.close()

    async def _handle(self, body: bytes, headers: Mapping[str, str]) -> LagoWebhookResponse:
        """The endpoint's answer, computed in a worker thread (the public key fetched first)."""
        endpoint = self.endpoint
        if endpoint.needs_key:
            await _load_key(endpoint)
        # Callbacks may write files: off the event loop, like the key fetch.
        return await asyncio.to_thread(endpoint.handle, body, headers)

    async def _startup(self) -> None:
        """Fetch the public key now, so the first webhook is answered fast."""
        if self.endpoint.needs_key:
            await _load_key(self.endpoint)

    async def _shutdown(self) -> None:
        """Close the dead-letter file."""
        self.close()


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
    elsewhere); only POST is accepted (405, with ``Allow: POST``, otherwise).
    A WebSocket connection is closed (403). Callbacks run in a worker thread,
    not on the event loop. See :func:`handle` for the answers.
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
