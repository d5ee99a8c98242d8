"""The JSON our client sends equals what lago-python-client's ``Event`` sends, except where
that client is wrong (each difference asserted and explained)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
import respx
from lago_python_client.client import Client
from lago_python_client.models.event import Event
from support_client import Runner, lago

from lago_segment import LagoEvent
from lago_segment.client import US_API_URL

__all__ = ["lago"]

EVENT_URL = f"{US_API_URL}/api/v1/events"
VALUES: dict[str, Any] = {
    "transaction_id": "msg-1",
    "external_subscription_id": "sub-1",
    "code": "api_calls",
    "properties": {"calls": 3, "region": "eu", "ratio": 0.5},
    "precise_total_amount_cents": "12.5",
}


async def ours(lago: Runner, respx_mock: respx.MockRouter, **values: Any) -> dict[str, Any]:
    route = respx_mock.post(EVENT_URL).respond(200, json={})
    await lago.run(lago.client().send, LagoEvent(**values))
    body: dict[str, Any] = json.loads(route.calls.last.request.content)["event"]
    return body


def theirs(respx_mock: respx.MockRouter, **values: Any) -> dict[str, Any]:
    route = respx_mock.post(EVENT_URL).respond(200, json={})
    Client(api_key="key").events.create(Event(**values))
    body: dict[str, Any] = json.loads(route.calls.last.request.content)["event"]
    return body


async def test_same_json_as_lago_python_client_for_the_same_values(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    values = {**VALUES, "timestamp": "1651240791.123"}
    sent = await ours(lago, respx_mock, **{**values, "timestamp": Decimal("1651240791.123")})
    assert sent == theirs(respx_mock, **values)


async def test_whole_seconds_are_an_integer_where_lago_python_client_sends_a_string(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    # pydantic coerces its Union[int, str] timestamp to a string: Lago accepts
    # both, we keep the documented integer form.
    values = {**VALUES, "timestamp": 1651240791}
    sent, reference = await ours(lago, respx_mock, **values), theirs(respx_mock, **values)
    assert (sent["timestamp"], reference["timestamp"]) == (1651240791, "1651240791")
    assert {**sent, "timestamp": "1651240791"} == reference


async def test_absent_optional_fields_are_omitted_where_lago_python_client_sends_null(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    # Lago reads a null and an absent key alike; omitting them keeps bodies small.
    values = {"transaction_id": "m", "external_subscription_id": "s", "code": "c"}
    sent = await ours(lago, respx_mock, **values, timestamp=1)
    reference = theirs(respx_mock, **values, timestamp="1")
    assert reference["properties"] is None
    assert reference["precise_total_amount_cents"] is None
    assert sent == {k: v for k, v in reference.items() if v is not None} | {"timestamp": 1}


async def test_datetime_becomes_unix_seconds_where_lago_python_client_refuses_it(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    # lago-python-client's model takes only int or str: its users must render
    # the timestamp themselves (and often send ISO-8601, which Lago rejects).
    instant = datetime(2022, 4, 29, 12, 39, 51, 123000, tzinfo=timezone.utc)
    sent = await ours(lago, respx_mock, **VALUES, timestamp=instant)
    assert sent["timestamp"] == "1651235991.123"
    with pytest.raises(ValueError, match="timestamp"):
        theirs(respx_mock, **VALUES, timestamp=instant)


async def test_decimal_property_is_sent_as_a_string_where_lago_python_client_fails(
    lago: Runner, respx_mock: respx.MockRouter
) -> None:
    # orjson cannot serialize Decimal: lago-python-client raises before sending.
    values = {**VALUES, "timestamp": 1, "properties": {"amount": Decimal("0.10")}}
    sent = await ours(lago, respx_mock, **values)
    assert sent["properties"] == {"amount": "0.10"}
    with pytest.raises(TypeError):
        theirs(respx_mock, **values)
