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
from .lago import LagoEvent

__all__ = [
    "DropEvent",
    "EventNotSupported",
    "ForwarderClosedError",
    "ForwarderError",
    "HandlerError",
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
    "QueueFullError",
    "RetryError",
    "ValidationError",
    "__version__",
]
