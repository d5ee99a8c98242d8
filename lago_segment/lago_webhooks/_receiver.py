"""The core of the Lago webhook receiver: bytes and headers in, a response out.

:func:`handle` verifies a webhook (with :mod:`._signatures`), skips one
already handled (:class:`SeenWebhooks`), and hands each record of an
``events.errors`` (:mod:`._rejected`) to the callbacks; :class:`Endpoint` is
that configuration as the ASGI and WSGI apps hold it. It opens no socket
itself, but what it is given may do I/O: a :class:`LagoPublicKey` not yet
loaded fetches Lago's key on first use (the ASGI app fetches it at start-up
and before a jwt webhook, off the event loop), and the callbacks (a
:class:`DeadLetterFile`, for one) write where they write.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from lago_segment._http import JSON_HEADERS, JSONEndpoint, decoded_body, header, json_body, mask
from lago_segment._reporting import log_fields
from lago_segment.errors import ConfigurationError, LagoSegmentError
from lago_segment.lago_webhooks._dead_letter import DeadLetterFile
from lago_segment.lago_webhooks._rejected import RejectedCallback, RejectedEvent, rejected_events
from lago_segment.lago_webhooks._signatures import LagoPublicKey, hmac_ok, jwt_ok

if TYPE_CHECKING:
    from lago_segment.mapping import MappingSpec

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Endpoint",
    "LagoWebhookResponse",
    "SeenWebhooks",
    "handle",
]

logger = logging.getLogger("lago_segment")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""An hour of rejected transaction ids can be long: 16 MiB by default."""


@attrs.frozen(slots=True)
class LagoWebhookResponse:
    """What to answer Lago, and what the webhook held."""

    status: int
    """The HTTP status code: 200 when done (Lago stops), anything else makes it retry."""
    body: bytes
    """A short JSON body, e.g. ``{"status":"ok","webhook_type":"events.errors","rejected":2}``."""
    webhook_type: str | None = None
    """The webhook's ``webhook_type``, once verified."""
    rejected: tuple[RejectedEvent, ...] = ()
    """The records given to the callback."""
    duplicate: bool = False
    """True when this ``X-Lago-Unique-Key`` was handled already (nothing reported again)."""
    headers: tuple[tuple[str, str], ...] = attrs.field(default=JSON_HEADERS)
    """The response headers."""

    json = decoded_body


def _respond(status: int, error: str | None = None, **fields: Any) -> LagoWebhookResponse:
    shown = {k: v for k, v in fields.items() if k != "rejected"}
    if "rejected" in fields:
        shown["rejected"] = len(fields["rejected"])
    return LagoWebhookResponse(status, json_body(status, error, shown), **fields)


class SeenWebhooks:
    """The ``X-Lago-Unique-Key`` of recent webhooks, so a retried delivery is reported once.

    Lago sends a webhook up to 3 times with the same key when it gets no 2xx
    in time. A key is claimed while its webhook is handled, remembered once
    done, and released if handling failed (so Lago's retry is handled). Keeps
    the last ``capacity`` keys, in memory: several processes behind one URL
    each keep their own (see ``docs/production.md``). Thread-safe.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ConfigurationError("capacity", f"must be at least 1, not {capacity}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, bool] = OrderedDict()  # key -> done

    def __repr__(self) -> str:
        return f"SeenWebhooks({len(self._keys)} of {self.capacity})"

    def claim(self, key: str) -> Literal["new", "busy", "done"]:
        """``new`` (now claimed), ``busy`` (being handled right now) or ``done``."""
        with self._lock:
            done = self._keys.get(key)
            if done is not None:
                return "done" if done else "busy"
            self._keys[key] = False
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)
            return "new"

    def finish(self, key: str, *, ok: bool) -> None:
        """Remember ``key`` as done (``ok``), or forget it so a retry is handled."""
        with self._lock:
            if ok:
                self._keys[key] = True
            else:
                self._keys.pop(key, None)


def _verified(
    body: bytes,
    headers: Mapping[str, str],
    hmac_key: str | None,
    public_key: LagoPublicKey | None,
    issuer: str | None,
) -> LagoWebhookResponse | None:
    """None when the signature is right, else the 401 (or 503: key unavailable) to answer."""
    signature = header(headers, "X-Lago-Signature")
    algorithm = (header(headers, "X-Lago-Signature-Algorithm") or "").strip().lower()
    if not signature:
        return _respond(401, "missing X-Lago-Signature")
    if algorithm == "hmac" and hmac_key is not None:
        if hmac_ok(signature, body, hmac_key):
            return None
    elif algorithm == "jwt" and public_key is not None:
        try:
            key = public_key.get()
        except LagoSegmentError as exc:
            logger.warning("lago_segment: cannot load Lago's webhook public key: %s", exc)
            return _respond(503, "Lago's public key is not available yet")
        if jwt_ok(signature, body, key, issuer):
            return None
    else:
        return _respond(401, f"signature algorithm {algorithm or 'missing'!r} is not accepted")
    return _respond(401, "bad X-Lago-Signature")


def handle(
    body: bytes,
    headers: Mapping[str, str],
    on_rejected: RejectedCallback | Iterable[RejectedCallback],
    *,
    hmac_key: str | None = None,
    public_key: LagoPublicKey | str | bytes | None = None,
    issuer: str | None = None,
    spec: MappingSpec | None = None,
    seen: SeenWebhooks | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> LagoWebhookResponse:
    """Verify one webhook from Lago and report each event an ``events.errors`` rejects.

    Give ``hmac_key`` (the organization's HMAC Signature Token) for endpoints
    in ``hmac`` mode, ``public_key`` for ``jwt`` mode (a loaded
    :class:`LagoPublicKey` keeps this function free of I/O), or both. A
    webhook signed in a mode not configured, unsigned, or wrongly signed gets
    401; ``issuer``, when given, must equal the JWT's ``iss`` (your
    ``LAGO_API_URL``). Then:

    - ``events.errors``: every transaction id becomes a :class:`RejectedEvent`
      (traced back to its messageId and rule with :func:`trace_transaction_id`
      and ``spec``) handed to each ``on_rejected`` callback; 200.
    - other webhook types: 200, nothing reported (``webhook_type`` says which).
    - a webhook whose ``X-Lago-Unique-Key`` is in ``seen`` already: 200,
      ``duplicate`` True, nothing reported again; one being handled by another
      thread: 503, so Lago tries again later.
    - a callback that raises: 500, and the key is forgotten, so Lago's retry
      is handled (callbacks should therefore tolerate a record seen twice).

    >>> from lago_segment.lago_webhooks import sign_hmac
    >>> body = b'{"webhook_type":"events.errors","object_type":"events_errors",' \\
    ...        b'"events_errors":{"invalid_code":["m1:api-calls"]}}'
    >>> headers = {"X-Lago-Signature": sign_hmac(body, "k"), "X-Lago-Signature-Algorithm": "hmac"}
    >>> handle(body, headers, print, hmac_key="k").status  # doctest: +NORMALIZE_WHITESPACE
    RejectedEvent(reason='invalid_code', transaction_id='m1:api-calls', message_id='m1',
                  rule='api-calls', webhook_id=None, organization_id=None)
    200
    """
    if len(body) > max_body_bytes:
        return _respond(413, f"body larger than {max_body_bytes} bytes")
    if hmac_key is None and public_key is None:
        raise ConfigurationError("hmac_key", "give hmac_key or public_key: unsigned is refused")
    key = (
        public_key
        if public_key is None or isinstance(public_key, LagoPublicKey)
        else LagoPublicKey(public_key)
    )
    refused = _verified(body, headers, hmac_key, key, issuer)
    if refused is not None:
        return refused
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return _respond(400, "the body is not a JSON object")
    kind = data.get("webhook_type")
    kind = kind if isinstance(kind, str) else None
    unique = header(headers, "X-Lago-Unique-Key")
    if unique and seen is not None:
        state = seen.claim(unique)
        if state == "done":
            return _respond(200, webhook_type=kind, duplicate=True)
        if state == "busy":
            return _respond(503, "this webhook is being handled", webhook_type=kind)
    callbacks = (on_rejected,) if callable(on_rejected) else tuple(on_rejected)
    try:
        records = rejected_events(data, unique, spec) if kind == "events.errors" else ()
        for record in records:
            logger.info(
                "lago_segment: Lago rejected transaction_id=%s (%s), messageId=%s rule=%s",
                record.transaction_id,
                record.reason,
                record.message_id,
                record.rule,
                extra=log_fields(record.message_id, record.rule, record.transaction_id),
            )
            for callback in callbacks:
                callback(record)
    except Exception:
        logger.exception("lago_segment: a Lago webhook callback raised; Lago will retry")
        if unique and seen is not None:
            seen.finish(unique, ok=False)
        return _respond(500, "the webhook could not be handled", webhook_type=kind)
    if unique and seen is not None:
        seen.finish(unique, ok=True)
    return _respond(200, webhook_type=kind, rejected=records)


@attrs.frozen(slots=True)
class Endpoint(JSONEndpoint[LagoWebhookResponse]):
    """What the ASGI and WSGI adapters share: the configuration, and :func:`handle`
    with it (the checks made before reading a body are :class:`JSONEndpoint`'s).
    Secrets are masked in the repr."""

    on_rejected: tuple[RejectedCallback, ...]
    hmac_key: str | None = attrs.field(default=None, repr=mask)
    public_key: LagoPublicKey | None = None
    issuer: str | None = None
    spec: MappingSpec | None = attrs.field(default=None, repr=False)
    seen: SeenWebhooks | None = attrs.field(factory=SeenWebhooks)
    path: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def create(
        cls,
        on_rejected: RejectedCallback | Iterable[RejectedCallback] | None,
        *,
        hmac_key: str | None,
        public_key: LagoPublicKey | str | bytes | None,
        issuer: str | None,
        spec: MappingSpec | None,
        dead_letter: str | os.PathLike[str] | None,
        path: str | None,
        max_body_bytes: int,
    ) -> Endpoint:
        """Check the options and build the endpoint (the dead-letter file is opened here)."""
        if hmac_key is None and public_key is None:
            raise ConfigurationError(
                "hmac_key", "give hmac_key or public_key: unsigned is refused"
            )
        if hmac_key is not None and not hmac_key:
            raise ConfigurationError("hmac_key", "is empty")
        callbacks: list[RejectedCallback] = []
        if on_rejected is not None:
            callbacks += [on_rejected] if callable(on_rejected) else list(on_rejected)
        if dead_letter is not None:
            callbacks.append(DeadLetterFile(dead_letter))
        if not callbacks:
            raise ConfigurationError("on_rejected", "give on_rejected or dead_letter")
        key = (
            public_key
            if public_key is None or isinstance(public_key, LagoPublicKey)
            else LagoPublicKey(public_key)
        )
        return cls(
            tuple(callbacks), hmac_key, key, issuer, spec, SeenWebhooks(), path, max_body_bytes
        )

    @property
    def needs_key(self) -> bool:
        """True while a jwt public key still has to be fetched (blocking I/O)."""
        return self.public_key is not None and not self.public_key.loaded

    def refuse(self, status: int, error: str) -> LagoWebhookResponse:
        """The error answer with this ``status`` (``precheck`` adds a 405's ``Allow``)."""
        return _respond(status, error)

    def close(self) -> None:
        """Close the dead-letter file, if one was asked for."""
        for callback in self.on_rejected:
            if isinstance(callback, DeadLetterFile):
                callback.close()

    def handle(self, body: bytes, headers: Mapping[str, str]) -> LagoWebhookResponse:
        """:func:`handle` with this endpoint's configuration."""
        return handle(
            body,
            headers,
            self.on_rejected,
            hmac_key=self.hmac_key,
            public_key=self.public_key,
            issuer=self.issuer,
            spec=self.spec,
            seen=self.seen,
            max_body_bytes=self.max_body_bytes,
        )
