"""Sync and async clients for Lago's events API.

Both clients are thin shells over one set of I/O-free flows: they only post
bytes and sleep; batching, retries and the reading of Lago's answers are
shared, so :class:`LagoClient` and :class:`AsyncLagoClient` behave
identically.

>>> from lago_segment.client import LagoClient
>>> with LagoClient("my-api-key") as lago:  # doctest: +SKIP
...     result = lago.send_batch(events)
...     for failure in result.failed:
...         print(failure.event.transaction_id, failure.error)

The package, in the order a request goes through it:

- ``_sync`` / ``_async``: :class:`LagoClient` and :class:`AsyncLagoClient`,
  each with the driver that runs the flows with its kind of I/O;
- ``_options``: ``ClientOptions``, the options both shells take, checked once;
- ``_base``: what both shells share (connection pool options, budgets, repr);
- ``_flows``: ``ClientFlows``, the validated settings and the I/O-free flows
  (send, send_batch, estimate_fees) that yield ``Call`` and ``Wait`` steps;
- ``_batching``: batch planning and the JSON request bodies;
- ``_deadline``: whole-exchange deadlines (socket wrappers, ``wait_for``);
- ``_responses``: reading and classifying Lago's answers (bounded reads,
  errors, rate limits, retry hints);
- ``_results``: :class:`BatchResult` and :class:`DeliveryFailure`;
- ``_urls`` / ``_redact``: API origins and secret scrubbing.
"""

from __future__ import annotations

from lago_segment._retry import RetryPolicy

from ._async import AsyncLagoClient
from ._responses import DEFAULT_MAX_RESPONSE_BYTES, RateLimitInfo
from ._results import BatchResult, DeliveryFailure
from ._sync import LagoClient
from ._urls import EU_API_URL, US_API_URL

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "EU_API_URL",
    "US_API_URL",
    "AsyncLagoClient",
    "BatchResult",
    "DeliveryFailure",
    "LagoClient",
    "RateLimitInfo",
    "RetryPolicy",
]
