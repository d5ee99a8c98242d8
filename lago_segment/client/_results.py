"""The result types of ``send_batch`` (public in :mod:`lago_segment.client`)."""

from __future__ import annotations

import attrs

from lago_segment.errors import LagoAPIError, LagoTransportError
from lago_segment.lago import LagoEvent

__all__ = ["BatchResult", "DeliveryFailure"]


@attrs.frozen(slots=True)
class DeliveryFailure:
    """One event Lago did not store, and why."""

    event: LagoEvent
    """The event that was not delivered."""
    error: LagoAPIError | LagoTransportError
    """What went wrong: Lago's answer (with its ``error_details`` for this event) or the
    transport failure that outlasted the retries."""
    permanent: bool
    """True when resending the same event can never succeed (400, 401, 403, 404, 422);
    False when it failed only because the retries ran out (429, 5xx, timeouts, connection
    errors, answers over ``max_response_bytes``)."""


@attrs.frozen(slots=True)
class BatchResult:
    """What happened to every event given to ``send_batch``.

    Every event lands in exactly one of :attr:`delivered`, :attr:`duplicates`
    and :attr:`failed`, in the order given.
    """

    delivered: tuple[LagoEvent, ...] = ()
    """Events Lago stored in this call."""
    duplicates: tuple[LagoEvent, ...] = ()
    """Events Lago already had (``transaction_id: value_already_exist``): delivered earlier,
    e.g. by a request whose response was lost."""
    failed: tuple[DeliveryFailure, ...] = ()
    """Events Lago did not store, each with its error."""
    retries: int = 0
    """How many HTTP requests were retried while sending."""

    @property
    def ok(self) -> bool:
        """True when nothing failed (duplicates count as delivered)."""
        return not self.failed
