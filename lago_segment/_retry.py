"""The retry vocabulary shared by the clients and the forwarders (stamina's).

:class:`RetryPolicy` says how often and how long to retry; :func:`set_testing`
turns every wait off at once, for tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

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
        return backoff(
            attempt,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            wait_jitter=self.wait_jitter,
        )


def backoff(
    attempt: int,
    *,
    wait_initial: float,
    wait_max: float,
    wait_jitter: float,
    wait_exp_base: float = 2.0,
) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): stamina's formula.

    ``min(wait_max, wait_initial * wait_exp_base ** (attempt - 1) + uniform(0,
    wait_jitter))``: the jitter is inside the cap, so no wait exceeds
    ``wait_max``. The one backoff of the library: the clients'
    :class:`RetryPolicy` and the forwarders' handler retries both use it.
    """
    exp = wait_initial * wait_exp_base ** (attempt - 1)
    return float(min(wait_max, exp + random.uniform(0, wait_jitter)))
