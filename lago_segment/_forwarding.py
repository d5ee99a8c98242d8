"""What the integrations need from a forwarder, and how they report a failure.

The webhook receiver and the analytics-python hook accept anything with a
``forward(event)`` method (:class:`SupportsForward`): the library's
``Forwarder`` and ``AsyncForwarder``, or a test double. When forwarding fails
they never let the error escape into the host's code path; they hand it to an
error callback chosen by :func:`error_reporter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from lago_segment.events import SegmentEvent

__all__ = ["ErrorCallback", "SupportsForward", "error_reporter"]

logger = logging.getLogger("lago_segment")

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


def error_reporter(forwarder: object, on_error: ErrorCallback | None = None) -> ErrorCallback:
    """Choose where a failure is reported, and make sure reporting itself never raises.

    In order: the explicit ``on_error``; else the forwarder's public ``report``
    method if it has one (duck typing: ``forwarder.report(error, event)``,
    i.e. the forwarder's own error callbacks); else an ``ERROR`` record on the
    ``lago_segment`` logger naming the event's type and messageId (never its
    content, which may hold personal data).
    """
    target: ErrorCallback | None = on_error or getattr(forwarder, "report", None)

    def report(error: Exception, event: SegmentEvent | Mapping[str, Any]) -> None:
        if target is not None:
            try:
                target(error, event)
            except Exception:
                logger.exception("the error callback raised while reporting %r", error)
            else:
                return
        logger.error(
            "could not forward Segment %s event (messageId %s): %s",
            *_describe(event),
            error,
        )

    return report


def _describe(event: SegmentEvent | Mapping[str, Any]) -> tuple[object, object]:
    if isinstance(event, Mapping):
        return event.get("type"), event.get("messageId")
    return getattr(event, "type", None), getattr(event, "message_id", None)
