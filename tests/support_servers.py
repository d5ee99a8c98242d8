"""Running the webhook apps for tests: served on loopback by uvicorn (ASGI) or wsgiref (WSGI),
or called directly through the ASGI protocol (``call_asgi``).

Each ``serve_*`` is a generator: ``for url in serve_asgi(app, "/path"): ...`` runs the body once
while the server listens on a free port of 127.0.0.1, then stops the server and joins its thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import uvicorn


class _UvicornServer(uvicorn.Server):
    """Tells a waiting test the moment it is listening (no polling)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def serve_asgi(app: Any, path: str = "") -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn (lifespan on); yield its URL, ending in ``path``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _UvicornServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    assert server.ready.wait(10), "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{path}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def serve_wsgi(app: Any, path: str = "") -> Iterator[str]:
    """Serve the WSGI ``app`` with wsgiref; yield its URL, ending in ``path``."""
    server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def call_asgi(
    app: Any, scope: dict[str, Any], messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """Run one ASGI ``scope`` through ``app`` fed ``messages``; return what it sent and read."""
    inbox = iter(messages)
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        return next(inbox)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, read
