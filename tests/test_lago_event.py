"""LagoEvent: validation at construction and Lago's exact wire shape."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- bounds: what Lago stores (numeric(40,15) for amounts) -----------------------------

HUGE = Decimal("1e999999999999999999")  # rendering it in plain notation would never end


@pytest.mark.parametrize(
    "value",
    ["1e999999999", HUGE, "1" + "0" * 25, 10**25, "-1e25", 10**100_000],
    ids=["text-exponent", "decimal-exponent", "26-digits", "int", "negative", "huge-int"],
)
def test_amounts_over_25_integer_digits_are_refused_without_rendering(value: object) -> None:
    with pytest.raises(InvalidLagoEvent, match="more than 25 digits before") as info:
        make(precise_total_amount_cents=value)
    assert info.value.field == "precise_total_amount_cents"


@pytest.mark.parametrize(
    "value", [Decimal("1e-999999999"), "0.1234567890123456", Decimal("0E-999999999")]
)
def test_amounts_with_more_than_15_decimal_places_are_refused(value: object) -> None:
    with pytest.raises(InvalidLagoEvent, match="more than 15 digits after") as info:
        make(precise_total_amount_cents=value)
    assert "quantize" in info.value.problem


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("9" * 25 + "." + "9" * 15, "9" * 25 + "." + "9" * 15),
        ("-" + "9" * 25, "-" + "9" * 25),
        (Decimal("1.500000000000000000000"), "1.500000000000000000000"),
        (Decimal("1E+24"), "1" + "0" * 24),
        (Decimal("0.000000000000001"), "0.000000000000001"),
    ],
)
def test_amounts_within_the_bound_are_sent_exactly(value: object, sent: str) -> None:
    assert make(precise_total_amount_cents=value).to_dict()["precise_total_amount_cents"] == sent


@pytest.mark.parametrize(
    "value",
    [10**25, -(10**25), 10**5000, 1e25, -1e300, HUGE, Decimal("1e-999999999")],
    ids=["int", "negative-int", "huge-int", "float", "huge-float", "decimal", "tiny-decimal"],
)
def test_numeric_properties_out_of_bounds_are_refused(value: object) -> None:
    with pytest.raises(InvalidLagoEvent) as info:
        make(properties={"n": value})
    assert info.value.field == "properties.n"


@pytest.mark.parametrize("value", [10**25 - 1, -(10**25) + 1, 9.99e24, 1e-300, Decimal("1.5")])
def test_numeric_properties_within_the_bound_are_kept(value: object) -> None:
    assert make(properties={"n": value}).properties == {"n": value}


@pytest.mark.parametrize(
    "value", [Decimal("1e999999999"), 10**20, -(10**12), 1e300, Decimal("253402300800")]
)
def test_timestamps_outside_years_1_to_9999_are_refused(value: object) -> None:
    with pytest.raises(InvalidLagoEvent, match="out of range") as info:
        make(timestamp=value)
    assert info.value.field == "timestamp"


@pytest.mark.parametrize("value", [-62_135_596_800, 253_402_300_799, Decimal("-1.5")])
def test_timestamps_inside_years_1_to_9999_are_accepted(value: object) -> None:
    assert make(timestamp=value).timestamp == value


# --- timestamps before 1970 -------------------------------------------------------------

_OFFSETS = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)


def _floor_millis(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)  # floor division: toward the past


@settings(deadline=None)  # a loaded machine makes no example a failure
@given(st.datetimes(timezones=_OFFSETS))
def test_rendered_datetimes_are_exact_unix_milliseconds(moment: datetime) -> None:
    rendered = unix_seconds(moment)
    millis = _floor_millis(moment - datetime(1970, 1, 1, tzinfo=timezone.utc))
    assert Decimal(rendered) == Decimal(millis).scaleb(-3)
    # Three decimals exactly, or an int for a whole second: never "-1.999" for -0.001.
    if millis % 1000:
        assert isinstance(rendered, str)
        assert re.fullmatch(r"-?\d+\.\d{3}", rendered)
    else:
        assert rendered == millis // 1000


@settings(deadline=None)  # a loaded machine makes no example a failure
@given(
    st.decimals(min_value=-62_135_596_800, max_value=253_402_300_799, places=6, allow_nan=False)
)
def test_rendered_decimal_seconds_round_trip_through_lago_json(seconds: Decimal) -> None:
    event = make(timestamp=seconds)
    wire = event.to_dict()["timestamp"]
    expected = (seconds * 1000).to_integral_value(rounding=ROUND_FLOOR).scaleb(-3)
    assert Decimal(wire) == expected
    assert LagoEvent.from_dict(event.to_dict()).to_dict()["timestamp"] == wire


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (Decimal("1E+3"), "1000"),
        (Decimal("1.50"), "1.50"),
        (Decimal("-2.5E-7"), "-0.00000025"),
        (Decimal("12345678901234567890123.5"), "12345678901234567890123.5"),
    ],
)
def test_a_decimal_property_is_sent_in_plain_notation(value: Decimal, sent: str) -> None:
    # ClickHouse's toDecimal128OrZero reads "1E+3" as 0: never send an exponent.
    event = LagoEvent(
        transaction_id="t", external_subscription_id="s", code="c", timestamp=1,
        properties={"amount": value},
    )  # fmt: skip
    assert event.to_dict()["properties"] == {"amount": sent}
    assert LagoEvent.from_dict(event.to_dict()).properties == {"amount": sent}


# -- text Lago can store: no lone UTF-16 surrogates --------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"transaction_id": "m-\ud800"}, "transaction_id"),
        ({"external_subscription_id": "sub-\udfff"}, "external_subscription_id"),
        ({"code": "\ud83d"}, "code"),
        ({"properties": {"note": "caf\u00e9 \ud800"}}, "properties.note"),
        ({"properties": {"k\ud800": "v"}}, "properties"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field_and_index(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidLagoEvent, match="lone UTF-16 surrogate") as info:
        make(**overrides)
    assert info.value.field == field
    assert "at index" in str(info.value)


def test_non_ascii_text_and_surrogate_pairs_as_text_are_kept() -> None:
    event = make(code="caf\u00e9", properties={"emoji": "\U0001f600", "\u00e9t\u00e9": "\u2603"})
    assert event.to_dict()["properties"] == {"emoji": "\U0001f600", "\u00e9t\u00e9": "\u2603"}


@settings(deadline=None)  # a loaded machine makes no example a failure
@given(
    st.text(
        # Every code point, surrogates included, and often the ones that matter here.
        alphabet=st.characters(exclude_categories=())
        | st.sampled_from(["\ud800", "\udfff", "\U0001f600", "\u00e9"]),
        max_size=20,
    )
)
def test_any_text_is_kept_exactly_or_refused_for_a_surrogate(text: str) -> None:
    if any("\ud800" <= c <= "\udfff" for c in text):
        with pytest.raises(InvalidLagoEvent, match="lone UTF-16 surrogate"):
            make(properties={"note": text})
    else:
        event = make(properties={"note": text})
        assert event.to_dict()["properties"] == {"note": text}
        text.encode("utf-8")  # what goes on the wire has a UTF-8 form
