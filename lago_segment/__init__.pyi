"""The public names of lago_segment, each written once (see lago_segment/_lazy.py).

Type checkers read this stub; at run time ``attach_stub`` reads the same
imports as the table of what to load on first use.
"""

from ._version import __version__ as __version__
from .client import (
    EU_API_URL as EU_API_URL,
    US_API_URL as US_API_URL,
    AsyncLagoClient as AsyncLagoClient,
    BatchResult as BatchResult,
    DeliveryFailure as DeliveryFailure,
    LagoClient as LagoClient,
    RateLimitInfo as RateLimitInfo,
    RetryPolicy as RetryPolicy,
)
from .errors import (
    ClientClosedError as ClientClosedError,
    ConfigurationError as ConfigurationError,
    DropEvent as DropEvent,
    EventNotSupported as EventNotSupported,
    ForwarderClosedError as ForwarderClosedError,
    ForwarderError as ForwarderError,
    HandlerError as HandlerError,
    InvalidEventPayload as InvalidEventPayload,
    InvalidLagoEvent as InvalidLagoEvent,
    LagoAPIError as LagoAPIError,
    LagoAuthenticationError as LagoAuthenticationError,
    LagoConnectionError as LagoConnectionError,
    LagoNotFoundError as LagoNotFoundError,
    LagoRateLimitError as LagoRateLimitError,
    LagoResponseTooLargeError as LagoResponseTooLargeError,
    LagoSegmentError as LagoSegmentError,
    LagoServerError as LagoServerError,
    LagoTimeoutError as LagoTimeoutError,
    LagoTransportError as LagoTransportError,
    LagoValidationError as LagoValidationError,
    MappingError as MappingError,
    QueueFullError as QueueFullError,
    RetryError as RetryError,
    SpecError as SpecError,
    SpoolError as SpoolError,
    ValidationError as ValidationError,
)
from .events import (
    Alias as Alias,
    Delete as Delete,
    Group as Group,
    Identify as Identify,
    Page as Page,
    Screen as Screen,
    SegmentEvent as SegmentEvent,
    Track as Track,
    iter_events as iter_events,
    parse_batch as parse_batch,
    parse_event as parse_event,
)
from .forwarder import (
    AsyncForwarder as AsyncForwarder,
    Forwarder as Forwarder,
    ForwarderStats as ForwarderStats,
    ForwardingFailure as ForwardingFailure,
    HandlerRetry as HandlerRetry,
    HandlerSettings as HandlerSettings,
)
from .lago import LagoEvent as LagoEvent
from .mapping import (
    AmbiguousFQLWarning as AmbiguousFQLWarning,
    MappingSpec as MappingSpec,
)

# Deprecated aliases (they warn at run time, through attach_stub's `deprecated`).
ForwardingError = ForwardingFailure
Settings = HandlerSettings
