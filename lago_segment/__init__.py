"""lago-segment: forward Segment-shaped usage events to the Lago billing API.

The flow, one module per stage::

    Segment message  ->  events.SegmentEvent      (parse, validate)
                     ->  mapping.MappingSpec      (which Lago events it becomes)
                     ->  lago.LagoEvent           (validated Lago wire shape)
                     ->  client.LagoClient        (batch, retry, deliver)
                     ->  forwarder.Forwarder      (background batching, spool)

Everything a user needs is importable from here. The exception tree is
imported at once; every other name is loaded on first use (PEP 562), so that
``import lago_segment.testing`` (and the pytest plugin it backs) or the CLI's
``--help`` do not pay for httpx and the mapping compiler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import attach
from ._version import __version__
from .errors import (
    ClientClosedError,
    ConfigurationError,
    DropEvent,
    EventNotSupported,
    ForwarderClosedError,
    ForwarderError,
    HandlerError,
    InvalidEventPayload,
    InvalidLagoEvent,
    LagoAPIError,
    LagoAuthenticationError,
    LagoConnectionError,
    LagoNotFoundError,
    LagoRateLimitError,
    LagoResponseTooLargeError,
    LagoSegmentError,
    LagoServerError,
    LagoTimeoutError,
    LagoTransportError,
    LagoValidationError,
    MappingError,
    QueueFullError,
    RetryError,
    SpecError,
    SpoolError,
    ValidationError,
)

if TYPE_CHECKING:
    from .client import (
        EU_API_URL,
        US_API_URL,
        AsyncLagoClient,
        BatchResult,
        DeliveryFailure,
        LagoClient,
        RateLimitInfo,
        RetryPolicy,
    )
    from .events import (
        Alias,
        Delete,
        Group,
        Identify,
        Page,
        Screen,
        SegmentEvent,
        Track,
        iter_events,
        parse_batch,
        parse_event,
    )
    from .forwarder import (
        AsyncForwarder,
        Forwarder,
        ForwarderStats,
        ForwardingFailure,
        HandlerRetry,
        HandlerSettings,
        Settings,
    )
    from .lago import (
        LagoEvent,
    )
    from .mapping import (
        AmbiguousFQLWarning,
        MappingSpec,
    )

_LAZY: dict[str, str] = {
    "AsyncForwarder": ".forwarder",
    "Forwarder": ".forwarder",
    "ForwarderStats": ".forwarder",
    "ForwardingFailure": ".forwarder",
    "HandlerRetry": ".forwarder",
    "HandlerSettings": ".forwarder",
    "Settings": ".forwarder",
    "EU_API_URL": ".client",
    "US_API_URL": ".client",
    "AsyncLagoClient": ".client",
    "BatchResult": ".client",
    "DeliveryFailure": ".client",
    "LagoClient": ".client",
    "RateLimitInfo": ".client",
    "RetryPolicy": ".client",
    "Alias": ".events",
    "Delete": ".events",
    "Group": ".events",
    "Identify": ".events",
    "Page": ".events",
    "Screen": ".events",
    "SegmentEvent": ".events",
    "Track": ".events",
    "iter_events": ".events",
    "parse_batch": ".events",
    "parse_event": ".events",
    "LagoEvent": ".lago",
    "AmbiguousFQLWarning": ".mapping",
    "MappingSpec": ".mapping",
}

__all__ = [
    "Alias",
    "AmbiguousFQLWarning",
    "AsyncForwarder",
    "AsyncLagoClient",
    "BatchResult",
    "ClientClosedError",
    "ConfigurationError",
    "Delete",
    "DeliveryFailure",
    "DropEvent",
    "EU_API_URL",
    "EventNotSupported",
    "Forwarder",
    "ForwarderClosedError",
    "ForwarderError",
    "ForwarderStats",
    "ForwardingFailure",
    "Group",
    "HandlerError",
    "HandlerRetry",
    "HandlerSettings",
    "Identify",
    "InvalidEventPayload",
    "InvalidLagoEvent",
    "LagoAPIError",
    "LagoAuthenticationError",
    "LagoClient",
    "LagoConnectionError",
    "LagoEvent",
    "LagoNotFoundError",
    "LagoRateLimitError",
    "LagoResponseTooLargeError",
    "LagoSegmentError",
    "LagoServerError",
    "LagoTimeoutError",
    "LagoTransportError",
    "LagoValidationError",
    "MappingError",
    "MappingSpec",
    "Page",
    "QueueFullError",
    "RateLimitInfo",
    "RetryError",
    "RetryPolicy",
    "Screen",
    "SegmentEvent",
    "Settings",
    "SpecError",
    "SpoolError",
    "Track",
    "US_API_URL",
    "ValidationError",
    "iter_events",
    "parse_batch",
    "parse_event",
    "__version__",
]


__getattr__, __dir__ = attach(__name__, _LAZY, deprecated={"ForwardingError": "ForwardingFailure"})
