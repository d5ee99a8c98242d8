"""The no-I/O core of the webhook receiver: bytes and headers in, a response out."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import attrs

from lago_segment._forwarding import ErrorCallback, SupportsForward, error_reporter
from lago_segment.errors import (
    DropEvent,
    EventNotSupported,
    HandlerError,
    InvalidEventPayload,
    MappingError,
    RetryError,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Endpoint", "WebhookResponse", "handle", "sign"]

DEFAULT_MAX_BODY_BYTES = 512 * 1024
"""Segment's own limit for a batch request (500 KB), with a little room."""


def _supported_types() -> frozenset[str]:
    from lago_segment.events import Alias, Delete, Group, Identify, Page, Screen, Track

    return frozenset(c.type for c in (Track, Identify, Group, Page, Screen, Alias, Delete))


@attrs.frozen(slots=True)
class WebhookResponse:
    """What to answer Segment: a status code, a short JSON body, and what happened.

    Every event in the request lands in exactly one counter (``forwarded``,
    ``unsupported``, ``rejected``, ``dropped``), except after a transient
    failure (status 500): the events after it were not tried, Segment retries
    the whole request.
    """

    status: int
    """The HTTP status code."""
    body: bytes
    """The JSON body, e.g. ``{"status": "ok", "received": 1, "forwarded": 1, ...}``."""
    received: int = 0
    """Events in the request."""
    forwarded: int = 0
    """Events the forwarder took."""
    unsupported: int = 0
    """Events of a type we do not handle (answered 200 so Segment does not retry)."""
    rejected: int = 0
    """Invalid events, or events the mapping or a handler refused: reported, not retried."""
    dropped: int = 0
    """Events a handler discarded on purpose (``DropEvent``)."""

    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=attrs.Factory(
            lambda self: (
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(self.body))),
            ),
            takes_self=True,
        )
    )
    """The response headers: ``Content-Type`` and ``Content-Length`` (and ``Allow`` for 405)."""

    def json(self) -> dict[str, Any]:
        """The body, decoded."""
        result: dict[str, Any] = json.loads(self.body)
        return result


def _respond(
    status: int,
    error: str | None = None,
    *,
    allow: str | None = None,
    counts: Mapping[str, int] | None = None,
) -> WebhookResponse:
    data: dict[str, Any] = {"status": "ok" if status < 400 else "error"}
    if error is not None:
        data["error"] = error
    data.update(counts or {})
    body = json.dumps(data, separators=(",", ":")).encode()
    headers: tuple[tuple[str, str], ...] = (
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
    )
    if allow is not None:
        headers += (("Allow", allow),)
    return WebhookResponse(status, body, headers=headers, **(counts or {}))


def _mask(secret: str | None) -> str:
    return "None" if secret is None else "'***'"


@attrs.frozen(slots=True)
class Endpoint:
    """What the ASGI and WSGI adapters share: the configuration and the checks made
    before reading a body. The secret is masked in the repr."""

    forwarder: SupportsForward
    secret: str | None = attrs.field(default=None, repr=_mask)
    path: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    on_error: ErrorCallback | None = None

    def precheck(
        self, method: str, path: str, content_length: str | None
    ) -> WebhookResponse | None:
        """The answer due before reading the body (wrong path or method, too long), or None."""
        if self.path is not None and path != self.path:
            return _respond(404, "not found")
        if method != "POST":
            return _respond(405, "only POST", allow="POST")
        if content_length is not None:
            try:
                length = int(content_length)
            except ValueError:
                return _respond(400, "bad Content-Length")
            if length > self.max_body_bytes:
                return self.too_large()
        return None

    def too_large(self) -> WebhookResponse:
        """The 413 answer."""
        return _respond(413, f"body larger than {self.max_body_bytes} bytes")

    def handle(self, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """:func:`handle` with this endpoint's configuration."""
        return handle(
            body,
            headers,
            self.forwarder,
            secret=self.secret,
            max_body_bytes=self.max_body_bytes,
            on_error=self.on_error,
        )


def sign(body: bytes, secret: str) -> str:
    """The ``X-Signature`` Segment sends with ``body``: hex HMAC-SHA1 with the shared secret.

    For a JSON array (a batched delivery) Segment signs only the first element,
    as JavaScript's ``JSON.stringify`` writes it; this function does the same,
    so it can sign test requests exactly like Segment:

    >>> sign(b'{"type":"track"}', "s3cret")
    'dcd564fde939d5ea54546f251e3465142f6433dc'
    """
    if body.lstrip()[:1] == b"[":
        items = json.loads(body)
        if items:
            body = _stringify(items[0])
    return _hmac(secret, body)


def _hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha1).hexdigest()


def _stringify(value: object) -> bytes:
    # JavaScript's JSON.stringify: no spaces, non-ASCII written as is, key order kept.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _first_element_text(body: bytes) -> bytes | None:
    """The first array element exactly as it appears in the body (None if there is none)."""
    try:
        text = body.decode()
    except ValueError:
        return None
    start = text.index("[") + 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    if text[start : start + 1] in ("", "]"):
        return None
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end].encode()


def _signature_ok(body: bytes, parsed: object, given: str, secret: str) -> bool:
    candidates = [body]
    if isinstance(parsed, list) and parsed:
        # Python and JavaScript may write a number differently (1e-07 / 1e-7),
        # so the element's own text from the body is a candidate too.
        candidates += [_stringify(parsed[0]), _first_element_text(body) or b""]
    given_bytes = given.strip().lower().encode("ascii", "replace")
    return any(
        hmac.compare_digest(_hmac(secret, data).encode(), given_bytes) for data in candidates
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def handle(
    body: bytes,
    headers: Mapping[str, str],
    forwarder: SupportsForward,
    *,
    secret: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_error: ErrorCallback | None = None,
) -> WebhookResponse:
    """Verify and forward one request from Segment's Webhooks destination.

    ``body`` is one event (a JSON object) or a batch (a JSON array of events);
    ``headers`` are matched case-insensitively. Each event is checked, parsed
    and given to ``forwarder.forward``. The answer follows what makes Segment
    do the right thing:

    - 413 when the body is longer than ``max_body_bytes``;
    - 401 when ``secret`` is set and ``X-Signature`` is missing or wrong;
    - 400 when the body is not a JSON object or array;
    - 200 for events of a type we do not handle (counted as ``unsupported``),
      and for events that are invalid or that the mapping or a handler refused
      (counted as ``rejected``, reported to ``on_error``, else the forwarder's
      ``report``, else the log): retrying would fail again;
    - 500 when the forwarder cannot take an event right now (queue full,
      closed, a handler's ``RetryError``, anything unexpected): Segment
      retries the request, and stable transaction ids make the retry safe for
      the events already forwarded.

    For a batch, Segment signs only the first element: see ``docs/webhooks.md``.
    The secret never appears in the response, logs or errors.

    >>> class Recorder:
    ...     def __init__(self): self.events = []
    ...     def forward(self, event): self.events.append(event)
    >>> body = b'{"type":"track","event":"API Call","userId":"u1"}'
    >>> response = handle(body, {"x-signature": sign(body, "s3cret")}, Recorder(), secret="s3cret")
    >>> response.status, response.forwarded
    (200, 1)
    """
    if len(body) > max_body_bytes:
        return Endpoint(forwarder, max_body_bytes=max_body_bytes).too_large()
    given = _header(headers, "X-Signature") if secret is not None else None
    if secret is not None and not given:
        return _respond(401, "missing X-Signature")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = _MALFORMED
    if secret is not None and not (given and _signature_ok(body, parsed, given, secret)):
        return _respond(401, "bad X-Signature")
    if isinstance(parsed, dict):
        items: list[Any] = [parsed]
    elif isinstance(parsed, list):
        items = parsed
    else:
        return _respond(400, "the body is not a JSON object or array")
    return _forward_all(items, forwarder, error_reporter(forwarder, on_error))


_MALFORMED = object()


def _forward_all(
    items: list[Any], forwarder: SupportsForward, report: ErrorCallback
) -> WebhookResponse:
    from lago_segment.events import parse_event

    supported = _supported_types()
    counts = dict.fromkeys(("received", "forwarded", "unsupported", "rejected", "dropped"), 0)
    counts["received"] = len(items)
    for index, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        # parse_event dispatches case-insensitively ("Track" is a track).
        if isinstance(kind, str) and kind.lower() not in supported:
            counts["unsupported"] += 1
            continue
        try:
            forwarder.forward(parse_event(item))
        except Exception as error:
            outcome = _outcome(error)
            if outcome != "dropped":
                if isinstance(error, InvalidEventPayload) and len(items) > 1:
                    error = error.located(index=index)
                report(error, item if isinstance(item, dict) else {"value": item})
            if outcome == "transient":
                return _respond(500, "temporarily unable to take events", counts=counts)
            counts[outcome] += 1
        else:
            counts["forwarded"] += 1
    return _respond(200, counts=counts)


def _outcome(error: Exception) -> str:
    """Which counter a forwarding error goes to; "transient" means answer 500."""
    if isinstance(error, DropEvent):
        return "dropped"
    if isinstance(error, EventNotSupported):
        return "unsupported"
    # RetryError is the handler asking for a retry: Segment's retry is the one we get.
    if isinstance(error, (InvalidEventPayload, MappingError, HandlerError)) and not isinstance(
        error, RetryError
    ):
        return "rejected"
    return "transient"
