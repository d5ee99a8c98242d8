"""What the metrics are called: the meter, each instrument and each attribute, with its meaning.

The vocabulary of :mod:`lago_segment._metrics` (which records) and of
:mod:`lago_segment.otel` (which publishes it); the docs' tables are built from
:data:`INSTRUMENTS` and :data:`ATTRIBUTES`. Importing it costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ATTRIBUTES", "INSTRUMENTS", "METER_NAME", "OUTCOMES"]

METER_NAME = "lago_segment"
"""The meter every instrument is created on."""

OUTCOMES = (
    "mapped",
    "skipped",
    "discarded",
    "rejected",
    "enqueued",
    "dropped",
    "delivered",
    "duplicate",
    "failed",
    "retried",
)
"""The values of the ``lago_segment.event.outcome`` attribute."""

EVENTS = "lago_segment.events"
REQUEST_DURATION = "lago_segment.client.request.duration"
BATCH_SIZE = "lago_segment.client.batch.size"
QUEUE_DEPTH = "lago_segment.forwarder.queue.depth"
SPOOL_DEPTH = "lago_segment.forwarder.spool.depth"
IN_FLIGHT = "lago_segment.forwarder.batches.in_flight"

INSTRUMENTS: Mapping[str, tuple[str, str, str]] = {
    EVENTS: (
        "counter (observable)",
        "{event}",
        "Events by outcome: Segment events skipped, discarded or rejected; Lago events "
        "mapped, enqueued, dropped, delivered, duplicate, failed or retried.",
    ),
    REQUEST_DURATION: ("histogram", "s", "Duration of one HTTP request to Lago."),
    BATCH_SIZE: ("histogram", "{event}", "Lago events in one batch request."),
    QUEUE_DEPTH: (
        "gauge (observable)",
        "{event}",
        "Lago events held in a forwarder's memory queue (in flight included).",
    ),
    SPOOL_DEPTH: (
        "gauge (observable)",
        "{event}",
        "Lago events held in a forwarder's spool file (in flight included).",
    ),
    IN_FLIGHT: ("gauge (observable)", "{batch}", "Batches a forwarder is sending right now."),
}
"""Every instrument: name -> (kind, unit, description). The docs' table is built from it."""

FORWARDER = "lago_segment.forwarder.name"
OUTCOME = "lago_segment.event.outcome"
CODE = "lago.event.code"
ERROR_TYPE = "error.type"
LAGO_ERROR_CODE = "lago.error.code"
STATUS = "http.response.status_code"
PATH = "url.path"

ATTRIBUTES: Mapping[str, str] = {
    FORWARDER: "The forwarder's name (``lago_segment.otel.name_forwarder``; default ``default``).",
    OUTCOME: "What happened to the event: one of " + ", ".join(OUTCOMES) + ".",
    CODE: "The Lago event's ``code`` (absent for Segment-level outcomes).",
    ERROR_TYPE: "On failures: the exception class, e.g. ``LagoValidationError``.",
    LAGO_ERROR_CODE: "On failures Lago explained: its error code, e.g. ``value_is_mandatory``.",
    STATUS: "On request durations: Lago's HTTP status (absent when no answer came).",
    PATH: "On request durations and batch sizes: the API path, e.g. ``/api/v1/events/batch``.",
}
"""Every attribute the instruments carry: name -> meaning."""
