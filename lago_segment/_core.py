"""The I/O-free core of the Lago clients: batching, retries, response classification.

Each operation is a generator *flow* (the shape of httpx's ``_auth.py``): it
yields a :class:`Call` (POST this body to this path, within this time) or a
:class:`Wait` (sleep this long) and is sent back the :class:`httpx.Response` or
the transport error the call ended with (httpx's, or the shell's own
:class:`~lago_segment.errors.LagoTransportError` when it cut the exchange off);
a :class:`~lago_segment.errors.ClientClosedError` is thrown into it. A 15-line sync driver and a
15-line async driver in :mod:`lago_segment.client` run the same flows, so the
two clients cannot drift apart, and every decision here is testable with plain
function calls.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import math
import random
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import timezone
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
import httpx

from . import _json, _metrics
from ._results import BatchResult, DeliveryFailure
from ._version import __version__
from .errors import (
    ClientClosedError,
    ConfigurationError,
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
from .lago import LagoEvent, PropertyValue

logger = logging.getLogger("lago_segment.client")

US_API_URL = "https://api.getlago.com"
EU_API_URL = "https://api.eu.getlago.com"

EVENT_PATH = "/api/v1/events"
BATCH_PATH = "/api/v1/events/batch"
ESTIMATE_FEES_PATH = "/api/v1/events/estimate_fees"

#: Lago refuses batches of more than 100 events (``too_many_events``).
MAX_BATCH_SIZE = 100
#: Default cap on one batch request body; a larger batch is split in halves.
DEFAULT_MAX_BATCH_BYTES = 512 * 1024
#: Default cap on one response body. Lago's answers are a few KiB (a batch of
#: 100 events echoed back is ~40 KiB); anything larger is not Lago talking.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024

#: Statuses worth resending: the same body can succeed later.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Transport failures worth resending (a retry re-sends the same transaction_ids
#: and timestamps, so a request that did reach Lago comes back as a duplicate).
RETRY_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_DUPLICATE = {"transaction_id": ["value_already_exist"]}
_testing = False

T = TypeVar("T")


def set_testing(testing: bool) -> None:
    """Make every retry wait zero seconds (for tests), or restore real waits.

    Like ``stamina.set_testing``: retries still happen, in the same number, but
    backoff, ``Retry-After`` and ``X-RateLimit-Reset`` waits are skipped.
    """
    global _testing
    _testing = testing


def is_testing() -> bool:
    """True while :func:`set_testing` has turned waiting off."""
    return _testing


def _positive(name: str, *, allow_zero: bool = True) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(name, f"must be a number, not {type(value).__name__}")
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigurationError(name, f"must be {'>=' if allow_zero else '>'} 0, not {value}")

    return check


@attrs.frozen(slots=True)
class RetryPolicy:
    """When and how long to retry a request (stamina's vocabulary).

    Retried: connect errors, timeouts, dropped connections, 408, 429, 500, 502,
    503 and 504. Never retried: 400, 401, 403, 404, 422 (the same request
    cannot succeed). A retry resends the same body, hence the same
    transaction_ids and timestamps: it can never bill twice.

    The wait before retry *n* is ``min(wait_max, wait_initial * 2 ** (n - 1) +
    uniform(0, wait_jitter))``, unless Lago said how long to wait
    (``Retry-After`` or ``X-RateLimit-Reset``): then that. No wait ever ends
    past the overall ``timeout``; when it would, the retries stop there.

    For tests, pass ``sleep`` (called instead of sleeping, e.g. to record the
    waits) and ``clock`` (a monotonic clock in seconds), or turn waiting off
    globally with :func:`lago_segment.testing.set_testing`.

    >>> RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.5)
    RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.5, wait_max=5.0, wait_jitter=1.0)
    """

    attempts: int = attrs.field(default=10, validator=_positive("attempts", allow_zero=False))
    """How many times a request is sent at most (1 means no retry)."""
    timeout: float | None = attrs.field(default=45.0, validator=_positive("timeout"))
    """Overall deadline in seconds for one request and all its retries, waits included
    (None: none). The last attempt is given only what is left of it."""
    wait_initial: float = attrs.field(default=0.1, validator=_positive("wait_initial"))
    """The first backoff wait, in seconds; it doubles on each retry."""
    wait_max: float = attrs.field(default=5.0, validator=_positive("wait_max"))
    """The longest backoff wait, in seconds (server-given waits may be longer)."""
    wait_jitter: float = attrs.field(default=1.0, validator=_positive("wait_jitter"))
    """A random 0..wait_jitter seconds added to each backoff wait."""
    sleep: Callable[[float], None] | None = attrs.field(default=None, eq=False, repr=False)
    """Called instead of sleeping (both clients; it must not block in the async one)."""
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)
    """The monotonic clock the deadline is measured with."""

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), without a server hint."""
        exp = self.wait_initial * 2 ** (attempt - 1)
        return float(min(self.wait_max, exp + random.uniform(0, self.wait_jitter)))


@attrs.frozen(slots=True)
class RateLimitInfo:
    """Lago's rate-limit headers on one response (``X-RateLimit-*``)."""

    limit: int | None
    """Requests allowed per window."""
    remaining: int | None
    """Requests left in the current window."""
    reset: float | None
    """Seconds until the window resets."""


@attrs.frozen(slots=True)
class Call:
    """A step of a flow: POST ``body`` (JSON bytes) to ``path``.

    ``timeout`` is what is left of the retry policy's overall deadline (None:
    no deadline): the shell ends the whole exchange by then at the latest.
    """

    path: str
    body: bytes
    timeout: float | None = None


@attrs.frozen(slots=True)
class Wait:
    """A step of a flow: sleep ``seconds`` before the next call."""

    seconds: float


Step = Call | Wait
#: What a Call is answered with: a response, or the transport failure it ended
#: with (httpx's, or ours when the shell itself cut the exchange off).
Reply = httpx.Response | httpx.TransportError | LagoTransportError | None
Flow = Generator[Step, Reply, T]


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


def _json_object(response: httpx.Response) -> dict[str, Any]:
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
    body = _json_object(response)
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


def _dumps(payload: dict[str, Any]) -> bytes:
    # Compact, and no circularity check: we built the payload, it has no cycles
    # (that check costs ~15% of serialization, the client's main CPU cost).
    return _json.dumps(payload)


def event_body(event: LagoEvent) -> bytes:
    """The body of ``POST /api/v1/events``."""
    return _dumps({"event": event.to_dict()})


def batch_body(dicts: Sequence[dict[str, Any]]) -> bytes:
    """The body of ``POST /api/v1/events/batch`` for already-rendered events."""
    return _dumps({"events": dicts})


@attrs.frozen(slots=True)
class Batch:
    """Events bound for one batch request, with their rendered dicts and body."""

    events: Sequence[LagoEvent]
    dicts: Sequence[dict[str, Any]]
    body: bytes


def plan_batches(events: Iterable[LagoEvent], max_size: int, max_bytes: int) -> Iterator[Batch]:
    """Split events into batches of at most ``max_size`` events and ``max_bytes`` bytes.

    Each event is rendered once. A chunk whose body is too large is split in
    halves until it fits; an event too large on its own is still sent alone
    (Lago decides), never dropped.
    """
    chunk: list[LagoEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == max_size:
            yield from _fit(chunk, [e.to_dict() for e in chunk], max_bytes)
            chunk = []
    if chunk:
        yield from _fit(chunk, [e.to_dict() for e in chunk], max_bytes)


def _fit(
    events: Sequence[LagoEvent], dicts: Sequence[dict[str, Any]], max_bytes: int
) -> Iterator[Batch]:
    body = batch_body(dicts)
    if len(body) <= max_bytes or len(events) == 1:
        yield Batch(events, dicts, body)
        return
    half = len(events) // 2
    yield from _fit(events[:half], dicts[:half], max_bytes)
    yield from _fit(events[half:], dicts[half:], max_bytes)


def check_api_url(api_url: str, *, allow_insecure_http: bool) -> str:
    """Validate a Lago origin and return it without a trailing ``/`` or ``/api/v1``.

    ``http://`` is refused unless the host is loopback or the caller opted in:
    the API key would travel in clear text.
    """
    try:
        url = httpx.URL(api_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError("api_url", f"is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            "api_url", f"must be an http(s) origin like {US_API_URL}, not {api_url!r}"
        )
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise ConfigurationError(
            "api_url",
            f"{api_url!r} is plain http to a remote host: the API key would travel in clear "
            "text. Use https, or pass allow_insecure_http=True if you really mean it",
        )
    base = str(url.copy_with(query=None, fragment=None)).rstrip("/")
    return base.removesuffix("/api/v1")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mask(secret: str) -> str:
    """A stand-in for a secret in reprs: never any of its characters."""
    return "'********'" if secret else "''"


#: What a secret is replaced with in any text the client lets out.
MASK = "********"


def check_api_key(api_key: object) -> str:
    """Return ``api_key`` if it can go in an HTTP header as is, else raise ``ConfigurationError``.

    Only printable ASCII without spaces is accepted: a trailing newline from a
    secrets file, a space or a non-ASCII character would otherwise reach the
    HTTP library, whose error quotes the header value, hence the key, whole.
    The message never contains the key.
    """
    if not isinstance(api_key, str):
        raise ConfigurationError("api_key", f"must be a string, not {type(api_key).__name__}")
    if not api_key.strip():
        raise ConfigurationError("api_key", "must be a non-empty string")
    for position, char in enumerate(api_key):
        if "!" <= char <= "~":
            continue
        if char.isspace() or not char.isprintable():
            what = "whitespace or a control character"
            if char in "\r\n" and position >= len(api_key.rstrip()):
                what = "a trailing newline (read from a file? strip it)"
        else:
            what = "a non-ASCII character"
        raise ConfigurationError(
            "api_key",
            f"contains {what} at position {position} of {len(api_key)}; "
            "an API key is printable ASCII without spaces",
        )
    return api_key


def safe_url(url: str) -> str:
    """``url`` with its userinfo (``user:password@``) masked, for messages and reprs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return url
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(userinfo=MASK.encode()))


def _variants(secret: str) -> set[str]:
    # The forms a secret takes in messages: as is, in a bytes repr (h11 quotes
    # b'Bearer ...'), JSON-escaped, percent-encoded (a URL's userinfo).
    forms = {secret, repr(secret.encode())[2:-1], json.dumps(secret)[1:-1], quote(secret, safe="")}
    return {form for form in forms if form}


@attrs.frozen(slots=True)
class Redactor:
    """Scrubs one client's secrets (API key, URL userinfo) out of text.

    Calling it returns the text with every secret replaced by ``********``.
    Every error text the client lets out goes through it; other layers (the
    forwarders, the CLI) use the client's :meth:`~lago_segment.client.LagoClient.redact`
    for text that may hold a transport library's message.

    >>> redact = Redactor.for_client("sk_live_123", "https://bob:hunter22@lago.example.com")
    >>> redact("Illegal header value b'Bearer sk_live_123 ' for bob:hunter22@lago")
    "Illegal header value b'Bearer ******** ' for ********@lago"
    """

    secrets: tuple[str, ...] = attrs.field(repr=False)

    @classmethod
    def for_client(cls, api_key: str, api_url: str) -> Redactor:
        """The redactor of a client with this key and origin."""
        found = _variants(api_key)
        try:
            url = httpx.URL(api_url)
        except (httpx.InvalidURL, TypeError):
            url = None
        if url is not None and url.userinfo:
            found.add(url.userinfo.decode("ascii"))
            # Short user names ("a") would garble every message; a credential is longer.
            for part in (url.username, url.password):
                if len(part) >= 3:
                    found |= _variants(part)
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def found_in(self, data: bytes | str) -> bool:
        """True when one of the secrets appears in ``data``."""
        if isinstance(data, bytes):
            return any(s.encode("utf-8", "replace") in data for s in self.secrets)
        return any(s in data for s in self.secrets)

    def scrub(self, value: Any) -> Any:
        """``value`` (JSON-like: dicts, lists, strings) with the secrets masked in every string."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value

    def chain_is_clean(self, exc: BaseException) -> bool:
        """True when no message in ``exc``'s chain (causes, contexts) holds a secret."""
        seen: set[int] = set()
        todo: list[BaseException | None] = [exc]
        while todo:
            current = todo.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            if self.found_in(str(current)) or any(
                isinstance(a, (str, bytes)) and self.found_in(a) for a in current.args
            ):
                return False
            todo += [current.__cause__, current.__context__]
        return True


@attrs.frozen(slots=True)
class ClientCore:
    """Everything the sync and async clients share: settings and the three flows."""

    api_key: str = attrs.field(repr=False)
    api_url: str = attrs.field(repr=safe_url)
    policy: RetryPolicy
    on_rate_limit: Callable[[RateLimitInfo], None] | None = attrs.field(default=None, repr=False)
    max_batch_size: int = MAX_BATCH_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    headers: Mapping[str, str] = attrs.field(init=False, repr=False)
    redact: Redactor = attrs.field(init=False, repr=False)

    @headers.default
    def _headers(self) -> Mapping[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            # Lago's answers are small: compression would only let a bounded
            # read hide an unbounded decompression.
            "Accept-Encoding": "identity",
            "User-Agent": f"lago-segment/{__version__}",
        }

    @redact.default
    def _redactor(self) -> Redactor:
        return Redactor.for_client(self.api_key, self.api_url)

    @classmethod
    def create(
        cls,
        api_key: str,
        *,
        api_url: str,
        retry: RetryPolicy | None,
        allow_insecure_http: bool,
        on_rate_limit: Callable[[RateLimitInfo], None] | None,
        max_batch_size: int,
        max_batch_bytes: int,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> ClientCore:
        """Validate the client options and build the core."""
        check_api_key(api_key)
        if isinstance(max_batch_size, bool) or not 1 <= max_batch_size <= MAX_BATCH_SIZE:
            raise ConfigurationError(
                "max_batch_size", f"must be between 1 and {MAX_BATCH_SIZE}, not {max_batch_size}"
            )
        if isinstance(max_batch_bytes, bool) or max_batch_bytes < 1:
            raise ConfigurationError("max_batch_bytes", f"must be >= 1, not {max_batch_bytes}")
        if isinstance(max_response_bytes, bool) or not (
            isinstance(max_response_bytes, int) and max_response_bytes >= 1024
        ):
            raise ConfigurationError(
                "max_response_bytes", f"must be an int >= 1024, not {max_response_bytes!r}"
            )
        return cls(
            api_key,
            check_api_url(api_url, allow_insecure_http=allow_insecure_http),
            retry if retry is not None else RetryPolicy(),
            on_rate_limit,
            max_batch_size,
            max_batch_bytes,
            max_response_bytes,
        )

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return self.api_url + path

    def call(self, call: Call) -> Flow[tuple[httpx.Response | LagoTransportError, int]]:
        """Send one call until it gets a final answer; return it and how many retries it took.

        The answer is a response (a success, a status not worth retrying, or
        the last retryable status when retries ran out) or a transport error.
        """
        policy = self.policy
        deadline = None if policy.timeout is None else policy.clock() + policy.timeout
        attempt = 0
        while True:
            attempt += 1
            # The last attempt gets only what is left of the overall deadline.
            left = None if deadline is None else deadline - policy.clock()
            started = _metrics.request_started()
            reply = yield call if left is None else attrs.evolve(call, timeout=max(left, 0.0))
            _metrics.request_finished(started, call.path, reply)
            hint: float | None = None
            if isinstance(reply, httpx.Response):
                self._report_rate_limit(reply)
                if reply.status_code not in RETRY_STATUSES:
                    return reply, attempt - 1
                outcome: httpx.Response | LagoTransportError = reply
                hint = server_wait(reply.headers)
                what = str(reply.status_code)
            elif isinstance(reply, LagoTransportError):
                # The shell's own verdicts (too slow, too large) are all worth a resend.
                outcome = reply
                what = type(reply).__name__
            else:
                assert reply is not None, "a Call is answered with a response or an error"
                outcome = transport_error(reply, self.redact)
                if not isinstance(reply, RETRY_TRANSPORT_ERRORS):
                    return outcome, attempt - 1
                what = type(reply).__name__
            wait = 0.0 if _testing else (hint if hint is not None else policy.backoff(attempt))
            if attempt >= policy.attempts or (
                deadline is not None and policy.clock() + wait >= deadline
            ):
                logger.warning(
                    "giving up on POST %s after %s (attempt %d of %d)",
                    call.path,
                    what,
                    attempt,
                    policy.attempts,
                )
                return outcome, attempt - 1
            logger.info(
                "retrying POST %s after %s in %.3fs (attempt %d of %d)",
                call.path,
                what,
                wait,
                attempt,
                policy.attempts,
            )
            if wait > 0:
                yield Wait(wait)

    def _report_rate_limit(self, response: httpx.Response) -> None:
        if self.on_rate_limit is None:
            return
        info = rate_limit_info(response.headers)
        if info is None:
            return
        try:
            self.on_rate_limit(info)
        except Exception:
            # Observability must never break delivery.
            logger.exception("on_rate_limit callback failed")

    def send(self, event: LagoEvent) -> Flow[None]:
        """Post one event; a duplicate transaction_id counts as success."""
        check_one_event(event)
        outcome, _ = yield from self.call(Call(EVENT_PATH, event_body(event)))
        if isinstance(outcome, LagoTransportError):
            raise outcome
        if outcome.is_success:
            return
        error = error_from_response(outcome, self.redact)
        if error.status_code == 422 and is_duplicate(error.error_details):
            logger.debug("event %s was already delivered", event.transaction_id)
            return
        raise error

    def send_batch(self, events: Iterable[LagoEvent]) -> Flow[BatchResult]:
        """Post events in batches; every event ends delivered, duplicate or failed.

        If the client is closed meanwhile, the :class:`ClientClosedError`
        raised carries the result so far and the events left unsettled.
        """
        given = check_events(events)
        delivered: list[LagoEvent] = []
        duplicates: list[LagoEvent] = []
        failed: list[DeliveryFailure] = []
        retries = 0
        planned = 0
        pending: list[LagoEvent] = []
        try:
            for batch in plan_batches(given, self.max_batch_size, self.max_batch_bytes):
                planned += len(batch.events)
                pending = list(batch.events)
                retries += yield from self._deliver(batch, pending, delivered, duplicates, failed)
                pending = []
        except ClientClosedError as closed:
            settled = (tuple(delivered), tuple(duplicates), tuple(failed))
            closed.result = BatchResult(*settled, retries)
            closed.unsettled = (*pending, *given[planned:])
            raise
        return BatchResult(tuple(delivered), tuple(duplicates), tuple(failed), retries)

    def _deliver(
        self,
        batch: Batch,
        pending: list[LagoEvent],
        delivered: list[LagoEvent],
        duplicates: list[LagoEvent],
        failed: list[DeliveryFailure],
    ) -> Flow[int]:
        # Settles one batch: moves each event of ``pending`` (emptied in place as
        # events settle) to one of the three lists; returns the retries it took.
        dicts, body = list(batch.dicts), batch.body
        retries = 0
        while pending:
            _metrics.batch_sent(BATCH_PATH, len(pending))
            outcome, tries = yield from self.call(Call(BATCH_PATH, body))
            retries += tries
            _metrics.retried(pending, tries)
            if isinstance(outcome, LagoTransportError):
                failed.extend(DeliveryFailure(e, outcome, permanent=False) for e in pending)
                break
            if outcome.is_success:
                delivered.extend(pending)
                break
            error = error_from_response(outcome, self.redact)
            rejected = (
                rejected_indices(error.error_details, len(pending))
                if error.status_code == 422
                else None
            )
            if rejected is None:
                permanent = is_permanent(error.status_code)
                failed.extend(DeliveryFailure(e, error, permanent) for e in pending)
                logger.warning("%d events not delivered: %s", len(pending), error)
                break
            # Lago stored nothing (batches are atomic): set the rejected
            # events aside and resend the others.
            kept: list[LagoEvent] = []
            kept_dicts: list[dict[str, Any]] = []
            for index, (event, rendered) in enumerate(zip(pending, dicts, strict=True)):
                details = rejected.get(index)
                if details is None:
                    kept.append(event)
                    kept_dicts.append(rendered)
                elif is_duplicate(details):
                    duplicates.append(event)
                else:
                    failure = _event_error(error, details)
                    logger.warning(
                        "event %s rejected: %s",
                        event.transaction_id,
                        failure,
                        extra=_metrics.log_fields(None, None, event.transaction_id),
                    )
                    failed.append(DeliveryFailure(event, failure, permanent=True))
            pending[:], dicts = kept, kept_dicts
            if pending:
                body = batch_body(dicts)
        return retries

    def estimate_fees(
        self,
        code: str,
        external_subscription_id: str,
        properties: Mapping[str, PropertyValue] | None,
    ) -> Flow[list[dict[str, Any]]]:
        """Ask Lago which fees an event would create (pay-in-advance charges only)."""
        # A throwaway LagoEvent validates the values the same way events are.
        probe = LagoEvent(
            transaction_id="estimate",
            external_subscription_id=external_subscription_id,
            code=code,
            timestamp=0,
            properties=properties or {},
        ).to_dict()
        payload: dict[str, Any] = {"code": code}
        payload["external_subscription_id"] = external_subscription_id
        if "properties" in probe:
            payload["properties"] = probe["properties"]
        body = _dumps({"event": payload})
        outcome, _ = yield from self.call(Call(ESTIMATE_FEES_PATH, body))
        if isinstance(outcome, LagoTransportError):
            raise outcome
        if not outcome.is_success:
            raise error_from_response(outcome, self.redact)
        fees = _json_object(outcome).get("fees")
        return [fee for fee in fees if isinstance(fee, dict)] if isinstance(fees, list) else []


def check_one_event(event: object) -> None:
    """Raise a ``TypeError`` naming the mistake unless ``event`` is a :class:`LagoEvent`."""
    if isinstance(event, LagoEvent):
        return
    if isinstance(event, (list, tuple)) or (
        isinstance(event, Iterable) and not isinstance(event, (str, bytes, Mapping))
    ):
        raise TypeError(
            f"send() takes one LagoEvent, not a {type(event).__name__}; "
            "use send_batch() for several events"
        )
    if isinstance(event, Mapping):
        raise TypeError(
            f"send() takes a LagoEvent, not a {type(event).__name__}; "
            "build one with LagoEvent(**fields) or LagoEvent.from_dict(data)"
        )
    raise TypeError(f"send() takes a LagoEvent, not a {type(event).__name__}")


def check_events(events: object) -> list[LagoEvent]:
    """``events`` as a list, or a ``TypeError`` naming the mistake (nothing sent yet).

    The list costs one reference per event: the :class:`BatchResult` holds
    them all anyway.
    """
    if isinstance(events, LagoEvent):
        raise TypeError("send_batch() takes an iterable of LagoEvent; use send() for one event")
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise TypeError(
            f"send_batch() takes an iterable of LagoEvent, not a {type(events).__name__}"
        )
    given = list(events)
    for index, event in enumerate(given):
        if not isinstance(event, LagoEvent):
            hint = (
                "; build it with LagoEvent(**fields) or LagoEvent.from_dict(data)"
                if isinstance(event, Mapping)
                else ""
            )
            raise TypeError(
                f"send_batch() takes LagoEvents, but item {index} is a "
                f"{type(event).__name__}{hint}"
            )
    return given


def _event_error(error: LagoAPIError, details: Mapping[str, Any]) -> LagoValidationError:
    return LagoValidationError(
        error.status_code,
        error.error,
        code=error.code,
        error_details=details,
        request_id=error.request_id,
    )
