"""lago-segment: forward Segment-shaped usage events to the Lago billing API.

The flow, one module per stage::

    Segment message  ->  events.SegmentEvent      (parse, validate)
                     ->  mapping.MappingSpec      (which Lago events it becomes)
                     ->  lago.LagoEvent           (validated Lago wire shape)
                     ->  client.LagoClient        (batch, retry, deliver)

Everything a user needs is importable from here.
"""

from ._version import __version__
from .errors import (
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
    "Delete",
    "DropEvent",
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
    "RetryError",
    "Screen",
    "SegmentEvent",
    "Track",
    "ValidationError",
    "iter_events",
    "parse_batch",
    "parse_event",
    "__version__",
]
