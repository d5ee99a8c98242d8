"""The protocols the stages share (as httpx keeps its ``_types.py``).

- :class:`Mapper`: what a forwarder needs from a mapping spec.
- :class:`SupportsForward` and :data:`ErrorCallback`: what the integrations
  (the webhook receiver, the analytics-python hook) need from a forwarder,
  and how they report a failure.
- :class:`SyncClient` / :class:`AsyncClient`: what a forwarder needs from a
  client (a :class:`~lago_segment.client.LagoClient`, a Kafka sink, a fake).
- :data:`SEGMENT_CALL_TYPES`: Segment's call types.
- :data:`US_API_URL` / :data:`EU_API_URL`: Lago Cloud's origins (the client's
  default, the CLI's and the Kafka consumer's ``--api-url`` default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from lago_segment.client._results import BatchResult
    from lago_segment.events import SegmentEvent
    from lago_segment.lago import LagoEvent

__all__ = [
    "EU_API_URL",
    "SEGMENT_CALL_TYPES",
    "US_API_URL",
    "AsyncClient",
    "ErrorCallback",
    "Mapper",
    "SupportsForward",
    "SyncClient",
]

#: Segment's call types, in Segment's order: the only list of them (the
#: parser's models, the handlers, the webhook receiver and the test factory
#: all read it).
SEGMENT_CALL_TYPES = ("track", "identify", "group", "page", "screen", "alias", "delete")

US_API_URL = "https://api.getlago.com"
"""Lago Cloud's US origin: the default ``api_url``."""

EU_API_URL = "https://api.eu.getlago.com"
"""Lago Cloud's EU origin."""


class Mapper(Protocol):
    """What a forwarder needs from a mapping spec (:class:`~lago_segment.mapping.MappingSpec`)."""

    def map(self, event: SegmentEvent | Mapping[str, Any], /) -> list[LagoEvent]:
        """Return the Lago events ``event`` becomes (empty when no rule matches)."""
        ...


ErrorCallback = Callable[[Exception, "SegmentEvent | Mapping[str, Any]"], None]
"""Called with the error and the Segment event (parsed, or the raw message) it concerns."""


@runtime_checkable
class SupportsForward(Protocol):
    """Anything that takes Segment events: ``Forwarder``, ``AsyncForwarder``, a fake.

    ``forward`` is a plain (non-async) call that returns quickly. It may raise
    ``InvalidEventPayload``, ``MappingError`` or a ``HandlerError`` when it
    rejects the event, and ``ForwarderError`` (queue full, closed) or anything
    else when it cannot take it right now.
    """

    def forward(self, event: SegmentEvent | Mapping[str, Any], /) -> None:
        """Map the event and enqueue what it becomes for delivery to Lago."""


class SyncClient(Protocol):
    """What :class:`~lago_segment.Forwarder` needs from its client."""

    def send_batch(self, events: Iterable[LagoEvent], /) -> BatchResult: ...


class AsyncClient(Protocol):
    """What :class:`~lago_segment.AsyncForwarder` needs from its client."""

    def send_batch(self, events: Iterable[LagoEvent], /) -> Awaitable[BatchResult]: ...
