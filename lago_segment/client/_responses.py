"""Reading Lago's answers: rate-limit and wait hints, error classes, capped bodies."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping
from datetime import timezone
from typing import Any

import attrs
import httpx

from lago_segment.errors import (
    LagoAPIError,
    LagoAuthenticationError,
    LagoConnectionError,
    LagoNotFoundError,
    LagoRateLimitError,
    LagoResponseTooLargeError,
    LagoServerError,
    LagoTimeoutError,
    LagoTransportError,
    LagoValidationError,
)

from ._redact import (
    Redactor,
)

#: Default cap on one response body. Lago's answers are a few KiB (a batch of
#: 100 events echoed back is ~40 KiB); anything larger is not Lago talking.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024

#: Statuses worth resending: the same body can succeed later.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Transport failures worth resending (a retry re-sends the same transaction_ids
#: and timestamps, so a request that did reach Lago comes back as a duplicate).
RETRY_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_DUPLICATE = {"transaction_id": ["value_already_exist"]}


@attrs.frozen(slots=True)
class RateLimitInfo:
    """Lago's rate-limit headers on one response (``X-RateLimit-*``)."""

    limit: int | None
    """Requests allowed per window."""
    remaining: int | None
    """Requests left in the current window."""
    reset: float | None
    """Seconds until the window resets."""


def _number(value: str | None) -> float | None:
    # A header is server input: "inf" or "nan" must not crash int() or wait forever.
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _reset_seconds(value: str | None, now: float) -> float | None:
    reset = _number(value)
    # Lago sends seconds until reset; some proxies send an epoch instant instead.
    if reset is not None and reset > 1_000_000_000:
        reset -= now
    return None if reset is None else max(0.0, reset)


def rate_limit_info(headers: httpx.Headers, now: float | None = None) -> RateLimitInfo | None:
    """Read ``X-RateLimit-Limit/Remaining/Reset``; None when none is present."""
    limit = _number(headers.get("x-ratelimit-limit"))
    remaining = _number(headers.get("x-ratelimit-remaining"))
    wall = time.time() if now is None else now
    reset = _reset_seconds(headers.get("x-ratelimit-reset"), wall)
    if limit is None and remaining is None and reset is None:
        return None
    return RateLimitInfo(
        limit=None if limit is None else int(limit),
        remaining=None if remaining is None else int(remaining),
        reset=reset,
    )


def server_wait(headers: httpx.Headers, now: float | None = None) -> float | None:
    """How long Lago asked us to wait (``Retry-After`` or ``X-RateLimit-Reset``), if it did."""
    wall = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        seconds = _number(retry_after)
        if seconds is not None:
            return max(0.0, seconds)
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return max(0.0, when.timestamp() - wall)
    return _reset_seconds(headers.get("x-ratelimit-reset"), wall)


def json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


_ERROR_CLASSES: dict[int, type[LagoAPIError]] = {
    401: LagoAuthenticationError,
    403: LagoAuthenticationError,
    404: LagoNotFoundError,
    422: LagoValidationError,
}


def error_from_response(response: httpx.Response, redact: Redactor | None = None) -> LagoAPIError:
    """Map an error response to its :class:`~lago_segment.LagoAPIError` subclass.

    With ``redact``, the client's secrets are scrubbed from everything taken
    from the answer (a proxy may echo the request's headers back).
    """
    body = json_object(response)
    if redact is not None and redact.found_in(response.content):
        body = redact.scrub(body)
    request_id = response.headers.get("x-request-id")
    if redact is not None and request_id is not None:
        request_id = redact(request_id)
    status = response.status_code
    error = body.get("error")
    code = body.get("code")
    details = body.get("error_details")
    kwargs: dict[str, Any] = {
        "code": code if isinstance(code, str) else None,
        "error_details": details if isinstance(details, Mapping) else None,
        "request_id": request_id,
    }
    text = error if isinstance(error, str) else response.reason_phrase or None
    if status == 429:
        info = rate_limit_info(response.headers)
        if info is not None:
            kwargs.update(limit=info.limit, remaining=info.remaining, reset=info.reset)
        return LagoRateLimitError(status, text, **kwargs)
    cls = _ERROR_CLASSES.get(status, LagoServerError if status >= 500 else LagoAPIError)
    return cls(status, text, **kwargs)


def transport_error(
    exc: httpx.TransportError, redact: Redactor | None = None
) -> LagoTransportError:
    """Wrap an httpx transport failure in our error (its cause set to ``exc``).

    With ``redact``, a message carrying one of the client's secrets (h11 quotes
    an illegal header value whole) is scrubbed, and the original exception is
    then not chained: a traceback would print its message.
    """
    cls = LagoTimeoutError if isinstance(exc, httpx.TimeoutException) else LagoConnectionError
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if redact is None or redact.chain_is_clean(exc):
        error = cls(text)
        error.__cause__ = exc
    else:
        error = cls(redact(text))
        error.__suppress_context__ = True
    return error


def is_permanent(status: int) -> bool:
    """True when resending the same request can never succeed (a 4xx other than 408/429)."""
    return status < 500 and status not in RETRY_STATUSES


def is_duplicate(details: object) -> bool:
    """True when Lago's rejection is only ``transaction_id: value_already_exist``."""
    return details == _DUPLICATE


def rejected_indices(details: Mapping[str, Any], size: int) -> dict[int, Mapping[str, Any]] | None:
    """Lago's index-keyed ``error_details`` of a batch as ``{index: field errors}``.

    None when the details are not keyed by valid indices (e.g. ``no_events``):
    then the whole batch was refused as such.
    """
    if not details:
        return None
    rejected: dict[int, Mapping[str, Any]] = {}
    for key, value in details.items():
        # isascii: "²".isdigit() is True, but int("²") raises.
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            return None
        if not isinstance(value, Mapping):
            return None
        index = int(key)
        if index >= size:
            return None
        rejected[index] = value
    return rejected


class BodyReader:
    """Collects a response body up to ``limit`` bytes and until ``deadline``.

    The shells feed it chunks as they arrive; it raises
    :class:`~lago_segment.errors.LagoResponseTooLargeError` as soon as the body
    passes the limit (or announces it in ``Content-Length``), and
    :class:`~lago_segment.errors.LagoTimeoutError` once the deadline (on
    ``clock``) has passed, so nothing beyond the limit is ever buffered.
    """

    def __init__(
        self,
        response: httpx.Response,
        limit: int,
        deadline: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._deadline = deadline
        self._clock = clock
        self._chunks: list[bytes] = []
        self._size = 0
        self._response = response
        announced = response.headers.get("content-length", "")
        length = int(announced) if announced.isascii() and announced.isdigit() else None
        if length is not None and length > limit:
            raise self._too_large(f"announces {length} bytes")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        # The body is known to fit when announced within the limit and not
        # compressed: HTTP framing stops the read at Content-Length, so the
        # shell may read it at once (cheaper than collecting chunks).
        self.fits = length is not None and encoding in ("", "identity")

    def _too_large(self, what: str) -> LagoResponseTooLargeError:
        return LagoResponseTooLargeError(
            f"the answer ({self._response.status_code}) {what}, more than the "
            f"{self._limit} bytes (max_response_bytes) a Lago answer can take; "
            "is api_url really Lago?"
        )

    def add(self, chunk: bytes) -> None:
        """Take one chunk of the body."""
        self._size += len(chunk)
        if self._size > self._limit:
            raise self._too_large("is longer")
        self._chunks.append(chunk)
        if self._deadline is not None and self._clock() > self._deadline:
            raise LagoTimeoutError("the answer did not arrive in full within the request timeout")

    def response(self) -> httpx.Response:
        """The response, its body read (and decoded: the encoding headers are dropped)."""
        dropped = (b"content-encoding", b"content-length", b"transfer-encoding")
        headers = [(k, v) for k, v in self._response.headers.raw if k.lower() not in dropped]
        extensions = {k: v for k, v in self._response.extensions.items() if k in _KEPT_EXTENSIONS}
        return httpx.Response(
            self._response.status_code,
            headers=headers,
            content=b"".join(self._chunks),
            request=self._response.request,
            extensions=extensions,
        )


_KEPT_EXTENSIONS = ("http_version", "reason_phrase")
