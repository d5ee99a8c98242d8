"""lago-segment: forward Segment-shaped usage events to the Lago billing API.

The flow, one module per stage::

    Segment message  ->  events.SegmentEvent      (parse, validate)
                     ->  mapping.MappingSpec      (which Lago events it becomes)
                     ->  lago.LagoEvent           (validated Lago wire shape)
                     ->  client.LagoClient        (batch, retry, deliver)

Everything a user needs is importable from here.
"""

from ._version import __version__
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
from .errors import (
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
    LagoSegmentError,
    LagoServerError,
    LagoTimeoutError,
    LagoTransportError,
    LagoValidationError,
    MappingError,
    QueueFullError,
    RetryError,
    ValidationError,
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
from .lago import LagoEvent
from .mapping import AmbiguousFQLWarning, MappingSpec

__all__ = [
    "Alias",
    "AmbiguousFQLWarning",
    "AsyncLagoClient",
    "BatchResult",
    "ConfigurationError",
    "Delete",
    "DeliveryFailure",
    "DropEvent",
    "EU_API_URL",
    "EventNotSupported",
    "ForwarderClosedError",
    "ForwarderError",
    "Group",
    "HandlerError",
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
    "Track",
    "US_API_URL",
    "ValidationError",
    "iter_events",
    "parse_batch",
    "parse_event",
    "__version__",
]
