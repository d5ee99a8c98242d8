"""How failures are reported, and how a failure names its event.

The webhook receiver and the analytics-python hook accept anything with a
``forward(event)`` method (:class:`~lago_segment._types.SupportsForward`): the library's
``Forwarder`` and ``AsyncForwarder``, or a test double. When forwarding fails
they never let the error escape into the host's code path; they hand it to an
error callback chosen by :func:`error_reporter`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lago_segment._types import ErrorCallback
    from lago_segment.events import SegmentEvent

__all__ = ["error_reporter", "log_fields", "message_id_of", "segment_type"]

logger = logging.getLogger("lago_segment")


def log_fields(
    message_id: str | None, rule: str | None, transaction_id: str | None
) -> dict[str, str | None]:
    """The ``extra`` of the library's log records about one event, for JSON log handlers."""
    return {"message_id": message_id, "rule": rule, "transaction_id": transaction_id}


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
            segment_type(event),
            message_id_of(event),
            error,
        )

    return report


def segment_type(event: Any) -> str | None:
    """The Segment ``type`` of a raw or parsed event, if it is a string."""
    kind = event.get("type") if isinstance(event, Mapping) else getattr(event, "type", None)
    return kind if isinstance(kind, str) else None


def message_id_of(event: Any) -> str | None:
    """The Segment messageId of a raw or parsed event, if it has one."""
    if isinstance(event, Mapping):
        mid = event.get("messageId")
        return mid if isinstance(mid, str) else None
    return getattr(event, "message_id", None)
