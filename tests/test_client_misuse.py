"""Misuse gets a TypeError naming the mistake; a closed client says so (sync and async)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import httpx
import pytest
from support_client import API_KEY, RawServer, Runner, lago, make_event

from lago_segment.client import AsyncLagoClient, LagoClient, RetryPolicy
from lago_segment.errors import ClientClosedError, LagoTransportError
from lago_segment.testing import FakeLago

__all__ = ["lago"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([make_event()], r"send\(\) takes one LagoEvent, not a list; use send_batch\(\)"),
        ((make_event(),), r"send\(\) takes one LagoEvent, not a tuple; use send_batch\(\)"),
        (make_event().to_dict(), r"not a dict; build one with LagoEvent\(\*\*fields\)"),
        ("tx-1", r"send\(\) takes a LagoEvent, not a str"),
        (None, r"send\(\) takes a LagoEvent, not a NoneType"),
    ],
)
async def test_send_of_anything_but_one_event_is_a_type_error(
    lago: Runner, given: object, message: str
) -> None:
    fake = FakeLago(api_key=API_KEY)
    with pytest.raises(TypeError, match=message):
        await lago.run(lago.client(fake=fake).send, given)
    assert fake.request_count == 0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (make_event(), r"send_batch\(\) takes an iterable of LagoEvent; use send\(\) for one"),
        (make_event().to_dict(), r"iterable of LagoEvent, not a dict"),
        ("tx-1", r"iterable of LagoEvent, not a str"),
        (42, r"iterable of LagoEvent, not a int"),
        ([make_event(0), make_event(1).to_dict()], r"item 1 is a dict; build it with LagoEvent"),
        ([make_event(0), None], r"item 1 is a NoneType"),
    ],
)
async def test_send_batch_of_anything_but_events_is_a_type_error_before_sending(
    lago: Runner, given: object, message: str
) -> None:
    fake = FakeLago(api_key=API_KEY)
    with pytest.raises(TypeError, match=message):
        await lago.run(lago.client(fake=fake).send_batch, given)
    assert fake.request_count == 0


async def test_send_batch_takes_any_iterable_of_events(lago: Runner) -> None:
    fake = FakeLago(api_key=API_KEY)
    result = await lago.run(lago.client(fake=fake).send_batch, (make_event(n) for n in range(3)))
    assert len(result.delivered) == 3


# -- closed clients ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["send", "send_batch", "estimate_fees"])
async def test_a_closed_client_raises_client_closed_not_a_delivery_failure(
    lago: Runner, method: str
) -> None:
    fake = FakeLago(api_key=API_KEY)
    client = lago.client(fake=fake)
    await lago.close(client)
    args: dict[str, tuple[Any, ...]] = {
        "send": (make_event(),),
        "send_batch": ([make_event()],),
        "estimate_fees": ("seats", "sub-1"),
    }
    with pytest.raises(ClientClosedError) as caught:
        await lago.run(getattr(client, method), *args[method])
    assert not isinstance(caught.value, LagoTransportError)
    assert client.closed
    assert fake.request_count == 0


async def test_a_closed_http_client_of_the_users_is_reported_as_closed(lago: Runner) -> None:
    http = lago.http_client(transport=FakeLago(api_key=API_KEY).transport)
    client = lago.client(http_client=http, api_url="https://lago.test")
    if isinstance(http, httpx.AsyncClient):
        await http.aclose()
    else:
        http.close()
    with pytest.raises(ClientClosedError, match="http_client"):
        await lago.run(client.send, make_event())


def test_close_during_a_retry_wait_ends_send_batch_with_what_was_settled() -> None:
    fake = FakeLago(api_key=API_KEY)
    fake.script(None, 503)  # the first batch is stored, the second must wait to retry
    failing = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        response = fake.transport.handle_request(request)
        if response.status_code == 503:
            failing.set()
        return response

    http = httpx.Client(transport=httpx.MockTransport(answer))
    # A real, hour-long wait: only close() can end it.
    policy = RetryPolicy(attempts=3, timeout=None, wait_initial=3600, wait_max=3600)
    client = LagoClient(API_KEY, api_url=fake.url, http_client=http, retry=policy)
    events = [make_event(n) for n in range(150)]
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            client.send_batch(events)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    assert failing.wait(10)
    client.close()
    sender.join(10)
    http.close()
    assert not sender.is_alive()
    [closed] = outcome
    assert isinstance(closed, ClientClosedError)
    assert closed.result.delivered == tuple(events[:100])
    assert closed.unsettled == tuple(events[100:])


def never_answers(conn: socket.socket, server: RawServer) -> None:
    server.read_request(conn)
    server.stop.wait(30)


def test_close_while_a_request_is_in_flight_is_not_a_delivery_failure() -> None:
    with RawServer(never_answers) as server:
        # The timeout is far away: only close() can end the request in time.
        client = LagoClient(API_KEY, api_url=server.url, timeout=60, retry=RetryPolicy(attempts=1))
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                client.send(make_event())
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        sender = threading.Thread(target=run, daemon=True)
        sender.start()
        while not server.requests:  # the request reached the server
            server.stop.wait(0.01)
        client.close()
        sender.join(10)
    assert [type(e) for e in outcome] == [ClientClosedError]


async def test_aclose_while_a_request_is_in_flight_is_not_a_delivery_failure() -> None:
    with RawServer(never_answers) as server:
        client = AsyncLagoClient(
            API_KEY, api_url=server.url, timeout=60, retry=RetryPolicy(attempts=1)
        )
        sending = asyncio.ensure_future(client.send(make_event()))
        while not server.requests:
            await asyncio.sleep(0.01)
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await sending
