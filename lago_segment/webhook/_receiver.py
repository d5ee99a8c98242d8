"""The no-I/O core of the webhook receiver: bytes and headers in, a response out."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from lago_segment._http import (
    JSON_HEADERS,
    JSONEndpoint,
    decoded_body,
    header,
    json_body,
    json_headers_for,
    mask,
)
from lago_segment._reporting import error_reporter
from lago_segment._types import SEGMENT_CALL_TYPES, ErrorCallback, SupportsForward
from lago_segment.errors import (
    ConfigurationError,
    DropEvent,
    EventNotSupported,
    HandlerError,
    InvalidEventPayload,
    MappingError,
    RetryError,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Endpoint", "WebhookResponse", "handle", "sign"]

logger = logging.getLogger("lago_segment")

DEFAULT_MAX_BODY_BYTES = 512 * 1024
"""Segment's own limit for a batch request (500 KB), with a little room."""


_SUPPORTED_TYPES = frozenset(SEGMENT_CALL_TYPES)


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

    headers: tuple[tuple[str, str], ...] = attrs.field(default=JSON_HEADERS)
    """The response headers: ``Content-Type`` and ``Content-Length`` (and ``Allow`` for 405)."""

    json = decoded_body


def _respond(
    status: int,
    error: str | None = None,
    *,
    counts: Mapping[str, int] | None = None,
) -> WebhookResponse:
    counts = counts or {}
    body = json_body(status, error, counts)
    headers = json_headers_for(body)
    # Given, not left to the default: **counts could name a field for all mypy knows.
    return WebhookResponse(status, body, headers=headers, **counts)


def _check_secret(secret: object) -> None:
    """Refuse a secret that would authenticate nothing (the message never shows it)."""
    if secret is None:
        return
    if not isinstance(secret, str):
        raise ConfigurationError(
            "secret", f"must be a string (or None), not {type(secret).__name__}"
        )
    if not secret.strip():
        # An empty or blank secret is one anyone can guess: every signature checks.
        raise ConfigurationError(
            "secret", "is empty: pass Segment's shared secret, or None to skip the check"
        )
    try:
        secret.encode()
    except UnicodeEncodeError:  # e.g. undecodable bytes in an environment variable
        raise ConfigurationError("secret", "is not valid UTF-8 text") from None


def _validate_secret(_instance: object, _attribute: object, secret: str | None) -> None:
    _check_secret(secret)


@attrs.frozen(slots=True)
class Endpoint(JSONEndpoint[WebhookResponse]):
    """What the ASGI and WSGI adapters share: the configuration, and :func:`handle`
    with it (the checks made before reading a body are :class:`JSONEndpoint`'s).
    The secret is masked in the repr."""

    forwarder: SupportsForward
    secret: str | None = attrs.field(default=None, repr=mask, validator=_validate_secret)
    path: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    on_error: ErrorCallback | None = None
    allow_partially_signed_batches: bool = False

    def refuse(self, status: int, error: str) -> WebhookResponse:
        """The error answer with this ``status`` (``precheck`` adds a 405's ``Allow``)."""
        return _respond(status, error)

    def handle(self, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        """:func:`handle` with this endpoint's configuration."""
        return handle(
            body,
            headers,
            self.forwarder,
            secret=self.secret,
            max_body_bytes=self.max_body_bytes,
            on_error=self.on_error,
            allow_partially_signed_batches=self.allow_partially_signed_batches,
        )


def sign(body: bytes | bytearray | memoryview | str, secret: str) -> str:
    """The ``X-Signature`` Segment sends with ``body``: hex HMAC-SHA1 with the shared secret.

    For a JSON array (a batched delivery) Segment signs only the first element,
    as JavaScript's ``JSON.stringify`` writes it; this function does the same,
    so it can sign test requests exactly like Segment (a body that is not
    valid JSON is signed whole):

    >>> sign(b'{"type":"track"}', "s3cret")
    'dcd564fde939d5ea54546f251e3465142f6433dc'

    Such a batch of two or more events is refused by :func:`handle` unless
    ``allow_partially_signed_batches=True``: see ``docs/webhooks.md``.
    """
    _check_secret(secret)
    data = _as_bytes(body)
    _, parsed = _parse(data)
    if isinstance(parsed, list) and parsed:
        first = next(_first_element_forms(None, parsed[0]), None)
        if first is not None:
            data = first
    return _hmac(secret, data)


def _as_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        # surrogatepass never fails; a lone surrogate then makes invalid UTF-8 (a 400).
        return body.encode("utf-8", "surrogatepass")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"the request body must be bytes or str, not {type(body).__name__}")


def _hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha1).hexdigest()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _stringify(value: object) -> bytes:
    # JavaScript's JSON.stringify: no spaces, non-ASCII written as is, key order
    # kept, and (since ES2019) a lone surrogate written as a lowercase \udxxx
    # escape. json.loads joins escaped pairs, so any surrogate left is lone.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def _parse(body: bytes) -> tuple[str | None, object]:
    """The body as text and as JSON; ``_MALFORMED`` when it is not UTF-8 JSON.

    Decoded here rather than by ``json.loads``, which would also take UTF-16
    and UTF-32: Segment sends UTF-8.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, _MALFORMED
    try:
        return text, json.loads(text)
    except (ValueError, RecursionError):
        return text, _MALFORMED


def _first_element_text(text: str) -> bytes | None:
    """The first array element exactly as it appears in ``text`` (None if there is none)."""
    start = text.index("[") + 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    if text[start : start + 1] in ("", "]"):
        return None
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end].encode()


def _first_element_forms(text: str | None, first: object) -> Iterator[bytes]:
    """The texts Segment may have signed for a batch's first element.

    Python and JavaScript may write a number differently (1e-07 / 1e-7), so
    the element's own text in the body is a candidate too. A form that cannot
    be built (nesting too deep for the stack, ...) is skipped: the signature
    check never raises.
    """
    builders: list[Callable[[], bytes | None]] = [lambda: _stringify(first)]
    if text is not None:
        builders.append(lambda: _first_element_text(text))
    for build in builders:
        try:
            form = build()
        except (ValueError, RecursionError):  # UnicodeError is a ValueError
            continue
        if form is not None:
            yield form


_ALL = "all"
_FIRST = "first"


def _coverage(
    body: bytes, text: str | None, parsed: object, given: str, secret: str
) -> str | None:
    """What ``given`` signs: the whole body (``_ALL``), only the first element of a
    batch of two or more (``_FIRST``), or nothing we received (None)."""
    given_bytes = given.strip().lower().encode("ascii", "replace")

    def matches(data: bytes) -> bool:
        return hmac.compare_digest(_hmac(secret, data).encode(), given_bytes)

    if matches(body):
        return _ALL
    if (
        isinstance(parsed, list)
        and parsed
        and any(matches(form) for form in _first_element_forms(text, parsed[0]))
    ):
        # A batch of one is covered whole: its only event is the signed one.
        return _ALL if len(parsed) == 1 else _FIRST
    return None


def handle(
    body: bytes | bytearray | memoryview | str,
    headers: Mapping[str, str],
    forwarder: SupportsForward,
    *,
    secret: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    on_error: ErrorCallback | None = None,
    allow_partially_signed_batches: bool = False,
) -> WebhookResponse:
    """Verify and forward one request from Segment's Webhooks destination.

    ``body`` is one event (a JSON object) or a batch (a JSON array of events),
    as the raw bytes received (or as text, encoded back to UTF-8); ``headers``
    are matched case-insensitively. Each event is checked, parsed and given to
    ``forwarder.forward``. The answer follows what makes Segment do the right
    thing:

    - 413 when the body is longer than ``max_body_bytes``;
    - 401 when ``secret`` is set and ``X-Signature`` is missing or wrong;
    - 403 when ``secret`` is set and the signature covers only the first
      event of a batch (Segment signs batches that way): nothing of it is
      forwarded, unless ``allow_partially_signed_batches=True``;
    - 400 when the body is not a UTF-8 JSON object or array;
    - 200 for events of a type we do not handle (counted as ``unsupported``),
      and for events that are invalid or that the mapping or a handler refused
      (counted as ``rejected``, reported to ``on_error``, else the forwarder's
      ``report``, else the log): retrying would fail again;
    - 500 when the forwarder cannot take an event right now (queue full,
      closed, a handler's ``RetryError``, anything unexpected): Segment
      retries the request, and stable transaction ids make the retry safe for
      the events already forwarded.

    An event is forwarded only if the signature covers it: the whole body, or
    a batch's only element. With ``allow_partially_signed_batches=True`` a
    batch whose signature covers only its first element is forwarded whole:
    anyone who has seen one signed request can then append events to it (see
    ``docs/webhooks.md``). Whatever the body, the answer is a status code,
    never an exception. Raises :class:`~lago_segment.errors.ConfigurationError`
    for an empty ``secret``. The secret never appears in the response, logs or
    errors.

    >>> class Recorder:
    ...     def __init__(self): self.events = []
    ...     def forward(self, event): self.events.append(event)
    >>> body = b'{"type":"track","event":"API Call","userId":"u1"}'
    >>> response = handle(body, {"x-signature": sign(body, "s3cret")}, Recorder(), secret="s3cret")
    >>> response.status, response.forwarded
    (200, 1)
    """
    _check_secret(secret)
    data = _as_bytes(body)
    if len(data) > max_body_bytes:
        return Endpoint(forwarder, max_body_bytes=max_body_bytes).too_large()
    given = header(headers, "X-Signature") if secret is not None else None
    if secret is not None and not given:
        return _respond(401, "missing X-Signature")
    text, parsed = _parse(data)
    if secret is not None:
        covered = _coverage(data, text, parsed, given or "", secret)
        if covered is None:
            return _respond(401, "bad X-Signature")
        if covered == _FIRST and not allow_partially_signed_batches:
            logger.warning(
                "refused a batch of %d events whose X-Signature covers only the first; "
                "disable batching in Segment's Webhooks destination, or pass "
                "allow_partially_signed_batches=True (see docs/webhooks.md)",
                len(parsed) if isinstance(parsed, list) else 0,
            )
            return _respond(403, "X-Signature covers only the first event of this batch")
    if isinstance(parsed, dict):
        items: list[Any] = [parsed]
    elif isinstance(parsed, list):
        items = parsed
    else:
        return _respond(400, "the body is not a UTF-8 JSON object or array")
    return _forward_all(items, forwarder, error_reporter(forwarder, on_error))


_MALFORMED = object()


def _forward_all(
    items: list[Any], forwarder: SupportsForward, report: ErrorCallback
) -> WebhookResponse:
    supported = _SUPPORTED_TYPES
    counts = dict.fromkeys(("received", "forwarded", "unsupported", "rejected", "dropped"), 0)
    counts["received"] = len(items)
    for index, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        # parse_event dispatches case-insensitively ("Track" is a track).
        if isinstance(kind, str) and kind.lower() not in supported:
            counts["unsupported"] += 1
            continue
        outcome, error = _forward_one(item, forwarder)
        if error is not None and outcome != "dropped":
            if isinstance(error, InvalidEventPayload) and len(items) > 1:
                error = error.located(index=index)
            report(error, item if isinstance(item, dict) else {"value": item})
        if outcome == "transient":
            return _respond(500, "temporarily unable to take events", counts=counts)
        counts[outcome] += 1
    return _respond(200, counts=counts)


_JSON_KINDS = {str: "string", list: "array", int: "number", float: "number", bool: "boolean"}


def _forward_one(item: object, forwarder: SupportsForward) -> tuple[str, Exception | None]:
    """Parse and forward one item: its counter (or "transient": answer 500), and the error."""
    from lago_segment.events import parse_event

    if not isinstance(item, dict):
        # Not even a JSON string holding an event: parse_event would decode that text.
        kind = "null" if item is None else _JSON_KINDS.get(type(item), type(item).__name__)
        return "rejected", InvalidEventPayload(f"message must be a JSON object, not {kind}")
    try:
        event = parse_event(item)
    except Exception as error:  # parsing is deterministic: a retry would fail again
        return "rejected", error
    try:
        forwarder.forward(event)
    except Exception as error:
        return _outcome(error), error
    return "forwarded", None


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
