"""The segment-analytics-python hook, with a real analytics-python client and no internet."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import segment.analytics as analytics
from segment.analytics.client import Client
from support_integrations import RecordingForwarder, ReportingForwarder

from lago_segment.errors import MappingError, QueueFullError
from lago_segment.integrations.analytics import METHODS, Instrumentation, instrument

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

CALLS: dict[str, Callable[[Any], Any]] = {
    "track": lambda c: c.track("u1", "API Call", {"tokens": 3}, message_id="m", timestamp=WHEN),
    "identify": lambda c: c.identify("u1", {"plan": "pro"}, message_id="m", timestamp=WHEN),
    "group": lambda c: c.group("u1", "acme", {"seats": 4}, message_id="m", timestamp=WHEN),
    "page": lambda c: c.page("u1", "Docs", "Pricing", message_id="m", timestamp=WHEN),
    "screen": lambda c: c.screen("u1", "App", "Home", message_id="m", timestamp=WHEN),
    "alias": lambda c: c.alias("anon-1", "u1", message_id="m", timestamp=WHEN),
}


@pytest.fixture
def client() -> Client:
    return Client(write_key="test", send=False)


@pytest.fixture
def default_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``segment.analytics`` module, configured not to send, its default client reset."""
    monkeypatch.setattr(analytics, "write_key", "test")
    monkeypatch.setattr(analytics, "send", False)
    monkeypatch.setattr(analytics, "default_client", None)
    return analytics


def test_the_hook_covers_the_six_message_calls() -> None:
    assert set(METHODS) == set(CALLS)


@pytest.mark.parametrize("call", CALLS)
def test_each_call_forwards_the_message_analytics_python_built(
    client: Client, forwarder: RecordingForwarder, call: str
) -> None:
    instrument(client, forwarder)
    success, msg = CALLS[call](client)
    assert success is True
    assert forwarder.events == [msg]
    assert msg["type"] == call
    assert msg["messageId"] == "m"
    assert msg["timestamp"] == "2026-01-02T03:04:05.000+00:00"


@pytest.mark.parametrize("call", CALLS)
def test_the_host_gets_the_same_result_as_without_the_hook(
    forwarder: RecordingForwarder, call: str
) -> None:
    plain, hooked = Client(write_key="test", send=False), Client(write_key="test", send=False)
    instrument(hooked, forwarder)
    assert CALLS[call](hooked) == CALLS[call](plain)


def test_generated_message_ids_and_timestamps_are_forwarded(
    client: Client, forwarder: RecordingForwarder
) -> None:
    instrument(client, forwarder)
    _, msg = client.track("u1", "API Call")
    assert forwarder.events[0]["messageId"] == msg["messageId"]
    assert forwarder.events[0]["timestamp"] == msg["timestamp"]


def test_analytics_python_errors_still_reach_the_host_and_nothing_is_forwarded(
    client: Client, forwarder: RecordingForwarder
) -> None:
    instrument(client, forwarder)
    with pytest.raises(AssertionError, match="event"):
        client.track("u1", None)
    assert forwarder.events == []


def test_other_clients_are_not_hooked(client: Client, forwarder: RecordingForwarder) -> None:
    other = Client(write_key="test", send=False)
    instrument(client, forwarder)
    other.track("u1", "API Call")
    assert forwarder.events == []


def test_undo_restores_the_client_exactly(client: Client, forwarder: RecordingForwarder) -> None:
    before = dict(vars(client))
    instrument(client, forwarder).undo()
    assert vars(client) == before
    client.track("u1", "API Call")
    assert forwarder.events == []


def test_undo_is_idempotent(client: Client, forwarder: RecordingForwarder) -> None:
    handle = instrument(client, forwarder)
    handle.undo()
    handle.undo()
    assert not handle.active
    assert "track" not in vars(client)


def test_the_handle_is_a_context_manager(client: Client, forwarder: RecordingForwarder) -> None:
    with instrument(client, forwarder) as handle:
        client.track("u1", "API Call")
    client.track("u1", "API Call")
    assert isinstance(handle, Instrumentation)
    assert not handle.active
    assert len(forwarder.events) == 1


def test_instrumenting_twice_with_one_forwarder_forwards_once(
    client: Client, forwarder: RecordingForwarder
) -> None:
    first, second = instrument(client, forwarder), instrument(client, forwarder)
    client.track("u1", "API Call")
    assert len(forwarder.events) == 1
    first.undo()
    client.track("u1", "API Call")
    assert len(forwarder.events) == 2
    second.undo()
    assert "track" not in vars(client)


def test_two_forwarders_each_get_every_message_until_undone(client: Client) -> None:
    a, b = RecordingForwarder(), RecordingForwarder()
    handle_a = instrument(client, a)
    instrument(client, b)
    client.track("u1", "API Call")
    handle_a.undo()
    client.identify("u1")
    assert [m["type"] for m in a.events] == ["track"]
    assert [m["type"] for m in b.events] == ["track", "identify"]


def test_undo_leaves_a_later_patch_in_place(client: Client, forwarder: RecordingForwarder) -> None:
    handle = instrument(client, forwarder)
    hooked_track = client.track

    def later_patch(*args: Any, **kwargs: Any) -> Any:
        return hooked_track(*args, **kwargs)

    client.track = later_patch
    handle.undo()
    assert client.track is later_patch
    client.track("u1", "API Call")
    assert forwarder.events == []


def test_calls_through_the_module_are_forwarded(
    default_module: Any, forwarder: RecordingForwarder
) -> None:
    with instrument(default_module, forwarder):
        success, msg = default_module.track("u1", "API Call")
    assert success is True
    assert forwarder.events == [msg]


def test_undo_restores_the_module_functions(
    default_module: Any, forwarder: RecordingForwarder
) -> None:
    originals = {name: getattr(default_module, name) for name in METHODS}
    instrument(default_module, forwarder).undo()
    assert {name: getattr(default_module, name) for name in METHODS} == originals


def test_module_and_its_default_client_hooked_forward_once(
    default_module: Any, forwarder: RecordingForwarder
) -> None:
    default_module.flush()  # creates the default client
    instrument(default_module.default_client, forwarder)
    instrument(default_module, forwarder)
    default_module.track("u1", "API Call")
    assert len(forwarder.events) == 1


@pytest.mark.parametrize(
    "error", [MappingError("no rule"), QueueFullError("full"), RuntimeError("bug")]
)
def test_a_forwarding_failure_never_breaks_the_host_call(
    client: Client, forwarder: RecordingForwarder, error: Exception
) -> None:
    reported: list[tuple[Exception, Any]] = []
    forwarder.raises = error
    instrument(client, forwarder, on_error=lambda e, m: reported.append((e, m)))
    success, msg = client.track("u1", "API Call")
    assert success is True
    assert reported == [(error, msg)]


def test_failures_go_to_the_forwarders_report_method(client: Client) -> None:
    forwarder = ReportingForwarder()
    forwarder.raises = QueueFullError("full")
    instrument(client, forwarder)
    _, msg = client.track("u1", "API Call")
    assert forwarder.reported == [(forwarder.raises, msg)]


def test_failures_are_logged_without_an_error_callback(
    client: Client, forwarder: RecordingForwarder, caplog: pytest.LogCaptureFixture
) -> None:
    forwarder.raises = QueueFullError("queue is full")
    instrument(client, forwarder)
    with caplog.at_level(logging.ERROR, logger="lago_segment"):
        _, msg = client.track("u1", "API Call")
    assert msg["messageId"] in caplog.text
    assert "queue is full" in caplog.text


def test_an_error_callback_that_raises_is_contained(
    client: Client, forwarder: RecordingForwarder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(error: Exception, event: Any) -> None:
        raise ValueError("callback bug")

    forwarder.raises = RuntimeError("forward bug")
    instrument(client, forwarder, on_error=broken)
    with caplog.at_level(logging.ERROR, logger="lago_segment"):
        assert client.track("u1", "API Call")[0] is True
    assert "forward bug" in caplog.text


def test_other_targets_are_refused(forwarder: RecordingForwarder) -> None:
    with pytest.raises(TypeError, match="not object"):
        instrument(object(), forwarder)


def test_a_missing_analytics_python_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, forwarder: RecordingForwarder
) -> None:
    monkeypatch.setitem(sys.modules, "segment.analytics", None)
    with pytest.raises(ModuleNotFoundError, match=r"lago-segment\[analytics\]"):
        instrument(object(), forwarder)


class _SegmentStub(BaseHTTPRequestHandler):
    batches: list[Any]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.batches.append(json.loads(self.rfile.read(length))["batch"])
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def segment_stub() -> Iterator[tuple[str, list[Any]]]:
    """A loopback stand-in for Segment's tracking API; yields its URL and the batches it got."""
    batches: list[Any] = []
    handler = type("Handler", (_SegmentStub,), {"batches": batches})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", batches
    server.shutdown()
    server.server_close()
    thread.join()


def test_sync_mode_still_sends_to_segment_and_forwards(
    segment_stub: tuple[str, list[Any]], forwarder: RecordingForwarder
) -> None:
    url, batches = segment_stub
    client = Client(write_key="test", host=url, sync_mode=True)
    instrument(client, forwarder)
    success, msg = client.track("u1", "API Call", {"tokens": 3})
    assert success is True
    assert batches == [[msg]]
    assert forwarder.events == [msg]
