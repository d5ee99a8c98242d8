"""The HTTP plumbing both webhook receivers share (Segment's and Lago's).

Reading a capped body from ASGI or WSGI, sending a response, and the headers
of a JSON answer. No framework: just the two protocols (ASGI 3, PEP 3333).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import IO, Any, Protocol

__all__ = [
    "Message",
    "Receive",
    "Response",
    "Scope",
    "Send",
    "json_headers",
    "json_headers_for",
    "read_asgi_body",
    "read_wsgi_body",
    "send_asgi",
    "wsgi_headers",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_CHUNK = 64 * 1024


class Response(Protocol):
    """What a receiver answers: a status, headers and a body."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def body(self) -> bytes: ...


def json_headers(response: Any) -> tuple[tuple[str, str], ...]:
    """The headers of a JSON ``response`` (an ``attrs.Factory`` taking self)."""
    return json_headers_for(response.body)


def json_headers_for(body: bytes) -> tuple[tuple[str, str], ...]:
    """The headers of a JSON answer with this ``body``."""
    return (("Content-Type", "application/json"), ("Content-Length", str(len(body))))


async def read_asgi_body(receive: Receive, limit: int) -> bytes | bool | None:
    """The body; False once it grows past ``limit`` (the rest is not read); None on disconnect."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return False
        if not message.get("more_body", False):
            return bytes(body)


async def send_asgi(send: Send, response: Response) -> None:
    """Send ``response`` over ASGI."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.lower().encode(), v.encode()) for k, v in response.headers],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


def read_wsgi_body(environ: dict[str, Any], length: str | None, limit: int) -> bytes | None:
    """The body, at most ``limit + 1`` bytes; None when neither its length nor its end is known.

    PEP 3333: never read past ``Content-Length`` (the caller's precheck made it
    at most ``limit``); without one, only a server that sets
    ``wsgi.input_terminated`` lets us read to the end.
    """
    stream: IO[bytes] = environ["wsgi.input"]
    if length is not None:
        remaining = int(length)
    elif environ.get("wsgi.input_terminated"):
        remaining = limit + 1
    else:
        return None
    body = bytearray()
    while remaining > 0:
        chunk = stream.read(min(_CHUNK, remaining))
        if not chunk:
            break
        body += chunk
        remaining -= len(chunk)
    return bytes(body)


def wsgi_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers of a WSGI ``environ``."""
    return {
        key[5:].replace("_", "-"): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
