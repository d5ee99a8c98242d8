"""FakeLago: Lago's events endpoints in memory, with Lago's semantics and injectable faults."""

from __future__ import annotations

import contextlib
import enum
import json
import random
import socket
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from lago_segment.errors import ConfigurationError
from lago_segment.testing import _fake_lago_webhooks as _lago_webhooks
from lago_segment.testing._lago_answers import (
    Outcome,
    check_event,
    error,
    render_event,
    validation_error,
)

__all__ = ["FakeLago", "Fault"]

_MAX_BATCH = 100


class Fault(enum.Enum):
    """A failure :class:`FakeLago` can inject instead of (or after) answering."""

    RATE_LIMIT = "rate_limit"
    """429 with ``X-RateLimit-Limit/Remaining/Reset`` headers; nothing stored."""
    SERVER_ERROR = "server_error"
    """503; nothing stored. (Script an int such as 500 or 502 for another status.)"""
    TIMEOUT = "timeout"
    """No answer in time: ``httpx.ReadTimeout`` in-process; over a socket the
    request is held for ``timeout_delay`` seconds, then the connection closed."""
    DROP = "drop"
    """The connection drops before the request is processed; nothing stored."""
    ACCEPT_THEN_DROP = "accept_then_drop"
    """The request is processed (events stored) but the response is lost: a retry
    must then be recognised as a duplicate."""


class FakeLago:
    """An in-memory Lago events API for tests, in-process or over a loopback socket.

    It behaves like Lago: Bearer-token auth (401 otherwise), snake_case keys
    only (unknown keys are dropped, so ``transactionId`` ends as
    ``value_is_mandatory``), Unix-seconds timestamps (ISO strings get
    ``invalid_format``), batches of 1 to 100 events that are atomic with
    index-keyed ``error_details``, and 422 ``value_already_exist`` for a
    transaction_id already stored for the same subscription. It is stricter
    than Lago on property values: only strings and numbers are accepted.

    In-process, with any client that takes an httpx transport::

        fake = FakeLago(api_key="test-key")
        client = LagoClient(
            "test-key", api_url=fake.url, http_client=httpx.Client(transport=fake.transport)
        )

    Over a real socket: ``with fake.serve() as url: ...``.

    Faults: :meth:`script` queues faults for the next requests (``None`` for
    a normal answer, an ``int`` for that status), :meth:`fail_randomly` injects
    them at random with a seed. What was stored is in :attr:`events`.
    The fake is thread-safe.

    It also plays Lago's later part: :meth:`add_billable_metric` configures
    the metrics ``GET /api/v1/billable_metrics`` lists (paginated),
    :meth:`post_validate` finds what Lago's hourly ``events.errors`` would
    report, and :meth:`send_events_errors` POSTs that webhook, signed (``hmac``
    with :attr:`webhook_hmac_key`, or ``jwt`` with the key served at
    ``GET /api/v1/webhooks/json_public_key``; jwt needs ``cryptography``).
    """

    url = "https://fake-lago.test"
    """A placeholder origin to use with :attr:`transport` (any origin works)."""

    def __init__(
        self,
        api_key: str = "fake-lago-api-key",
        *,
        rate_limit_reset: float = 1.0,
        timeout_delay: float = 2.0,
    ) -> None:
        self._api_key = api_key
        self.rate_limit_reset = rate_limit_reset
        """Seconds sent in ``X-RateLimit-Reset`` with an injected 429."""
        self.timeout_delay = timeout_delay
        """How long a socket request is held on :attr:`Fault.TIMEOUT` before closing."""
        self.fees: dict[str, list[dict[str, Any]]] = {}
        """Fees ``estimate_fees`` returns, by billable metric code (default: none)."""
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._keys: set[tuple[str, str]] = set()
        self._script: deque[Fault | int | None] = deque()
        self._rng: random.Random | None = None
        self._rate = 0.0
        self._random_faults: tuple[Fault | int, ...] = ()
        self._requests = 0
        self._faults: list[Fault | int] = []
        self._stopping = threading.Event()
        self.billable_metrics: list[dict[str, Any]] = []
        """Billable metrics (Lago's JSON shape) served by ``GET /api/v1/billable_metrics``
        and used by :meth:`post_validate`; :meth:`add_billable_metric` appends one."""
        self.webhook_hmac_key = str(uuid.uuid4())
        """The organization's HMAC Signature Token: :meth:`send_webhook` signs with it."""
        self._rsa_key: Any = None
        self._reported: set[str] = set()

    def __repr__(self) -> str:
        return f"FakeLago(events={len(self._events)}, requests={self._requests})"

    # -- what tests look at -------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every stored event, in the order stored, as Lago kept it (known keys only)."""
        with self._lock:
            return [dict(e) for e in self._events]

    def stored_transaction_ids(self) -> list[str]:
        """The transaction_ids stored, in order (a duplicate here would be a bug)."""
        with self._lock:
            return [e["transaction_id"] for e in self._events]

    @property
    def request_count(self) -> int:
        """How many requests reached the fake (including faulted ones)."""
        with self._lock:
            return self._requests

    @property
    def injected_faults(self) -> list[Fault | int]:
        """The faults injected so far, in order."""
        with self._lock:
            return list(self._faults)

    def reset(self) -> None:
        """Forget stored events, counters and pending faults."""
        with self._lock:
            self._events.clear()
            self._keys.clear()
            self._reported.clear()
            self._script.clear()
            self._rng = None
            self._requests = 0
            self._faults.clear()

    # -- billable metrics and Lago's webhooks ---------------------------------

    def add_billable_metric(
        self,
        code: str,
        aggregation_type: str = "count_agg",
        *,
        field_name: str | None = None,
        filters: Mapping[str, Iterable[str]] | None = None,
    ) -> dict[str, Any]:
        """Configure one billable metric (as Lago renders it) and return it.

        ``filters`` maps each filter key to the values the metric accepts.
        """
        metric = _lago_webhooks.billable_metric(code, aggregation_type, field_name, filters)
        with self._lock:
            self.billable_metrics.append(metric)
        return metric

    def post_validate(self) -> dict[str, list[str]]:
        """Lago's hourly post-validation of the stored events not reported yet.

        Returns the ``events_errors`` lists (``invalid_code``,
        ``missing_aggregation_property``, ``invalid_filter_values``) and marks
        their events reported, as Lago does for each past hour.
        """
        with self._lock:
            events = [e for e in self._events if e["transaction_id"] not in self._reported]
            metrics = list(self.billable_metrics)
        errors = _lago_webhooks.post_validate(events, metrics)
        with self._lock:
            self._reported.update(e["transaction_id"] for e in events)
        return errors

    def send_events_errors(
        self, url: str, *, algorithm: str = "hmac", unique_key: str | None = None
    ) -> httpx.Response | None:
        """Post-validate (see :meth:`post_validate`) and POST a signed ``events.errors``
        webhook to ``url``; None when every list is empty (Lago sends nothing then)."""
        errors = self.post_validate()
        if not any(errors.values()):
            return None
        payload = {
            "webhook_type": "events.errors",
            "object_type": "events_errors",
            "organization_id": "fake-organization",
            "events_errors": {
                "invalid_code": errors["invalid_code"],
                "missing_aggregation_property": errors["missing_aggregation_property"],
                "missing_group_key": None,
                "invalid_filter_values": errors["invalid_filter_values"],
            },
        }
        return self.send_webhook(url, payload, algorithm=algorithm, unique_key=unique_key)

    def send_webhook(
        self,
        url: str,
        payload: Mapping[str, Any],
        *,
        algorithm: str = "hmac",
        unique_key: str | None = None,
        issuer: str | None = None,
    ) -> httpx.Response:
        """POST ``payload`` to ``url`` as Lago sends a webhook, signed in ``algorithm``
        (``hmac`` or ``jwt``) with ``X-Lago-Unique-Key`` (a new UUID unless given)."""
        body = json.dumps(payload).encode()
        signature = _lago_webhooks.sign(self, body, algorithm, issuer or self.url)
        headers = {
            "Content-Type": "application/json",
            "X-Lago-Signature": signature,
            "X-Lago-Signature-Algorithm": algorithm,
            "X-Lago-Unique-Key": unique_key or str(uuid.uuid4()),
        }
        return httpx.post(url, content=body, headers=headers, timeout=30)

    @property
    def webhook_public_key(self) -> str:
        """Base64 of the PEM of the key jwt webhooks are signed with, as Lago serves it."""
        return _lago_webhooks.public_key_b64(self)

    # -- fault injection ----------------------------------------------------

    def script(self, *faults: Fault | int | None) -> None:
        """Inject these faults into the next requests, one per request, in order.

        ``None`` answers normally; an ``int`` answers with that status code.
        """
        with self._lock:
            self._script.extend(faults)

    def fail_randomly(
        self,
        rate: float,
        *,
        seed: int = 0,
        faults: Iterable[Fault | int] = tuple(Fault),
    ) -> None:
        """Inject a fault (picked from ``faults``) into a ``rate`` share of requests.

        Seeded, so a failing run can be replayed. Scripted faults go first.
        """
        if not 0 <= rate <= 1:
            raise ConfigurationError("rate", f"must be between 0 and 1, not {rate}")
        with self._lock:
            self._rng = random.Random(seed)
            self._rate = rate
            self._random_faults = tuple(faults)

    def _next_fault(self) -> Fault | int | None:
        if self._script:
            return self._script.popleft()
        if self._rng is not None and self._random_faults and self._rng.random() < self._rate:
            return self._rng.choice(self._random_faults)
        return None

    # -- the endpoint -------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Answer one request (the transport and the server both call this)."""
        with self._lock:
            self._requests += 1
            fault = self._next_fault()
            if fault is not None:
                self._faults.append(fault)
            if fault in (Fault.TIMEOUT, Fault.DROP):
                return Outcome(fault=Fault.DROP if fault is Fault.DROP else Fault.TIMEOUT)
            if fault is Fault.RATE_LIMIT:
                return Outcome(
                    429,
                    {"status": 429, "error": "Too Many Requests"},
                    {
                        "X-RateLimit-Limit": "500",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{self.rate_limit_reset:g}",
                    },
                )
            if fault is Fault.SERVER_ERROR:
                return error(503, "Service Unavailable")
            if isinstance(fault, int):
                return error(fault, HTTPStatus(fault).phrase)
            outcome = self._process(method, path, headers, body)
            if fault is Fault.ACCEPT_THEN_DROP:
                return Outcome(fault=Fault.DROP)
            return outcome

    def _process(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth != f"Bearer {self._api_key}":
            return error(401, "Unauthorized")
        path, _, query = path.partition("?")
        if method == "GET":
            return _lago_webhooks.get(self, path.rstrip("/"), query)
        route = {
            "/api/v1/events": self._create,
            "/api/v1/events/batch": self._batch,
            "/api/v1/events/estimate_fees": self._estimate,
        }.get(path.rstrip("/"))
        if method != "POST" or route is None:
            return error(404, "Not Found", code="route_not_found")
        try:
            data = json.loads(body)
        except ValueError:
            return error(400, "BadRequest: the body is not valid JSON")
        if not isinstance(data, dict):
            return error(400, "BadRequest: the body must be a JSON object")
        return route(data)

    def _create(self, data: dict[str, Any]) -> Outcome:
        raw = data.get("event")
        if not isinstance(raw, dict) or not raw:
            return error(400, "BadRequest: param is missing or the value is empty: event")
        event, errors = check_event(raw, self._keys, set())
        if errors:
            return validation_error(errors)
        return Outcome(200, {"event": self._store(event)})

    def _batch(self, data: dict[str, Any]) -> Outcome:
        raw = data.get("events")
        if not isinstance(raw, list):
            return error(400, "BadRequest: param is missing or the value is empty: events")
        if not raw:
            return validation_error({"events": ["no_events"]})
        if len(raw) > _MAX_BATCH:
            return validation_error({"events": ["too_many_events"]})
        seen: set[tuple[str, str]] = set()
        checked = []
        details: dict[str, Any] = {}
        for index, item in enumerate(raw):
            event, errors = check_event(item, self._keys, seen)
            if errors:
                details[str(index)] = errors
            checked.append(event)
        if details:  # atomic: one bad event and nothing is stored
            return validation_error(details)
        return Outcome(200, {"events": [self._store(e) for e in checked]})

    def _estimate(self, data: dict[str, Any]) -> Outcome:
        raw = data.get("event")
        if not isinstance(raw, dict):
            return error(400, "BadRequest: param is missing or the value is empty: event")
        errors = {
            key: ["value_is_mandatory"]
            for key in ("code", "external_subscription_id")
            if not isinstance(raw.get(key), str) or not raw[key]
        }
        if errors:
            return validation_error(errors)
        return Outcome(200, {"fees": list(self.fees.get(raw["code"], []))})

    def _store(self, event: dict[str, Any]) -> dict[str, Any]:
        self._events.append(event)
        self._keys.add((event["external_subscription_id"], event["transaction_id"]))
        return render_event(event)

    # -- in-process transport -----------------------------------------------

    @property
    def transport(self) -> httpx.MockTransport:
        """An ``httpx.MockTransport`` serving this fake (for sync and async clients alike)."""
        return httpx.MockTransport(self._handle_httpx)

    def _handle_httpx(self, request: httpx.Request) -> httpx.Response:
        outcome = self.handle(
            request.method,
            request.url.raw_path.decode("ascii"),
            dict(request.headers),
            request.content,
        )
        if outcome.fault is Fault.TIMEOUT:
            raise httpx.ReadTimeout("FakeLago: injected timeout", request=request)
        if outcome.fault is Fault.DROP:
            raise httpx.RemoteProtocolError(
                "FakeLago: server disconnected without sending a response", request=request
            )
        return httpx.Response(outcome.status, json=outcome.payload, headers=outcome.headers)

    # -- real loopback server -----------------------------------------------

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve this fake over HTTP on loopback; yields its URL (``http://127.0.0.1:PORT``).

        The server stops, and its thread is joined, when the block exits.
        """
        fake = self
        self._stopping.clear()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in one write (handle_one_request flushes), and
            # TCP_NODELAY: else Nagle holds the body until the client's delayed ACK
            # (~40 ms a request instead of ~1 ms).
            wbufsize = 1 << 16

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                outcome = fake.handle(self.command, self.path, dict(self.headers), body)
                if outcome.fault is not None:
                    if outcome.fault is Fault.TIMEOUT:
                        fake._stopping.wait(fake.timeout_delay)
                    self.close_connection = True
                    return
                payload = json.dumps(outcome.payload).encode()
                self.send_response(outcome.status)
                for name, value in outcome.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        try:
            yield f"http://{host}:{server.server_address[1]}"
        finally:
            self._stopping.set()
            server.shutdown()
            server.server_close()
            thread.join()
