"""The forwarders' options, gathered and checked once: :class:`ForwarderOptions`.

:class:`~lago_segment.forwarder.Forwarder` and
:class:`~lago_segment.forwarder.AsyncForwarder` keep their explicit keyword
signatures (users and IDEs see every option with its docs) and build one of
these; the shared base class opens the store from it and the
:class:`~lago_segment.forwarder._state.ForwardingState` reads the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from lago_segment._types import Mapper
from lago_segment.errors import ConfigurationError
from lago_segment.forwarder._handlers import HandlerRetry, HandlerSettings
from lago_segment.forwarder._records import FailureCallback, log_error
from lago_segment.forwarder._spool import SpoolSync

#: Batches in flight at once by default: see "Throughput and latency" in
#: docs/forwarders.md (8 batches per 20 ms round trip stay below Lago Cloud's
#: 500 requests/s per organization, and within httpx's 20 kept-alive connections).
DEFAULT_MAX_IN_FLIGHT = 8

#: What ``forward()`` does when the queue or spool has no room.
OnFull = Literal["raise", "block", "drop"]


def _default_retry(value: HandlerRetry | None) -> HandlerRetry:
    return value or HandlerRetry()


@attrs.frozen(slots=True, kw_only=True)
class ForwarderOptions:
    """The options both forwarders share, validated once on construction.

    Raises :class:`~lago_segment.errors.ConfigurationError` (a ``ValueError``)
    naming the first bad option, in this order: ``flush_interval``,
    ``batch_size``, ``on_full``, ``mapping_errors``, ``max_in_flight``. The
    options only one shell has (``block_timeout``, ``flush_at_exit``, an
    asyncio forwarder's own ``sleep``) stay on that shell; ``spool_sync`` is
    checked by the spool that uses it.
    """

    spec: Mapper | None = None
    settings: HandlerSettings | Mapping[str, Any] | None = None
    """As given; :attr:`handler_settings` is the read-only object handlers get."""
    on_error: FailureCallback | Iterable[FailureCallback] | None = None
    """As given; :attr:`callbacks` is the tuple the forwarder calls."""
    batch_size: int = 100
    flush_interval: float = 1.0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_queue_size: int = 10_000
    on_full: OnFull = "raise"
    spool: str | os.PathLike[str] | None = None
    max_spool_events: int = 1_000_000
    spool_retry_wait: float = 1.0
    spool_sync: SpoolSync = "normal"
    mapping_errors: Literal["raise", "report"] = "raise"
    handler_retry: HandlerRetry = attrs.field(default=None, converter=_default_retry)
    sleep: Callable[[float], None] = time.sleep
    """How a handler's retries wait on the caller's thread."""
    clock: Callable[[], float] = time.monotonic
    """The senders' clock (tests pass a fake one)."""
    handler_settings: HandlerSettings = attrs.field(init=False)
    callbacks: tuple[FailureCallback, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.flush_interval <= 0:
            raise ConfigurationError(
                "flush_interval", f"must be positive, not {self.flush_interval}"
            )
        if not 1 <= self.batch_size <= 100:
            raise ConfigurationError(
                "batch_size", f"must be between 1 and 100 (Lago's limit), not {self.batch_size}"
            )
        if self.on_full not in ("raise", "block", "drop"):
            raise ConfigurationError(
                "on_full", f"must be 'raise', 'block' or 'drop', not {self.on_full!r}"
            )
        if self.mapping_errors not in ("raise", "report"):
            raise ConfigurationError(
                "mapping_errors", f"must be 'raise' or 'report', not {self.mapping_errors!r}"
            )
        max_in_flight = self.max_in_flight
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise ConfigurationError(
                "max_in_flight", f"must be an int, not {type(max_in_flight).__name__}"
            )
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight", f"must be >= 1, not {max_in_flight}")
        settings = self.settings
        if not isinstance(settings, HandlerSettings):
            settings = HandlerSettings(settings)
        on_error = self.on_error
        callbacks: tuple[FailureCallback, ...]
        if on_error is None:
            callbacks = (log_error,)
        elif callable(on_error):
            callbacks = (on_error,)
        else:
            callbacks = tuple(on_error)
        # The documented way to set fields of a frozen attrs class after __init__.
        object.__setattr__(self, "handler_settings", settings)
        object.__setattr__(self, "callbacks", callbacks)
