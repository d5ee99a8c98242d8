"""Fast local HTTP endpoints answering every POST with 200, and the raw-floor measure.

:func:`local_endpoint` starts nginx (Debian's ``nginx-light`` or ``nginx``
package: ``apt-get install -y nginx-light``) as a foreground subprocess with a
generated config in a temporary directory::

    daemon off; worker_processes 1;
    server { listen 127.0.0.1:PORT; location / { return 200 '{"events":[]}'; } }

and stops it on exit. :func:`local_endpoints` starts one nginx with one such
server per round-trip time: 0 answers at once, any other answers after that
many seconds with the echo module (Debian's ``libnginx-mod-http-echo``)::

    load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
    ... location / { echo_sleep 0.02; echo '{"events":[]}'; }

Without nginx on the PATH (or in ``/usr/sbin``), or without the echo module
when a delay is asked for, they fall back to a keep-alive ``http.server`` with
a thread per connection (sleeping for the delay), which is slower:
:func:`endpoint_kind` says which one ran, and the benchmarks print it.

:func:`raw_floor_events_per_s` is the floor every client is compared with:
pre-serialized 100-event bodies posted over one keep-alive ``httpx.Client``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "endpoint_kind",
    "local_endpoint",
    "local_endpoints",
    "nginx_path",
    "raw_floor_events_per_s",
    "sample_event",
]

_OK_BODY = b'{"events":[]}'

_ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"

_NGINX_CONF = """\
{load}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
{servers}}}
"""

_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            {answer}
        }}
    }}
"""


def nginx_path() -> str | None:
    """Where the nginx binary is, or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def echo_module() -> str | None:
    """Where nginx's echo module is (for delayed answers), or None."""
    for path in (_ECHO_MODULE, "/usr/share/nginx/modules/ngx_http_echo_module.so"):
        if Path(path).is_file():
            return path
    return None


def endpoint_kind(*, delayed: bool = False) -> str:
    """``"nginx"`` when the endpoints will be nginx, else the fallback's name and why."""
    if not nginx_path():
        return "python http.server (nginx not installed)"
    if delayed and not echo_module():
        return "python http.server (nginx's echo module not installed)"
    return "nginx"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError("nginx did not start listening within 10 s")


@contextlib.contextmanager
def _nginx(binary: str, delays: Sequence[float]) -> Iterator[dict[float, str]]:
    with tempfile.TemporaryDirectory(prefix="lago-bench-nginx-") as tmp:
        ports = {delay: _free_port() for delay in delays}
        servers = "".join(
            _SERVER.format(
                port=port,
                answer=f"echo_sleep {delay}; echo '{_OK_BODY.decode()}';"
                if delay
                else f"return 200 '{_OK_BODY.decode()}';",
            )
            for delay, port in ports.items()
        )
        module = echo_module()
        load = f"load_module {module};\n" if any(delays) and module else ""
        conf = Path(tmp, "nginx.conf")
        conf.write_text(_NGINX_CONF.format(tmp=tmp, load=load, servers=servers))
        log = Path(tmp, "error.log")
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", tmp, "-e", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            for port in ports.values():
                _wait_listening(port, proc, log)
            yield {delay: f"http://127.0.0.1:{port}" for delay, port in ports.items()}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _OkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.delay:
            time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(_OK_BODY)))
        self.end_headers()
        self.wfile.write(_OK_BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _python_server(delay: float = 0.0) -> Iterator[str]:
    handler = type("_Handler", (_OkHandler,), {"delay": delay})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def _python_servers(delays: Sequence[float]) -> Iterator[dict[float, str]]:
    with contextlib.ExitStack() as stack:
        yield {delay: stack.enter_context(_python_server(delay)) for delay in delays}


@contextlib.contextmanager
def local_endpoints(delays: Sequence[float]) -> Iterator[dict[float, str]]:
    """Start one 200-answering endpoint per delay (seconds); yields ``{delay: origin}``."""
    binary = nginx_path()
    if binary and (echo_module() or not any(delays)):
        with _nginx(binary, delays) as urls:
            yield urls
    else:
        with _python_servers(delays) as urls:
            yield urls


@contextlib.contextmanager
def local_endpoint() -> Iterator[str]:
    """Start the local 200-answering endpoint; yields its origin (``http://127.0.0.1:PORT``)."""
    with local_endpoints([0.0]) as urls:
        yield urls[0.0]


def sample_event(n: int) -> dict[str, Any]:
    """The wire form of benchmark event ``n`` (what ``LagoEvent.to_dict()`` renders)."""
    return {
        "transaction_id": f"bench-{n:08d}",
        "external_subscription_id": f"sub-{n % 50}",
        "code": "api_calls",
        "timestamp": 1_700_000_000 + n,
        "properties": {"calls": n % 7 + 1, "region": "eu-west-1"},
    }


def raw_floor_events_per_s(url: str, n: int, *, repeat: int = 3) -> float:
    """Events/s of posting pre-serialized 100-event bodies over one keep-alive ``httpx.Client``.

    The bodies are built before timing starts: this is the cost of HTTP alone.
    Best of ``repeat`` runs.
    """
    bodies = [
        json.dumps(
            {"events": [sample_event(i) for i in range(start, min(start + 100, n))]},
            separators=(",", ":"),
        ).encode()
        for start in range(0, n, 100)
    ]
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    best = float("inf")
    with httpx.Client() as client:
        client.post(f"{url}/api/v1/events/batch", content=bodies[0], headers=headers)  # warm up
        for _ in range(repeat):
            start = time.perf_counter()
            for body in bodies:
                client.post(
                    f"{url}/api/v1/events/batch", content=body, headers=headers
                ).raise_for_status()
            best = min(best, time.perf_counter() - start)
    return n / best
