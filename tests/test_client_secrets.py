"""The API key and URL credentials never leave the client (sync and async clients)."""

from __future__ import annotations

import logging
import socket
import traceback

import httpx
import pytest
from support_client import API_KEY, RawServer, Runner, json_reply, lago, make_event

from lago_segment.client import RetryPolicy
from lago_segment.errors import ConfigurationError, LagoAPIError, LagoConnectionError
from lago_segment.testing import FakeLago

__all__ = ["lago"]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (API_KEY + "\n", "trailing newline"),
        (API_KEY + "\r\n", "trailing newline"),
        (API_KEY[:5] + " " + API_KEY[5:], "whitespace"),
        (API_KEY[:5] + "\x00" + API_KEY[5:], "control character"),
        (API_KEY[:5] + "\x7f" + API_KEY[5:], "control character"),
        (API_KEY + "é", "non-ASCII"),
        (API_KEY + "\u2028", "whitespace"),
    ],
)
def test_a_key_that_cannot_be_a_header_value_is_refused_without_quoting_it(
    lago: Runner, key: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        lago.client(key)
    assert caught.value.option == "api_key"
    assert API_KEY not in str(caught.value) + repr(caught.value)
    assert API_KEY[:5] not in "".join(traceback.format_exception(caught.value))


def leaky_transport(error: type[Exception]) -> httpx.MockTransport:
    """A transport failing the way h11 does on an illegal header: quoting it whole."""

    def fail(request: httpx.Request) -> httpx.Response:
        header = request.headers["authorization"]
        raise error(f"Illegal header value b'{header}\\n'")

    return httpx.MockTransport(fail)


def traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@pytest.mark.parametrize("error", [httpx.LocalProtocolError, RuntimeError])
async def test_a_transport_message_quoting_the_key_is_scrubbed_everywhere(
    lago: Runner, caplog: pytest.LogCaptureFixture, error: type[Exception]
) -> None:
    caplog.set_level(logging.DEBUG, logger="lago_segment")
    http = lago.http_client(transport=leaky_transport(error))
    client = lago.client(http_client=http, retry=RetryPolicy(attempts=2, sleep=lambda s: None))
    with pytest.raises(LagoConnectionError) as caught:
        await lago.run(client.send, make_event())
    result = await lago.run(client.send_batch, [make_event(1)])
    failure = result.failed[0]
    assert "Illegal header value b'Bearer ********" in str(caught.value)
    for text in (
        traceback_text(caught.value),
        repr(caught.value),
        str(failure.error),
        repr(result),
        traceback_text(failure.error),
        caplog.text,
    ):
        assert API_KEY not in text


async def test_an_answer_echoing_the_key_is_scrubbed(lago: Runner) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        said = f"bad header {request.headers['authorization']}"
        headers = {"x-request-id": API_KEY}
        body = {"error": said, "error_details": {"auth": [said]}}
        return httpx.Response(400, json=body, headers=headers)

    http = lago.http_client(transport=httpx.MockTransport(echo))
    client = lago.client(http_client=http)
    with pytest.raises(LagoAPIError) as caught:
        await lago.run(client.send, make_event())
    result = await lago.run(client.send_batch, [make_event()])
    assert caught.value.error == "bad header Bearer ********"
    assert API_KEY not in str(caught.value) + str(result.failed[0].error)
    assert API_KEY not in repr(caught.value.error_details)


def test_redact_masks_the_key_and_the_url_credentials(lago: Runner) -> None:
    client = lago.client(api_url="https://bob:hunter22@lago.example.com")
    text = f"POST https://bob:hunter22@lago.example.com Bearer {API_KEY} pw=hunter22"
    assert (
        client.redact(text) == "POST https://********@lago.example.com Bearer ******** pw=********"
    )


@pytest.mark.parametrize(
    "url", ["https://bob:hunter22@lago.example.com", "https://tok_abcdef@lago.example.com"]
)
def test_repr_and_api_url_never_show_url_credentials(lago: Runner, url: str) -> None:
    client = lago.client(api_url=url)
    shown = repr(client) + client.api_url + repr(client._flows)
    assert "hunter22" not in shown
    assert "tok_abcdef" not in shown
    assert "lago.example.com" in shown
    assert API_KEY not in shown


def test_the_options_repr_never_shows_the_key_nor_url_credentials(lago: Runner) -> None:
    client = lago.client(
        api_url="https://bob:hunter22@lago.example.com",
        proxy="http://carol:swordfish9@proxy.example.com:3128",
    )
    options = client._options
    assert options.api_key == API_KEY  # the key is held, only never shown
    shown = repr(options) + repr(client._flows) + str(options)
    for secret in (API_KEY, "hunter22", "swordfish9"):
        assert secret not in shown
    assert "api_key='********'" in shown
    assert "lago.example.com" in shown
    assert "proxy.example.com" in shown


# -- proxies -------------------------------------------------------------------


def recording_proxy(conn: socket.socket, server: RawServer) -> None:
    """Records what reaches it; answers a forwarded POST itself, refuses a CONNECT."""
    head = server.read_request(conn)
    if head.startswith(b"CONNECT"):
        server.send(conn, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    else:
        server.send(conn, json_reply())


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> RawServer:
    proxy = RawServer(recording_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    return proxy


async def test_plain_http_never_goes_through_a_proxy_from_the_environment(
    lago: Runner, proxy_env: RawServer
) -> None:
    fake = FakeLago(api_key=API_KEY)
    with proxy_env, fake.serve() as url:
        client = lago.client(api_url=url)
        result = await lago.run(client.send_batch, [make_event()])
        await lago.close(client)
    assert result.ok
    assert proxy_env.requests == []
    assert fake.stored_transaction_ids() == ["tx-0"]


async def test_a_proxy_given_explicitly_is_used_for_plain_http(lago: Runner) -> None:
    with RawServer(recording_proxy) as proxy:
        client = lago.client(api_url="http://127.0.0.1:9", proxy=proxy.url)
        result = await lago.run(client.send_batch, [make_event()])
        await lago.close(client)
    assert result.ok
    assert proxy.requests[0].startswith(b"POST http://127.0.0.1:9/api/v1/events/batch ")


async def test_https_still_goes_through_the_environments_proxy(
    lago: Runner, proxy_env: RawServer
) -> None:
    with proxy_env:
        client = lago.client(api_url="https://lago.invalid", retry=RetryPolicy(attempts=1))
        result = await lago.run(client.send_batch, [make_event()])
        await lago.close(client)
    assert isinstance(result.failed[0].error, LagoConnectionError)
    # The proxy saw only the tunnel request, never the key.
    assert proxy_env.requests[0].startswith(b"CONNECT lago.invalid:443 ")
    assert API_KEY.encode() not in b"".join(proxy_env.requests)


def test_proxy_and_an_own_http_client_are_exclusive(lago: Runner) -> None:
    with pytest.raises(ConfigurationError, match="proxy"):
        lago.client(proxy="http://127.0.0.1:3128", http_client=lago.http_client())
