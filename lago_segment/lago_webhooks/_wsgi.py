"""The WSGI (PEP 3333) app of Lago's webhook receiver: `_http`'s shell, plus the factory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lago_segment._http import WSGIEndpointApp
from lago_segment.lago_webhooks._receiver import DEFAULT_MAX_BODY_BYTES, Endpoint
from lago_segment.lago_webhooks._rejected import RejectedCallback
from lago_segment.lago_webhooks._signatures import LagoPublicKey

if TYPE_CHECKING:
    from lago_segment.mapping import MappingSpec

__all__ = ["LagoWebhookWSGIApp", "wsgi_app"]


class LagoWebhookWSGIApp(WSGIEndpointApp[Endpoint]):
    """A WSGI application receiving Lago's webhooks; build it with :func:`wsgi_app`."""

    __slots__ = ()

    def close(self) -> None:
        """Close the dead-letter file, if one was asked for (at the server's shutdown)."""
        self.endpoint.close()


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
