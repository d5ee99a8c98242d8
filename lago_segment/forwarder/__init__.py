"""Forwarders: the in-process replacement for a Segment destination function.

``forward(event)`` maps a Segment event on the caller's thread (spec rules,
then the handler for its type) and queues the Lago events; a background sender
delivers them in batches through a :class:`~lago_segment.client.LagoClient`
(:class:`Forwarder`, a thread) or an ``AsyncLagoClient`` (:class:`AsyncForwarder`,
one asyncio task). See ``docs/forwarders.md`` for the delivery guarantees.

>>> forwarder = Forwarder(client, spec=spec)          # doctest: +SKIP
>>> forwarder.forward({"type": "track", ...})         # doctest: +SKIP
>>> forwarder.close()                                 # doctest: +SKIP

The private modules, in the order an event flows through them:

- ``_options``: the options both forwarders take, validated once;
- ``_base``, ``_sync``, ``_async``: the shared base class and the two shells
  (threads, asyncio tasks) that only wait and post;
- ``_state``: everything one forwarder knows, without sockets, its steps in
  ``_intake`` (Segment event in, queued Lago events out), ``_sender_flow`` (the
  senders' decisions) and ``_outcomes`` (what a batch's result means);
- ``_handlers``: Functions-style handlers; ``_stores``/``_spool``: where queued
  events wait (memory, SQLite); ``_records``: failure records and counters.
"""

from __future__ import annotations

from lago_segment._lazy import attach
from lago_segment._types import Mapper
from lago_segment.forwarder._async import AsyncForwarder
from lago_segment.forwarder._handlers import Handler, HandlerRetry, HandlerSettings, Settings
from lago_segment.forwarder._options import DEFAULT_MAX_IN_FLIGHT
from lago_segment.forwarder._records import (
    FailureCallback,
    ForwarderStats,
    ForwardingFailure,
    log_error,
)
from lago_segment.forwarder._sync import Forwarder

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "AsyncForwarder",
    "FailureCallback",
    "Forwarder",
    "ForwarderStats",
    "ForwardingFailure",
    "Handler",
    "HandlerRetry",
    "HandlerSettings",
    "Mapper",
    "Settings",
    "log_error",
]

# ForwardingError was renamed ForwardingFailure (a record, not an exception);
# ErrorCallback was renamed FailureCallback (apart from the integrations'
# ``(exception, event)`` ErrorCallback in lago_segment.webhook).
__getattr__, __dir__ = attach(
    __name__,
    {},
    deprecated={"ForwardingError": "ForwardingFailure", "ErrorCallback": "FailureCallback"},
)
