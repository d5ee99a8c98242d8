"""What FakeLago answers: Lago's checks of one event, its error bodies and its rendering.

The rules, as Lago's events endpoints apply them: known keys kept and the
rest dropped, the three identifiers mandatory, a Unix-seconds timestamp,
flat scalar properties, a decimal amount, and one event per subscription and
transaction id.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from lago_segment.testing._fake_lago import Fault

__all__ = ["Outcome", "check_event", "error", "iso", "render_event", "validation_error"]

# Lago's own list, written out here on purpose rather than taken from
# lago_segment.lago: a fake that shares the library's constants could not
# catch the library's mistakes.
_KNOWN_KEYS = (
    "transaction_id",
    "external_subscription_id",
    "code",
    "timestamp",
    "properties",
    "precise_total_amount_cents",
)
_UNIX_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


@attrs.frozen(slots=True)
class Outcome:
    """One answer of the fake: a status and a JSON body, or a fault instead."""

    status: int = 200
    payload: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    fault: Fault | None = None  # TIMEOUT or DROP: no response at all


def error(status: int, error: str, **extra: Any) -> Outcome:
    """An error answer with Lago's body (``status``, ``error`` and any extra keys)."""
    return Outcome(status, {"status": status, "error": error, **extra})


def validation_error(details: Mapping[str, Any]) -> Outcome:
    """Lago's 422 ``validation_errors`` answer with ``error_details``."""
    return error(
        422, "Unprocessable Entity", code="validation_errors", error_details=dict(details)
    )


def iso(timestamp: Any) -> str:
    """Unix seconds as Lago renders a time (ISO 8601, milliseconds, ``Z``)."""
    instant = datetime.fromtimestamp(float(timestamp), tz=timezone.utc)
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_event(
    raw: object, stored: set[tuple[str, str]], seen: set[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check one event as Lago does: the known keys kept, and the errors by field.

    ``stored`` holds the (subscription, transaction id) pairs already stored,
    ``seen`` those of this request's earlier events (it gains this one's).
    """
    if not isinstance(raw, dict):
        return {}, {"event": ["invalid_type"]}
    # Lago keeps known keys and silently drops the rest.
    event = {key: raw[key] for key in _KNOWN_KEYS if key in raw}
    errors: dict[str, list[str]] = {}
    for key in ("transaction_id", "external_subscription_id", "code"):
        value = event.get(key)
        if not isinstance(value, str) or not value:
            errors[key] = ["value_is_mandatory"]
    timestamp = event.get("timestamp")
    if timestamp is None:
        event["timestamp"] = int(time.time())  # Lago: time of reception
    elif isinstance(timestamp, bool) or not (
        isinstance(timestamp, (int, float))
        or (isinstance(timestamp, str) and _UNIX_SECONDS.fullmatch(timestamp))
    ):
        errors["timestamp"] = ["invalid_format"]
    properties = event.get("properties")
    if properties is not None and not (
        isinstance(properties, dict)
        and all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool)
            for v in properties.values()
        )
    ):
        errors["properties"] = ["invalid_value"]
    amount = event.get("precise_total_amount_cents")
    if amount is not None and not _is_decimal(amount):
        errors["precise_total_amount_cents"] = ["invalid_value"]
    if "transaction_id" not in errors and "external_subscription_id" not in errors:
        identity = (event["external_subscription_id"], event["transaction_id"])
        if identity in stored or identity in seen:
            errors.setdefault("transaction_id", []).append("value_already_exist")
        seen.add(identity)
    return event, errors


def render_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A stored event as Lago renders it in a 200 body."""
    return {
        "lago_id": str(uuid.uuid4()),
        "transaction_id": event["transaction_id"],
        "lago_customer_id": None,
        "code": event["code"],
        "timestamp": iso(event["timestamp"]),
        "precise_total_amount_cents": event.get("precise_total_amount_cents"),
        "properties": event.get("properties") or {},
        "lago_subscription_id": None,
        "external_subscription_id": event["external_subscription_id"],
        "created_at": iso(time.time()),
    }


def _is_decimal(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    try:
        return Decimal(str(value)).is_finite()
    except InvalidOperation:
        return False
