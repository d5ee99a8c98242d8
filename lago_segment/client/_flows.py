"""The I/O-free core of the Lago clients: batching, retries, response classification.

Each operation is a generator *flow* (the shape of httpx's ``_auth.py``): it
yields a :class:`Call` (POST this body to this path, within this time) or a
:class:`Wait` (sleep this long) and is sent back the :class:`httpx.Response` or
the transport error the call ended with (httpx's, or the shell's own
:class:`~lago_segment.errors.LagoTransportError` when it cut the exchange off);
a :class:`~lago_segment.errors.ClientClosedError` is thrown into it. A 15-line sync driver
(``_sync.drive``) and a 15-line async driver (``_async.adrive``) run the same
flows, so the two clients cannot drift apart, and every decision here is
testable with plain function calls. :class:`ClientFlows` runs them with a
client's validated :class:`~lago_segment.client._options.ClientOptions`.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Mapping
from typing import Any, TypeVar

import attrs
import httpx

from lago_segment import _metrics
from lago_segment._reporting import log_fields
from lago_segment._retry import is_testing
from lago_segment._version import __version__
from lago_segment.errors import (
    ClientClosedError,
    LagoAPIError,
    LagoTransportError,
    LagoValidationError,
)
from lago_segment.lago import LagoEvent, PropertyValue

from ._batching import Batch, batch_body, dumps, event_body, plan_batches
from ._options import ClientOptions
from ._redact import Redactor
from ._responses import (
    RETRY_STATUSES,
    RETRY_TRANSPORT_ERRORS,
    error_from_response,
    is_duplicate,
    is_permanent,
    json_object,
    rate_limit_info,
    rejected_indices,
    server_wait,
    transport_error,
)
from ._results import BatchResult, DeliveryFailure

logger = logging.getLogger("lago_segment.client")

EVENT_PATH = "/api/v1/events"
BATCH_PATH = "/api/v1/events/batch"
ESTIMATE_FEES_PATH = "/api/v1/events/estimate_fees"

T = TypeVar("T")


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


@attrs.frozen(slots=True)
class ClientFlows:
    """The flows both shells run with a client's validated :class:`ClientOptions`.

    What derives from the options is kept here (request headers, the
    redactor). The flows: :meth:`send`, :meth:`send_batch`,
    :meth:`estimate_fees`, over :meth:`call`.
    """

    options: ClientOptions
    headers: Mapping[str, str] = attrs.field(init=False, repr=False)
    redact: Redactor = attrs.field(init=False, repr=False)

    @headers.default
    def _headers(self) -> Mapping[str, str]:
        return {
            "Authorization": f"Bearer {self.options.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            # Lago's answers are small: compression would only let a bounded
            # read hide an unbounded decompression.
            "Accept-Encoding": "identity",
            "User-Agent": f"lago-segment/{__version__}",
        }

    @redact.default
    def _redactor(self) -> Redactor:
        return Redactor.for_client(self.options.api_key, self.options.origin)

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return self.options.origin + path

    def call(self, call: Call) -> Flow[tuple[httpx.Response | LagoTransportError, int]]:
        """Send one call until it gets a final answer; return it and how many retries it took.

        The answer is a response (a success, a status not worth retrying, or
        the last retryable status when retries ran out) or a transport error.
        """
        policy = self.options.retry
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
            wait = 0.0 if is_testing() else (hint if hint is not None else policy.backoff(attempt))
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
        on_rate_limit = self.options.on_rate_limit
        if on_rate_limit is None:
            return
        info = rate_limit_info(response.headers)
        if info is None:
            return
        try:
            on_rate_limit(info)
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
            options = self.options
            for batch in plan_batches(given, options.max_batch_size, options.max_batch_bytes):
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
                        extra=log_fields(None, None, event.transaction_id),
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
        body = dumps({"event": payload})
        outcome, _ = yield from self.call(Call(ESTIMATE_FEES_PATH, body))
        if isinstance(outcome, LagoTransportError):
            raise outcome
        if not outcome.is_success:
            raise error_from_response(outcome, self.redact)
        fees = json_object(outcome).get("fees")
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
