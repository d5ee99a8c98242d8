"""Segment Functions-style handlers: settings, registration and outcome classification.

No I/O here: calling a handler and deciding what its outcome means is shared by
the thread and asyncio forwarders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, Literal

import attrs

from lago_segment._retry import (
    attempts_field,
    backoff,
    is_testing,
    timeout_field,
    wait_exp_base_field,
    wait_field,
)
from lago_segment._types import SEGMENT_CALL_TYPES
from lago_segment.client._flows import Wait
from lago_segment.errors import DropEvent, RetryError
from lago_segment.lago import LagoEvent

__all__ = [
    "CALL_TYPES",
    "Handler",
    "HandlerOutcome",
    "HandlerRetry",
    "HandlerSettings",
    "Settings",
    "handler_flow",
    "run_handler",
]

#: The call types a handler can be registered for (Segment Functions' ``onTrack`` ...).
CALL_TYPES = frozenset((*SEGMENT_CALL_TYPES, "batch"))

#: A handler: ``(event, settings) -> LagoEvent | Iterable[LagoEvent] | None``.
Handler = Callable[[Any, "HandlerSettings"], "LagoEvent | Iterable[LagoEvent] | None"]

_MASK = "********"


class HandlerSettings(Mapping[str, Any]):
    """Read-only named values given to every handler, like a Segment Function's settings.

    Values whose names are in ``sensitive`` are usable by handlers but masked in
    ``repr``/``str`` (and so in logs and error reports)::

        >>> s = Settings({"api_token": "s3cr3t", "region": "eu"}, sensitive={"api_token"})
        >>> s["api_token"]
        's3cr3t'
        >>> s
        HandlerSettings({'api_token': '********', 'region': 'eu'})
    """

    __slots__ = ("_sensitive", "_values")

    def __init__(
        self, values: Mapping[str, Any] | None = None, *, sensitive: Iterable[str] = ()
    ) -> None:
        self._values: dict[str, Any] = dict(values or {})
        self._sensitive = frozenset(sensitive)

    @property
    def sensitive(self) -> frozenset[str]:
        """The names whose values are masked when displayed."""
        return self._sensitive

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def masked(self) -> dict[str, Any]:
        """A copy safe to display: sensitive values replaced by ``********``."""
        return {k: _MASK if k in self._sensitive else v for k, v in self._values.items()}

    def __repr__(self) -> str:
        return f"HandlerSettings({self.masked()!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (HandlerSettings, (self._values,), None, None, None)


#: The name this class had first, kept: ``Settings`` alone did not say whose.
Settings = HandlerSettings


@attrs.frozen(slots=True)
class HandlerRetry:
    """How often and how long to retry a handler that raised :class:`RetryError`.

    The fields, their validation and their docs are
    :class:`~lago_segment.client.RetryPolicy`'s (stamina's vocabulary), with
    defaults for a handler: 3 ``attempts``, short waits, no ``timeout``. The
    wait before retry *n* is ``min(wait_max, wait_initial * wait_exp_base **
    (n - 1) + uniform(0, wait_jitter))`` (the one backoff formula,
    ``lago_segment._retry.backoff``); no wait ends past ``timeout``, measured
    from the handler's first call with ``clock``: when it would, the event is
    reported as the handler's failure. :func:`lago_segment.testing.set_testing`
    makes the waits zero, as it does the clients'.
    """

    attempts: int = attempts_field(3)
    """How many times a call is made at most, the first included (1 means no retry)."""
    timeout: float | None = timeout_field(None, kw_only=True)
    """Overall deadline in seconds for a call and all its retries, waits included
    (None: none): no wait ends past it, the retries stop there."""
    wait_initial: float = wait_field("wait_initial", 0.01)
    """The first backoff wait, in seconds; it grows by ``wait_exp_base`` on each retry."""
    wait_max: float = wait_field("wait_max", 0.1)
    """The longest backoff wait, in seconds (server-given waits may be longer)."""
    wait_jitter: float = wait_field("wait_jitter", 0.01)
    """A random 0..wait_jitter seconds added to each backoff wait (within ``wait_max``)."""
    wait_exp_base: float = wait_exp_base_field(2.0)
    """What each backoff wait is multiplied by for the next (2: doubling; 1: constant)."""
    clock: Callable[[], float] = attrs.field(
        default=time.monotonic, eq=False, repr=False, kw_only=True
    )
    """The monotonic clock the deadline is measured with."""

    def wait(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based)."""
        return backoff(self, retry)


@attrs.frozen(slots=True)
class HandlerOutcome:
    """What a handler's call came to: the Lago events, or how it failed."""

    kind: Literal["events", "dropped", "rejected"]
    events: tuple[LagoEvent, ...] = ()
    error: BaseException | None = None
    retries: int = 0


def _as_events(returned: object) -> tuple[LagoEvent, ...]:
    if returned is None:
        return ()
    if isinstance(returned, LagoEvent):
        return (returned,)
    if isinstance(returned, (str, bytes, Mapping)) or not isinstance(returned, Iterable):
        raise TypeError(
            f"a handler must return a LagoEvent, a list of them or None, "
            f"not {type(returned).__name__}"
        )
    events = tuple(returned)
    for item in events:
        if not isinstance(item, LagoEvent):
            raise TypeError(f"a handler returned a {type(item).__name__} among its LagoEvents")
    return events


def handler_flow(
    handler: Handler, event: Any, settings: HandlerSettings, retry: HandlerRetry
) -> Generator[Wait, None, HandlerOutcome]:
    """Call ``handler`` and classify what happened, retrying on :class:`RetryError`.

    A flow like the clients' (:mod:`lago_segment.client._flows`): it yields a
    :class:`~lago_segment.client._flows.Wait` before each retry, which the thread
    forwarder sleeps and the asyncio forwarder awaits, and returns the
    :class:`HandlerOutcome`. The retries stop at ``retry.attempts`` calls, or
    when a wait would end past ``retry.timeout`` (from the first call). Never
    raises (except ``BaseException``s that are not ``Exception``, such as
    ``KeyboardInterrupt``): every error becomes an outcome.
    """
    retries = 0
    deadline = None if retry.timeout is None else retry.clock() + retry.timeout
    while True:
        try:
            return HandlerOutcome("events", _as_events(handler(event, settings)), retries=retries)
        except DropEvent as exc:
            return HandlerOutcome("dropped", error=exc, retries=retries)
        except RetryError as exc:
            if retries + 1 >= retry.attempts:
                return HandlerOutcome("rejected", error=exc, retries=retries)
            wait = 0.0 if is_testing() else retry.wait(retries + 1)
            if deadline is not None and retry.clock() + wait >= deadline:
                # As the clients' RetryPolicy: no wait ends past the deadline.
                return HandlerOutcome("rejected", error=exc, retries=retries)
            retries += 1
            yield Wait(wait)
        except Exception as exc:
            # EventNotSupported, InvalidEventPayload, ValidationError (Segment's
            # permanent errors) and any other exception: discarded and reported.
            return HandlerOutcome("rejected", error=exc, retries=retries)


def run_handler(
    handler: Handler,
    event: Any,
    settings: HandlerSettings,
    retry: HandlerRetry,
    sleep: Callable[[float], None],
) -> HandlerOutcome:
    """:func:`handler_flow` driven to its end, waiting with ``sleep``."""
    flow = handler_flow(handler, event, settings, retry)
    try:
        while True:
            sleep(next(flow).seconds)
    except StopIteration as stop:
        outcome: HandlerOutcome = stop.value
        return outcome
