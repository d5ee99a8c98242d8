"""The retry vocabulary shared by the clients and the forwarders (stamina's).

:class:`RetryPolicy` says how often and how long the clients retry a request;
the forwarders' ``HandlerRetry`` says the same of a handler, with the same six
fields (``attempts``, ``timeout``, ``wait_initial``, ``wait_max``,
``wait_jitter``, ``wait_exp_base``), validated here once (the ``*_field``
functions) and waited by the one :func:`backoff`. :func:`set_testing` turns
every wait off at once, for tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from .errors import (
    ConfigurationError,
)

_testing = False


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


def _number(
    name: str, *, minimum: float = 0, inclusive: bool = True, optional: bool = False
) -> Callable[[Any, Any, Any], None]:
    """An attrs validator: ``name`` is a number >= (or >) ``minimum``, or None if ``optional``."""

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(name, f"must be a number, not {type(value).__name__}")
        if value < minimum or (value == minimum and not inclusive):
            raise ConfigurationError(
                name, f"must be {'>=' if inclusive else '>'} {minimum}, not {value}"
            )

    return check


# The six fields of the vocabulary, one validator each; every class that
# speaks it declares them with these (its own defaults) and the same docs.


def attempts_field(default: int) -> Any:
    """The ``attempts`` field: how many calls at most, the first included (> 0)."""
    return attrs.field(default=default, validator=_number("attempts", inclusive=False))


def timeout_field(default: float | None, *, kw_only: bool = False) -> Any:
    """The ``timeout`` field: the overall deadline in seconds (>= 0), or None for none."""
    return attrs.field(
        default=default, validator=_number("timeout", optional=True), kw_only=kw_only
    )


def wait_field(name: str, default: float) -> Any:
    """The ``wait_initial``, ``wait_max`` or ``wait_jitter`` field: seconds (>= 0)."""
    return attrs.field(default=default, validator=_number(name))


def wait_exp_base_field(default: float, *, kw_only: bool = False) -> Any:
    """The ``wait_exp_base`` field: what each backoff wait is multiplied by (>= 1)."""
    return attrs.field(
        default=default, validator=_number("wait_exp_base", minimum=1), kw_only=kw_only
    )


@attrs.frozen(slots=True)
class RetryPolicy:
    """When and how long to retry a request (stamina's vocabulary).

    Retried: connect errors, timeouts, dropped connections, 408, 429, 500, 502,
    503 and 504. Never retried: 400, 401, 403, 404, 422 (the same request
    cannot succeed). A retry resends the same body, hence the same
    transaction_ids and timestamps: it can never bill twice.

    The wait before retry *n* is ``min(wait_max, wait_initial * wait_exp_base
    ** (n - 1) + uniform(0, wait_jitter))``, unless Lago said how long to wait
    (``Retry-After`` or ``X-RateLimit-Reset``): then that. No wait ever ends
    past the overall ``timeout``; when it would, the retries stop there. The
    last attempt is given only what is left of the deadline.

    For tests, pass ``sleep`` (called instead of sleeping, e.g. to record the
    waits) and ``clock`` (a monotonic clock in seconds), or turn waiting off
    globally with :func:`lago_segment.testing.set_testing`.

    >>> RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.5)
    RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.5, wait_max=5.0, wait_jitter=1.0, \
wait_exp_base=2.0)
    """

    attempts: int = attempts_field(10)
    """How many times a call is made at most, the first included (1 means no retry)."""
    timeout: float | None = timeout_field(45.0)
    """Overall deadline in seconds for a call and all its retries, waits included
    (None: none): no wait ends past it, the retries stop there."""
    wait_initial: float = wait_field("wait_initial", 0.1)
    """The first backoff wait, in seconds; it grows by ``wait_exp_base`` on each retry."""
    wait_max: float = wait_field("wait_max", 5.0)
    """The longest backoff wait, in seconds (server-given waits may be longer)."""
    wait_jitter: float = wait_field("wait_jitter", 1.0)
    """A random 0..wait_jitter seconds added to each backoff wait (within ``wait_max``)."""
    wait_exp_base: float = wait_exp_base_field(2.0, kw_only=True)
    """What each backoff wait is multiplied by for the next (2: doubling; 1: constant)."""
    sleep: Callable[[float], None] | None = attrs.field(default=None, eq=False, repr=False)
    """Called instead of sleeping (both clients; it must not block in the async one)."""
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)
    """The monotonic clock the deadline is measured with."""

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), without a server hint."""
        return backoff(self, attempt)


class Schedule(Protocol):
    """What :func:`backoff` reads: :class:`RetryPolicy` and ``HandlerRetry`` both are one."""

    @property
    def wait_initial(self) -> float: ...
    @property
    def wait_max(self) -> float: ...
    @property
    def wait_jitter(self) -> float: ...
    @property
    def wait_exp_base(self) -> float: ...


def backoff(retry: Schedule, attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): stamina's formula.

    ``min(wait_max, wait_initial * wait_exp_base ** (attempt - 1) + uniform(0,
    wait_jitter))``: the jitter is inside the cap, so no wait exceeds
    ``wait_max``. The one backoff of the library: the clients'
    :class:`RetryPolicy` and the forwarders' handler retries both use it.
    """
    exp = retry.wait_initial * retry.wait_exp_base ** (attempt - 1)
    return float(min(retry.wait_max, exp + random.uniform(0, retry.wait_jitter)))
