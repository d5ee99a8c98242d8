"""The exception tree of lago-segment.

Every exception the library raises on purpose derives from
:class:`LagoSegmentError`, so ``except LagoSegmentError`` catches them all::

    LagoSegmentError
    ├── InvalidEventPayload        a Segment message is malformed
    ├── InvalidLagoEvent           a Lago event would be rejected by Lago
    ├── MappingError               a rule cannot map an event
    │   └── SpecError                  a mapping spec is invalid (found when it is loaded)
    ├── ConfigurationError         an option is invalid (e.g. http:// to a remote host)
    ├── LagoAPIError               Lago answered with an error status
    │   ├── LagoAuthenticationError    401 / 403
    │   ├── LagoNotFoundError          404
    │   ├── LagoValidationError        422
    │   ├── LagoRateLimitError         429, after retries
    │   └── LagoServerError            5xx, after retries
    ├── LagoTransportError         no usable answer from Lago
    │   ├── LagoConnectionError        connect error, reset, dropped response
    │   ├── LagoTimeoutError           the request or the retry deadline timed out
    │   └── LagoResponseTooLargeError  the answer was larger than the client reads
    ├── ClientClosedError          the Lago client was closed (not a delivery failure)
    ├── ForwarderError             the forwarder cannot take an event
    │   ├── QueueFullError             the queue (or spool) is full
    │   ├── ForwarderClosedError       forward() after close()
    │   └── SpoolError                 the spool file cannot be written (full disk, ...)
    └── HandlerError               Segment Functions' errors, raised by handlers
        ├── EventNotSupported
        ├── ValidationError
        ├── DropEvent
        └── RetryError

No exception message ever contains an API key or a webhook secret.

Which errors are also a :class:`ValueError`: those raised for a value the
calling *code* built and passed in, where Python itself would raise
``ValueError`` for a bad argument: a :class:`~lago_segment.lago.LagoEvent`'s
fields (:class:`InvalidLagoEvent`) and an option of a client, forwarder or
receiver (:class:`ConfigurationError`). Errors about what is read from
outside at run time (a Segment message, a mapping spec document, Lago's
answers, a file the CLI reads) are not, so an ``except ValueError`` around
your own code never swallows them by accident: catch the library's class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ClientClosedError",
    "ConfigurationError",
    "DropEvent",
    "EventNotSupported",
    "ForwarderClosedError",
    "ForwarderError",
    "HandlerError",
    "InvalidEventPayload",
    "InvalidLagoEvent",
    "LagoAPIError",
    "LagoAuthenticationError",
    "LagoConnectionError",
    "LagoNotFoundError",
    "LagoRateLimitError",
    "LagoResponseTooLargeError",
    "LagoSegmentError",
    "LagoServerError",
    "LagoTimeoutError",
    "LagoTransportError",
    "LagoValidationError",
    "MappingError",
    "QueueFullError",
    "SpecError",
    "RetryError",
    "SpoolError",
    "ValidationError",
]


class LagoSegmentError(Exception):
    """Base class of every error lago-segment raises on purpose."""


class InvalidEventPayload(LagoSegmentError):
    """A Segment message is malformed.

    The message names the problem and the JSON path where it was found, e.g.
    ``track event is missing "event" @ $.event``. When the message came from a
    batch or a file, :attr:`index` (0-based position in the batch) or
    :attr:`line` (1-based line number in the file) says which one.

    It is also the Segment Functions error of the same name: a handler may
    raise it to discard an event as invalid (reported to the error callback).
    """

    def __init__(
        self,
        problem: str,
        path: str = "$",
        *,
        index: int | None = None,
        line: int | None = None,
        source: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = path
        self.index = index
        self.line = line
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.source is not None:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.index is not None:
            where.append(f"item {self.index}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"{self.problem} @ {self.path}{suffix}"

    def located(
        self, *, index: int | None = None, line: int | None = None, source: str | None = None
    ) -> InvalidEventPayload:
        """Return a copy of this error that also names its batch index, line or file."""
        return InvalidEventPayload(
            self.problem,
            self.path,
            index=self.index if index is None else index,
            line=self.line if line is None else line,
            source=self.source if source is None else source,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_invalid_payload,
            (self.problem, self.path, self.index, self.line, self.source),
        )


def _rebuild_invalid_payload(
    problem: str, path: str, index: int | None, line: int | None, source: str | None
) -> InvalidEventPayload:
    return InvalidEventPayload(problem, path, index=index, line=line, source=source)


class InvalidLagoEvent(LagoSegmentError, ValueError):
    """A :class:`~lago_segment.LagoEvent` field holds a value Lago would reject.

    :attr:`field` names the field (``properties.seats`` for a property).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class MappingError(LagoSegmentError):
    """A mapping spec is invalid, or a matching rule cannot build a Lago event.

    At load time, :attr:`errors` lists every problem found, each with its
    location (``rules[0].when: ...``). At map time, :attr:`rule`, :attr:`field`
    and :attr:`message_id` say which rule failed on which event.
    """

    def __init__(
        self,
        errors: str | list[str],
        *,
        rule: str | None = None,
        field: str | None = None,
        message_id: str | None = None,
    ) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.rule = rule
        self.field = field
        self.message_id = message_id
        if len(self.errors) == 1:
            text = self.errors[0]
        else:
            text = f"{len(self.errors)} errors:\n" + "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(text)


class SpecError(MappingError):
    """A mapping spec is invalid: raised when it is loaded or built, never while mapping.

    A :class:`MappingError`, so ``except MappingError`` still catches it;
    :attr:`errors` lists every problem, each with its location, the rule's name
    and, for a TOML or JSON file, ``file:line:column``.
    """


class ConfigurationError(LagoSegmentError, ValueError):
    """An option of a client or a forwarder is invalid: :attr:`option` names it.

    For example an ``http://`` ``api_url`` to a host that is not loopback
    (the API key would travel in clear text) or a retry policy with
    ``attempts=0``.
    """

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(f"{option}: {problem}")


class LagoAPIError(LagoSegmentError):
    """Lago answered with an error status.

    Carries what Lago said: :attr:`status_code`, :attr:`error` (Lago's
    ``error`` text), :attr:`code` (Lago's ``code``, e.g. ``validation_errors``),
    :attr:`error_details` and the request id when Lago sent one.
    """

    def __init__(
        self,
        status_code: int,
        error: str | None = None,
        *,
        code: str | None = None,
        error_details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.error = error
        self.code = code
        self.error_details: Mapping[str, Any] = dict(error_details or {})
        self.request_id = request_id
        parts = [f"Lago answered {status_code}"]
        if error:
            parts.append(f": {error}")
        if code:
            parts.append(f" ({code})")
        if self.error_details:
            parts.append(f" {self.error_details}")
        if request_id:
            parts.append(f" [request id {request_id}]")
        super().__init__("".join(parts))


class LagoAuthenticationError(LagoAPIError):
    """Lago refused the API key (401) or the action (403)."""


class LagoNotFoundError(LagoAPIError):
    """Lago answered 404: an unknown subscription, metric or path."""


class LagoValidationError(LagoAPIError):
    """Lago answered 422; :attr:`error_details` says which fields were wrong."""


class LagoRateLimitError(LagoAPIError):
    """Lago still answered 429 when the retries ran out.

    :attr:`limit`, :attr:`remaining` and :attr:`reset` (seconds until the
    window resets) come from Lago's ``X-RateLimit-*`` headers when present.
    """

    def __init__(
        self,
        status_code: int = 429,
        error: str | None = None,
        *,
        code: str | None = None,
        error_details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        limit: int | None = None,
        remaining: int | None = None,
        reset: float | None = None,
    ) -> None:
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
        super().__init__(
            status_code, error, code=code, error_details=error_details, request_id=request_id
        )


class LagoServerError(LagoAPIError):
    """Lago still answered 5xx when the retries ran out."""


class LagoTransportError(LagoSegmentError):
    """No usable answer came back from Lago (after retries)."""


class LagoConnectionError(LagoTransportError):
    """The connection failed, was reset, or the response was lost."""


class LagoTimeoutError(LagoTransportError):
    """A request timed out, or the retry policy's overall deadline passed."""


class LagoResponseTooLargeError(LagoTransportError):
    """Lago's answer was larger than the client's ``max_response_bytes``.

    Lago's answers are a few kilobytes; a larger one comes from something in
    between (a proxy, a captive portal, a wrong ``api_url``). The client stops
    reading at the bound, without buffering the rest, and retries: a resend
    carries the same transaction_ids, so it cannot bill twice.
    """


class ClientClosedError(LagoSegmentError):
    """The Lago client was closed before or while this call ran.

    Not a delivery failure: nothing was decided about the events, which can be
    sent again with an open client. When it interrupts ``send_batch``,
    :attr:`result` holds what was settled before the close (a
    :class:`~lago_segment.client.BatchResult`) and :attr:`unsettled` the events
    whose fate is unknown (not sent, or sent without an answer), in order.
    """

    def __init__(self, message: str = "the Lago client is closed") -> None:
        super().__init__(message)
        self.result: Any = None
        self.unsettled: tuple[Any, ...] = ()


class ForwarderError(LagoSegmentError):
    """The forwarder could not take an event."""


class QueueFullError(ForwarderError):
    """The forwarder's queue (or spool) is full and the event was not taken."""


class ForwarderClosedError(ForwarderError):
    """``forward()`` was called on a forwarder that is closed."""


class SpoolError(ForwarderError):
    """The forwarder's spool file could not be written (disk full, I/O error, read-only
    file: ``forward()`` then follows ``on_full``), or a row read back from it is not a
    valid event (it is set aside in the file and reported once)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"spool {path}: {problem}")
        self.path = path
        """The spool file."""
        self.problem = problem
        """What went wrong."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem))


class HandlerError(LagoSegmentError):
    """Base of the Segment Functions errors a handler may raise."""


class EventNotSupported(HandlerError):
    """The handler does not support this event: discarded, reported."""


class ValidationError(HandlerError):
    """The event failed the handler's validation: discarded, reported."""


class DropEvent(HandlerError):
    """Do not forward this event: discarded quietly and counted."""


class RetryError(HandlerError):
    """A transient problem: the handler is retried with backoff, then reported."""
