"""Deadlines and body bounds against misbehaving servers on loopback (sync and async)."""

from __future__ import annotations

import socket
import tracemalloc

import pytest
from support_client import RawServer, Runner, json_reply, lago, make_event

from lago_segment._retry import RetryPolicy
from lago_segment.client._flows import BATCH_PATH, Call, ClientFlows
from lago_segment.client._options import ClientOptions
from lago_segment.errors import LagoResponseTooLargeError, LagoTimeoutError

__all__ = ["lago"]

HEADERS_THEN_TRICKLE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
)


def trickled_body(conn: socket.socket, server: RawServer) -> None:
    server.read_request(conn)
    server.send(conn, HEADERS_THEN_TRICKLE)
    # 100000 bytes at 20 a second: far longer than any test may take.
    server.trickle(conn, b" " * 100_000)


def trickled_headers(conn: socket.socket, server: RawServer) -> None:
    server.read_request(conn)
    server.trickle(conn, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000)


@pytest.mark.parametrize("pool", ["own", "users"])
@pytest.mark.parametrize("handler", [trickled_body, trickled_headers])
async def test_timeout_bounds_the_whole_exchange_however_slowly_the_server_trickles(
    lago: Runner, handler: object, pool: str
) -> None:
    with RawServer(handler) as server:  # type: ignore[arg-type]
        options: dict[str, object] = {"http_client": lago.http_client()} if pool == "users" else {}
        client = lago.client(
            api_url=server.url, timeout=0.5, retry=RetryPolicy(attempts=1), **options
        )
        with pytest.raises(LagoTimeoutError):
            await lago.run(client.send, make_event())
        # The client hung up while the server still had ~100000 bytes to send.
        assert server.cut_off.wait(10)
        await lago.close(client)


async def test_retry_deadline_bounds_all_attempts_and_shortens_the_last_one(
    lago: Runner,
) -> None:
    with RawServer(trickled_body) as server:
        policy = RetryPolicy(attempts=10, timeout=0.5, wait_jitter=0)
        client = lago.client(api_url=server.url, timeout=60, retry=policy)
        result = await lago.run(client.send_batch, [make_event()])
        assert server.cut_off.wait(10)
        await lago.close(client)
    assert isinstance(result.failed[0].error, LagoTimeoutError)
    assert not result.failed[0].permanent
    # The one attempt used the whole budget: no time was left for another.
    assert len(server.requests) == 1


def test_each_call_gets_what_is_left_of_the_retry_deadline() -> None:
    now = [100.0]
    policy = RetryPolicy(
        attempts=5, timeout=10.0, wait_initial=1, wait_jitter=0, clock=lambda: now[0]
    )
    flows = ClientFlows(
        ClientOptions(
            api_key="key",
            api_url="https://lago.test",
            retry=policy,
            max_batch_bytes=10**6,
        )
    )
    flow = flows.send_batch([make_event()])
    first = next(flow)
    assert first == Call(BATCH_PATH, first.body, timeout=10.0)
    now[0] += 3.0  # the first attempt took 3 s and timed out
    wait = flow.send(LagoTimeoutError("slow"))
    now[0] += 1.0
    second = flow.send(None)
    assert (wait.seconds, second.timeout) == (1.0, 6.0)  # type: ignore[union-attr]


FIFTY_MB = 50 * 1024 * 1024


def huge_body(*, announce: bool) -> object:
    chunk = b"x" * 65536

    def handler(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        length = f"Content-Length: {FIFTY_MB}\r\n" if announce else "Connection: close\r\n"
        server.send(conn, f"HTTP/1.1 200 OK\r\n{length}\r\n".encode())
        for _ in range(FIFTY_MB // len(chunk)):
            if server.stop.is_set():
                return
            server.send(conn, chunk)

    return handler


@pytest.mark.parametrize("announce", [False, True], ids=["streamed", "content-length"])
async def test_a_huge_answer_is_cut_off_at_the_bound_without_buffering_it(
    lago: Runner, announce: bool
) -> None:
    with RawServer(huge_body(announce=announce)) as server:  # type: ignore[arg-type]
        client = lago.client(api_url=server.url, retry=RetryPolicy(attempts=1))
        tracemalloc.start()
        try:
            with pytest.raises(LagoResponseTooLargeError, match="max_response_bytes"):
                await lago.run(client.send, make_event())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert server.cut_off.wait(10)
        await lago.close(client)
    assert server.bytes_sent < FIFTY_MB
    assert peak < 8 * 1024 * 1024


async def test_an_oversized_answer_is_retried(lago: Runner) -> None:
    answers = [json_reply(body=b"[" + b" " * 5000 + b"]"), json_reply()]

    def handler(conn: socket.socket, server: RawServer) -> None:
        while answers and server.read_request(conn):
            server.send(conn, answers.pop(0))

    with RawServer(handler) as server:
        client = lago.client(api_url=server.url, max_response_bytes=4096)
        result = await lago.run(client.send_batch, [make_event()])
        await lago.close(client)
    assert (len(result.delivered), result.retries) == (1, 1)


@pytest.mark.parametrize("value", [0, 1023, 1.5e6, True])
def test_max_response_bytes_must_be_an_int_of_at_least_1024(lago: Runner, value: object) -> None:
    from lago_segment.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        lago.client(max_response_bytes=value)
