"""The HTTP shell both webhook receivers share (Segment's and Lago's).

A receiver brings an I/O-free endpoint (its configuration and ``handle()``,
a subclass of :class:`JSONEndpoint`); this module answers everything around
it the same way for both: the checks made before reading a body (path,
method, ``Content-Length``), the short JSON answers, reading a capped body
and sending the response over ASGI 3 (:class:`ASGIEndpointApp`) or WSGI,
PEP 3333 (:class:`WSGIEndpointApp`). No framework: just the two protocols.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import IO, Any, Generic, Protocol, TypeVar

import attrs

__all__ = [
    "JSON_HEADERS",
    "ASGIEndpointApp",
    "EndpointApp",
    "JSONEndpoint",
    "Message",
    "Receive",
    "Response",
    "Scope",
    "Send",
    "StartResponse",
    "WSGIEndpointApp",
    "decoded_body",
    "header",
    "json_body",
    "json_headers",
    "json_headers_for",
    "mask",
    "read_asgi_body",
    "read_wsgi_body",
    "send_asgi",
    "wsgi_headers",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
StartResponse = Callable[..., Any]

_CHUNK = 64 * 1024


class Response(Protocol):
    """What a receiver answers: a status, headers and a body."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def body(self) -> bytes: ...


R = TypeVar("R", bound=Response)


# -- The JSON answers -----------------------------------------------------------


def json_body(status: int, error: str | None, fields: Mapping[str, object]) -> bytes:
    """The short JSON body of an answer: ``{"status": "ok"|"error", "error": ..., **fields}``."""
    data: dict[str, Any] = {"status": "ok" if status < 400 else "error"}
    if error is not None:
        data["error"] = error
    data.update(fields)
    return json.dumps(data, separators=(",", ":")).encode()


def json_headers(response: Any) -> tuple[tuple[str, str], ...]:
    """The headers of a JSON ``response`` (an ``attrs.Factory`` taking self)."""
    return json_headers_for(response.body)


def json_headers_for(body: bytes) -> tuple[tuple[str, str], ...]:
    """The headers of a JSON answer with this ``body``."""
    return (("Content-Type", "application/json"), ("Content-Length", str(len(body))))


JSON_HEADERS = attrs.Factory(json_headers, takes_self=True)
"""The default of a response class's ``headers`` field: those of its JSON ``body``."""


def decoded_body(response: Response) -> dict[str, Any]:
    """The body, decoded."""
    result: dict[str, Any] = json.loads(response.body)
    return result


# -- What an endpoint checks before and while handling --------------------------


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of the header ``name`` in ``headers``, matched case-insensitively."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def mask(secret: object) -> str:
    """How a secret appears in a repr: ``'***'`` (or ``None`` when there is none)."""
    return "None" if secret is None else "'***'"


class JSONEndpoint(Generic[R]):
    """The base of a receiver's endpoint: the checks made before reading a body.

    A subclass holds ``path`` (the only one answered, or None) and
    ``max_body_bytes``, and gives :meth:`refuse` (its error answers) and
    :meth:`handle` (the receiver's I/O-free core).
    """

    __slots__ = ()

    path: str | None
    max_body_bytes: int

    def refuse(self, status: int, error: str) -> R:
        """The error answer with this ``status`` and message."""
        raise NotImplementedError

    def handle(self, body: bytes, headers: Mapping[str, str]) -> R:
        """The answer to a request with this (complete) body."""
        raise NotImplementedError

    def precheck(self, method: str, path: str, content_length: str | None) -> R | None:
        """The answer due before reading the body (wrong path or method, too long), or None."""
        if self.path is not None and path != self.path:
            return self.refuse(404, "not found")
        if method != "POST":
            refused: Any = self.refuse(405, "only POST")  # both response classes are attrs
            # RFC 9110: a 405 names the methods allowed.
            allowed: R = attrs.evolve(refused, headers=(*refused.headers, ("Allow", "POST")))
            return allowed
        if content_length is not None:
            try:
                length = int(content_length)
            except ValueError:
                return self.refuse(400, "bad Content-Length")
            if length > self.max_body_bytes:
                return self.too_large()
        return None

    def too_large(self) -> R:
        """The 413 answer."""
        return self.refuse(413, f"body larger than {self.max_body_bytes} bytes")


E = TypeVar("E", bound="JSONEndpoint[Any]")


class EndpointApp(Generic[E]):
    """The base of the ASGI and WSGI apps: one endpoint, shown in the repr."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: E) -> None:
        self.endpoint = endpoint
        """The configuration (its repr masks the secrets)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint!r})"


# -- ASGI 3 ---------------------------------------------------------------------


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


class ASGIEndpointApp(EndpointApp[E]):
    """An ASGI 3 app serving one endpoint: the lifespan protocol, and HTTP requests.

    A subclass names itself in ``_serves`` and may hook the lifespan
    (:meth:`_startup`, :meth:`_shutdown`), other scopes (:meth:`_not_http`) and
    how a body is handled (:meth:`_handle`).
    """

    __slots__ = ()

    _serves = "this app"
    """What the error raised for a scope that is not HTTP calls the app."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self._not_http(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        endpoint = self.endpoint
        response = endpoint.precheck(scope["method"], scope["path"], headers.get("content-length"))
        if response is None:
            body = await read_asgi_body(receive, endpoint.max_body_bytes)
            if body is None:  # the client went away
                return
            response = (
                await self._handle(body, headers)
                if isinstance(body, bytes)
                else endpoint.too_large()
            )
        await send_asgi(send, response)

    async def _handle(self, body: bytes, headers: Mapping[str, str]) -> Response:
        """The answer to a request with this body: the endpoint's, on the event loop."""
        response: Response = self.endpoint.handle(body, headers)
        return response

    async def _not_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Close a WebSocket connection (403); raise :class:`ValueError` for other scopes."""
        if scope["type"] != "websocket":
            raise ValueError(f"{self._serves} serves HTTP, not {scope['type']!r}")
        # Answered, not raised: a stray WebSocket client is no reason for a traceback.
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})

    async def _startup(self) -> None:
        """Run at the lifespan's start-up, before it is reported complete."""

    async def _shutdown(self) -> None:
        """Run at the lifespan's shutdown, before it is reported complete."""

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


# -- WSGI (PEP 3333) ------------------------------------------------------------


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


class WSGIEndpointApp(EndpointApp[E]):
    """A WSGI (PEP 3333) app serving one endpoint."""

    __slots__ = ()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or None
        response = self.endpoint.precheck(
            environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), length
        )
        if response is None:
            response = self._read_and_handle(environ, length)
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        start_response(status, list(response.headers))
        return [response.body]

    def _read_and_handle(self, environ: dict[str, Any], length: str | None) -> Response:
        endpoint = self.endpoint
        limit = endpoint.max_body_bytes
        body = read_wsgi_body(environ, length, limit)
        response: Response
        if body is None:
            response = endpoint.refuse(411, "Content-Length required")
        elif len(body) > limit:
            response = endpoint.too_large()
        else:
            response = endpoint.handle(body, wsgi_headers(environ))
        return response
