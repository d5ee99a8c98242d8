"""LagoEvent: validation at construction and Lago's exact wire shape."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from lago_segment import InvalidLagoEvent, LagoEvent
from lago_segment.lago import unix_seconds

BASE = {
    "transaction_id": "msg-1",
    "external_subscription_id": "sub-1",
    "code": "api_calls",
    "timestamp": 1651240791,
}


def make(**overrides: object) -> LagoEvent:
    return LagoEvent(**{**BASE, **overrides})  # type: ignore[arg-type]


def test_to_dict_is_snake_case_with_unix_seconds() -> None:
    event = make(properties={"calls": 3, "region": "eu"}, precise_total_amount_cents="12.5")
    assert event.to_dict() == {
        "transaction_id": "msg-1",
        "external_subscription_id": "sub-1",
        "code": "api_calls",
        "timestamp": 1651240791,
        "properties": {"calls": 3, "region": "eu"},
        "precise_total_amount_cents": "12.5",
    }


def test_to_dict_omits_empty_properties_and_absent_amount() -> None:
    assert set(make().to_dict()) == {
        "transaction_id",
        "external_subscription_id",
        "code",
        "timestamp",
    }


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (datetime(2022, 4, 29, 13, 59, 51, tzinfo=timezone.utc), 1651240791),
        (datetime(2022, 4, 29, 13, 59, 51, 123000, tzinfo=timezone.utc), "1651240791.123"),
        (datetime(2022, 4, 29, 13, 59, 51, 123999, tzinfo=timezone.utc), "1651240791.123"),
        (datetime(2022, 4, 29, 13, 59, 51, 5000, tzinfo=timezone.utc), "1651240791.005"),
        (
            datetime(2022, 4, 29, 15, 59, 51, 123000, tzinfo=timezone(timedelta(hours=2))),
            "1651240791.123",
        ),
        (1651240791.123, "1651240791.123"),
        (1651240791.0, 1651240791),
        (Decimal("1651240791.1239"), "1651240791.123"),
        # Before 1970: the fraction counts toward zero, sub-milliseconds toward the past.
        (Decimal("-1.5"), "-1.500"),
        (Decimal("-0.0005"), "-0.001"),
        (-2.0, -2),
        (datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc), "-0.001"),
        (datetime(1969, 12, 31, 23, 59, 58, 250000, tzinfo=timezone.utc), "-1.750"),
    ],
)
def test_timestamps_render_as_unix_seconds_never_floats(
    timestamp: datetime | float | Decimal, expected: int | str
) -> None:
    rendered = make(timestamp=timestamp).to_dict()["timestamp"]
    assert rendered == expected
    assert not isinstance(rendered, float)


def test_unix_seconds_is_exact_for_large_float_digits() -> None:
    # repr() keeps the float's shortest exact digits; no binary noise leaks in.
    assert unix_seconds(1700000000.001) == "1700000000.001"


@pytest.mark.parametrize("field", ["transaction_id", "external_subscription_id", "code"])
@pytest.mark.parametrize("value", ["", "   ", None, 12])
def test_ids_and_code_must_be_non_empty_strings(field: str, value: object) -> None:
    with pytest.raises(InvalidLagoEvent, match=field) as info:
        make(**{field: value})
    assert info.value.field == field


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(InvalidLagoEvent, match="naive"):
        make(timestamp=datetime(2024, 1, 1))


@pytest.mark.parametrize("value", [math.nan, math.inf, Decimal("NaN"), True, "1651240791"])
def test_bad_timestamps_are_refused(value: object) -> None:
    with pytest.raises(InvalidLagoEvent) as info:
        make(timestamp=value)
    assert info.value.field == "timestamp"


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}, math.nan, Decimal("Infinity")])
def test_property_values_must_be_strings_or_finite_numbers(value: object) -> None:
    with pytest.raises(InvalidLagoEvent) as info:
        make(properties={"seats": value})
    assert info.value.field == "properties.seats"


def test_decimal_properties_are_sent_as_exact_strings() -> None:
    event = make(properties={"gb": Decimal("1.10")})
    assert event.to_dict()["properties"] == {"gb": "1.10"}


@pytest.mark.parametrize("value", ["abc", "NaN", 1.5, True])
def test_amount_must_be_a_decimal_number(value: object) -> None:
    with pytest.raises(InvalidLagoEvent) as info:
        make(precise_total_amount_cents=value)
    assert info.value.field == "precise_total_amount_cents"


def test_from_dict_round_trips_to_dict() -> None:
    event = make(
        timestamp=datetime(2022, 4, 29, 13, 59, 51, 123000, tzinfo=timezone.utc),
        properties={"a": "x", "n": 2},
        precise_total_amount_cents="100.25",
    )
    assert LagoEvent.from_dict(event.to_dict()).to_dict() == event.to_dict()


def test_from_dict_refuses_camel_case_keys() -> None:
    with pytest.raises(InvalidLagoEvent, match="transactionId"):
        LagoEvent.from_dict({**BASE, "transactionId": "x"})


@pytest.mark.parametrize("properties", [[], "", 0])
def test_from_dict_refuses_properties_that_are_not_an_object(properties: object) -> None:
    with pytest.raises(InvalidLagoEvent, match="properties"):
        LagoEvent.from_dict({**BASE, "properties": properties})


def test_from_dict_reads_null_properties_as_empty() -> None:
    assert LagoEvent.from_dict({**BASE, "properties": None}).properties == {}


def test_events_are_frozen() -> None:
    event = make()
    with pytest.raises(AttributeError):
        event.code = "other"  # type: ignore[misc]


def test_decimal_amounts_are_sent_in_plain_notation() -> None:
    event = make(precise_total_amount_cents=Decimal("1E+3"))
    assert event.to_dict()["precise_total_amount_cents"] == "1000"


def test_string_amounts_are_sent_as_written() -> None:
    assert (
        make(precise_total_amount_cents="12.50").to_dict()["precise_total_amount_cents"] == "12.50"
    )
