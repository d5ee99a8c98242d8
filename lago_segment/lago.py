"""The Lago usage event, validated when built and rendered exactly as Lago accepts it.

Lago's ``POST /api/v1/events`` is unforgiving: keys are snake_case only,
``timestamp`` is Unix seconds (an integer or a decimal string, never
ISO-8601), and property values are strings or numbers. :class:`LagoEvent`
checks all of that when it is constructed, so an event that exists is an
event Lago will accept (as far as its shape goes).

It also checks that every number fits what Lago stores: amounts and numeric
properties have at most :data:`MAX_INTEGER_DIGITS` digits before the decimal
point and :data:`MAX_DECIMAL_PLACES` after it (Lago's ``numeric(40,15)``
column for ``precise_total_amount_cents``), and Unix-second timestamps lie
between :data:`MIN_UNIX_SECONDS` and :data:`MAX_UNIX_SECONDS`. Those bounds
and :func:`number_problem` are importable from ``lago_segment.lago`` only.
See "Hostile input and what Lago can store" in ``docs/events.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from .errors import InvalidLagoEvent

__all__ = [
    "MAX_DECIMAL_PLACES",
    "MAX_INTEGER_DIGITS",
    "MAX_UNIX_SECONDS",
    "MIN_UNIX_SECONDS",
    "LagoEvent",
    "PropertyValue",
    "Timestamp",
    "number_problem",
]

#: A property value Lago accepts: a string or a number (never a bool or None).
PropertyValue = str | int | float | Decimal
#: An instant: an aware :class:`~datetime.datetime`, or Unix seconds.
Timestamp = datetime | int | float | Decimal

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Digits a number may have before its decimal point: Lago stores
#: ``precise_total_amount_cents`` as ``numeric(40,15)`` (Postgres) and
#: ``Decimal(40,15)`` (ClickHouse), so at most 40 - 15 = 25.
MAX_INTEGER_DIGITS = 25
#: Digits a number may have after its decimal point (trailing zeros aside):
#: the scale of those same columns. Lago would round finer digits away.
MAX_DECIMAL_PLACES = 15
#: The earliest instant a timestamp may be, in Unix seconds (0001-01-01T00:00:00Z,
#: the first instant :class:`~datetime.datetime` holds).
MIN_UNIX_SECONDS = -62_135_596_800
#: The latest instant a timestamp may be, in Unix seconds (9999-12-31T23:59:59Z).
MAX_UNIX_SECONDS = 253_402_300_799

_LIMIT = 10**MAX_INTEGER_DIGITS
_NEG_LIMIT = -_LIMIT
_FLOAT_LIMIT = float(_LIMIT)


def number_problem(value: int | float | Decimal) -> str | None:
    """Why Lago cannot store ``value`` exactly, or ``None`` when it can.

    A number must be finite, below 10**25 in magnitude
    (:data:`MAX_INTEGER_DIGITS`) and, for a :class:`~decimal.Decimal`, have
    at most 15 significant decimal places (:data:`MAX_DECIMAL_PLACES`). A
    float's precision is bounded by its type, so only its magnitude is
    checked. Decided from the number's exponent, never by rendering it:
    ``Decimal("1e999999999")`` is refused at once, where ``str()`` in plain
    notation would write a billion digits.

    >>> number_problem(Decimal("12.5")) is None
    True
    >>> number_problem(Decimal("1e999999999"))
    'has more than 25 digits before the decimal point (Lago stores numeric(40,15))'
    """
    if type(value) is int:
        if _NEG_LIMIT < value < _LIMIT:
            return None
        return _TOO_LARGE
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"must be a finite number, not {value!r}"
        return None if -_FLOAT_LIMIT < value < _FLOAT_LIMIT else _TOO_LARGE
    if isinstance(value, Decimal):
        if not value.is_finite():
            return f"must be a finite number, not {value!r}"
        if value.adjusted() >= MAX_INTEGER_DIGITS and value:
            return _TOO_LARGE
        _sign, digits, exponent = value.as_tuple()
        if exponent < -MAX_DECIMAL_PLACES:  # type: ignore[operator]
            # Trailing zeros written in the coefficient ("1.50000000000000000")
            # are not digits Lago would lose; a zero's exponent counts in full
            # (rendering 0E-999999999 in plain notation is as costly as 1E-...).
            zeros = len(digits) - len(bytes(digits).rstrip(b"\0")) if any(digits) else 0
            if exponent + zeros < -MAX_DECIMAL_PLACES:  # type: ignore[operator]
                return (
                    f"has more than {MAX_DECIMAL_PLACES} digits after the decimal point "
                    "(Lago stores numeric(40,15) and would round them away); "
                    "round it first, e.g. value.quantize(Decimal('1e-15'))"
                )
        return None
    # bool and anything else: the callers check types; int subclasses land here.
    return number_problem(int(value)) if isinstance(value, int) else None


_TOO_LARGE = (
    f"has more than {MAX_INTEGER_DIGITS} digits before the decimal point "
    "(Lago stores numeric(40,15))"
)


def _require_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidLagoEvent(name, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidLagoEvent(name, "must not be empty")
    _check_text(name, value)
    return value


def _check_text(field: str, value: str) -> None:
    # A lone UTF-16 surrogate (JSON's "\ud800") is not Unicode text: no UTF-8
    # form, so Lago cannot store it, and one in a batch request would fail
    # every event of it. Refused here, one event alone. Only non-ASCII text
    # gets here (str.isascii() is O(1) on the hot path).
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidLagoEvent(
            field,
            f"holds a lone UTF-16 surrogate ({value[exc.start]!r} at index {exc.start}): "
            "not valid Unicode text, which Lago cannot store",
        ) from None


def _check_number(field: str, value: int | float | Decimal) -> None:
    problem = number_problem(value)
    if problem is not None:
        raise InvalidLagoEvent(field, problem)


def _check_timestamp(value: object) -> Timestamp:
    if isinstance(value, bool) or not isinstance(value, (datetime, int, float, Decimal)):
        raise InvalidLagoEvent(
            "timestamp",
            f"must be an aware datetime or Unix seconds, not {type(value).__name__}",
        )
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidLagoEvent(
                "timestamp", "is a naive datetime: give it a timezone (e.g. UTC)"
            )
        return value
    if (isinstance(value, float) and not math.isfinite(value)) or (
        isinstance(value, Decimal) and not value.is_finite()
    ):
        raise InvalidLagoEvent("timestamp", f"must be a finite number, not {value!r}")
    # Compared, never rendered: Decimal("1e999999999") is refused at once.
    if not MIN_UNIX_SECONDS <= value <= MAX_UNIX_SECONDS:
        raise InvalidLagoEvent(
            "timestamp",
            f"is out of range: Unix seconds from {MIN_UNIX_SECONDS} (year 1) "
            f"to {MAX_UNIX_SECONDS} (year 9999)",
        )
    return value


def _copy_properties(value: object) -> dict[str, PropertyValue]:
    if not isinstance(value, Mapping):
        raise InvalidLagoEvent("properties", f"must be a mapping, not {type(value).__name__}")
    return dict(value)


def _check_property(key: object, item: object) -> None:
    if not isinstance(key, str):
        raise InvalidLagoEvent("properties", f"keys must be strings, not {key!r}")
    _check_text("properties", key)
    field = f"properties.{key}"
    if isinstance(item, bool) or not isinstance(item, (str, int, float, Decimal)):
        kind = "null" if item is None else type(item).__name__
        raise InvalidLagoEvent(
            field,
            f"is {kind}; Lago accepts only strings and numbers as property values "
            "(convert it explicitly, e.g. with @string in a mapping spec)",
        )
    if isinstance(item, str):
        _check_text(field, item)
    else:
        _check_number(field, item)


def _check_amount(value: object) -> Decimal | str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, Decimal, int)):
        raise InvalidLagoEvent(
            "precise_total_amount_cents",
            f"must be a Decimal or a decimal string, not {type(value).__name__}",
        )
    try:
        # An int is checked before it becomes a Decimal (huge ones convert slowly).
        number = value if isinstance(value, (Decimal, int)) else Decimal(value)
    except InvalidOperation:
        raise InvalidLagoEvent(
            "precise_total_amount_cents", f"is not a decimal number: {value!r}"
        ) from None
    _check_number("precise_total_amount_cents", number)
    return value if isinstance(value, (str, Decimal)) else Decimal(value)


# The converters of LagoEvent's fields, run in field order by the __init__ attrs
# generates: each checks its value and returns what the event keeps. The common,
# valid case is checked inline; the helpers run only to raise the precise error.
# (A hand-written __init__ measured no faster than this in the LagoEvent row of
# benchmarks/bench_mapping.py, so attrs generates it.)


# One named function per identifier, not one made by a factory: mypy's attrs
# plugin types only named functions as converters.
def _transaction_id(value: str) -> str:
    if type(value) is not str or not value.isascii() or not value.strip():
        _require_id("transaction_id", value)
    return value


def _external_subscription_id(value: str) -> str:
    if type(value) is not str or not value.isascii() or not value.strip():
        _require_id("external_subscription_id", value)
    return value


def _code(value: str) -> str:
    if type(value) is not str or not value.isascii() or not value.strip():
        _require_id("code", value)
    return value


def _timestamp(value: Timestamp) -> Timestamp:
    if type(value) is int:
        if not MIN_UNIX_SECONDS <= value <= MAX_UNIX_SECONDS:
            _check_timestamp(value)
    elif type(value) is not datetime or value.tzinfo is None or value.utcoffset() is None:
        _check_timestamp(value)
    return value


def _properties(value: Mapping[str, PropertyValue] | None) -> dict[str, PropertyValue]:
    if type(value) is dict:
        props = dict(value)
    else:
        props = {} if value is None else _copy_properties(value)
    for key, item in props.items():
        kind = type(item)
        if (
            type(key) is str
            and key.isascii()
            and ((kind is str and item.isascii()) or (kind is int and _NEG_LIMIT < item < _LIMIT))
        ):
            continue
        _check_property(key, item)
    return props


def _amount(value: Decimal | str | None) -> Decimal | str | None:
    return None if value is None else _check_amount(value)


def unix_seconds(value: Timestamp) -> int | str:
    """Render an instant as Lago wants it: Unix seconds, at millisecond precision.

    A whole second is an ``int``; anything else is a decimal string with three
    decimals (``"1651240791.123"``), never a float, so no digit is lost.
    Sub-millisecond parts are truncated toward the past, so the same instant
    always renders the same way (Lago dedupes on transaction_id + timestamp).

    >>> unix_seconds(datetime(2022, 4, 29, 14, 39, 51, 123456, tzinfo=timezone.utc))
    '1651243191.123'
    >>> unix_seconds(1651240791)
    1651240791
    """
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        delta = value - _EPOCH
        millis = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    else:
        exact = value if isinstance(value, Decimal) else Decimal(repr(value))
        millis = int((exact * 1000).to_integral_value(rounding="ROUND_FLOOR"))
    # The fraction is rendered from the magnitude: divmod() floors, so
    # -1 ms would otherwise read (-1, 999) and render "-1.999", not "-0.001".
    seconds, ms = divmod(abs(millis), 1000)
    sign = "-" if millis < 0 else ""
    if ms == 0:
        return millis // 1000
    return f"{sign}{seconds}.{ms:03d}"


def _render_property(value: PropertyValue) -> str | int | float:
    # Decimal has no JSON form that keeps every digit except a string; Lago
    # compares property values as strings anyway. Plain notation, never "1E+3":
    # ClickHouse's toDecimal128OrZero reads an exponent as 0. Bounded: the
    # constructor refused more than 25 integer digits or 15 decimal places.
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


@attrs.frozen(slots=True)
class LagoEvent:
    """One usage event for Lago's events API.

    Validated at construction (raises :class:`~lago_segment.InvalidLagoEvent`
    naming the field): ids and code are non-empty strings, the timestamp is an
    aware datetime or finite Unix seconds from year 1 to 9999, property
    values are strings or finite numbers (booleans and nulls are refused:
    Lago's API admits neither), and ``precise_total_amount_cents`` is a
    decimal number. Amounts and numeric properties must fit Lago's
    ``numeric(40,15)``: under 10**25, at most 15 decimal places (a float's
    places are not counted; see :func:`number_problem`).

    >>> event = LagoEvent(
    ...     transaction_id="msg-1",
    ...     external_subscription_id="sub-42",
    ...     code="api_calls",
    ...     timestamp=1651240791,
    ...     properties={"calls": 3},
    ... )
    >>> event.to_dict()["timestamp"]
    1651240791
    """

    transaction_id: str = attrs.field(converter=_transaction_id)
    """The idempotency key: Lago stores one event per transaction_id and subscription."""
    external_subscription_id: str = attrs.field(converter=_external_subscription_id)
    """The subscription (your id for it) the usage is billed to."""
    code: str = attrs.field(converter=_code)
    """The billable metric code."""
    timestamp: Timestamp = attrs.field(converter=_timestamp)
    """When the usage happened: an aware datetime, or Unix seconds."""
    properties: Mapping[str, PropertyValue] = attrs.field(
        default=None, converter=_properties, hash=False
    )
    """Metric properties: string keys, string or number values."""
    precise_total_amount_cents: Decimal | str | None = attrs.field(default=None, converter=_amount)
    """For dynamic pricing: the exact amount, in cents, as a decimal."""
    # Whether a property is a Decimal, decided once at construction so that
    # to_dict() can copy the properties at C speed in the common case.
    _has_decimal: bool = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        has_decimal = False
        for item in self.properties.values():
            if isinstance(item, Decimal):
                has_decimal = True
                break
        object.__setattr__(self, "_has_decimal", has_decimal)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object Lago accepts for this event.

        snake_case keys, ``timestamp`` as Unix seconds (see :func:`unix_seconds`),
        ``properties`` only when there are any, ``precise_total_amount_cents``
        as a string only when set.
        """
        timestamp = self.timestamp
        body: dict[str, Any] = {
            "transaction_id": self.transaction_id,
            "external_subscription_id": self.external_subscription_id,
            "code": self.code,
            # Whole Unix seconds are by far the most common: skip the call.
            "timestamp": timestamp if type(timestamp) is int else unix_seconds(timestamp),
        }
        properties = self.properties
        if properties:
            body["properties"] = (
                {k: _render_property(v) for k, v in properties.items()}
                if self._has_decimal
                else dict(properties)
            )
        if self.precise_total_amount_cents is not None:
            amount = self.precise_total_amount_cents
            # A string goes as written; a Decimal in plain notation, never "1E+3".
            body["precise_total_amount_cents"] = (
                amount if isinstance(amount, str) else format(amount, "f")
            )
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LagoEvent:
        """Build an event from Lago's JSON form (what :meth:`to_dict` returns).

        A string timestamp must be a decimal number of Unix seconds. Unknown
        keys raise :class:`~lago_segment.InvalidLagoEvent`: Lago would drop
        them silently, and we never drop what a user sent.
        """
        if not isinstance(data, Mapping):
            raise InvalidLagoEvent("event", f"must be an object, not {type(data).__name__}")
        unknown = set(data) - _WIRE_KEYS
        if unknown:
            raise InvalidLagoEvent(
                sorted(unknown)[0], "is not a Lago event field (keys are snake_case)"
            )
        for key in ("transaction_id", "external_subscription_id", "code", "timestamp"):
            if key not in data:
                raise InvalidLagoEvent(key, "is missing")
        timestamp = data["timestamp"]
        if isinstance(timestamp, str):
            try:
                timestamp = Decimal(timestamp)
            except InvalidOperation:
                raise InvalidLagoEvent(
                    "timestamp", f"is not Unix seconds: {timestamp!r}"
                ) from None
        return cls(
            transaction_id=data["transaction_id"],
            external_subscription_id=data["external_subscription_id"],
            code=data["code"],
            timestamp=timestamp,
            properties=data.get("properties"),
            precise_total_amount_cents=data.get("precise_total_amount_cents"),
        )


_WIRE_KEYS = frozenset(
    {
        "transaction_id",
        "external_subscription_id",
        "code",
        "timestamp",
        "properties",
        "precise_total_amount_cents",
    }
)
