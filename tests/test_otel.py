"""OpenTelemetry metrics: what the forwarders and clients record, read with the SDK's
in-memory reader."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")

from forwarder_support import FakeSender, TinySpec, track
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from lago_segment import otel
from lago_segment.client import LagoClient, RetryPolicy
from lago_segment.errors import ConfigurationError, LagoValidationError
from lago_segment.forwarder import Forwarder
from lago_segment.testing import FakeLago, Fault

API_KEY = "otel-test-key"


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel.use_meter_provider(provider)
    yield reader
    otel.use_meter_provider(None)
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name == "lago_segment"
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def events_by(reader: InMemoryMetricReader, forwarder: str) -> dict[tuple[Any, ...], int]:
    """``lago_segment.events`` of one forwarder: (outcome, code, error, lago code) -> value."""
    found = {}
    for point in points(reader, "lago_segment.events"):
        attrs = point.attributes
        if attrs.get("lago_segment.forwarder.name") != forwarder:
            continue
        key = (
            attrs["lago_segment.event.outcome"],
            attrs.get("lago.event.code"),
            attrs.get("error.type"),
            attrs.get("lago.error.code"),
        )
        found[key] = point.value
    return found


def make_forwarder(name: str, sender: FakeSender, **options: Any) -> Forwarder:
    forwarder = Forwarder(sender, spec=TinySpec(), on_error=lambda failure: None, **options)
    otel.name_forwarder(forwarder, name)
    return forwarder


def test_delivered_and_skipped_events_are_counted_by_outcome_and_code(reader):
    with make_forwarder("counts", FakeSender()) as forwarder:
        forwarder.forward(track(1))
        forwarder.forward(track(2))
        forwarder.forward({"type": "identify", "userId": "u1", "messageId": "i1"})
        assert forwarder.flush(5)

    assert events_by(reader, "counts") == {
        ("mapped", "api_calls", None, None): 2,
        ("enqueued", "api_calls", None, None): 2,
        ("delivered", "api_calls", None, None): 2,
        ("skipped", None, None, None): 1,
    }


def test_failures_carry_the_error_class_and_lagos_error_code(reader):
    sender = FakeSender()
    error = LagoValidationError(
        422, "Unprocessable Entity", error_details={"timestamp": ["invalid_format"]}
    )
    sender.fail["m1"] = (error, True)
    sender.duplicates.add("m2")
    with make_forwarder("failures", sender) as forwarder:
        for n in (1, 2, 3):
            forwarder.forward(track(n))
        assert forwarder.flush(5)

    counts = events_by(reader, "failures")
    assert counts[("failed", "api_calls", "LagoValidationError", "invalid_format")] == 1
    assert counts[("duplicate", "api_calls", None, None)] == 1
    # Duplicates are delivered too (ForwarderStats counts them in delivered).
    assert counts[("delivered", "api_calls", None, None)] == 1


def test_events_dropped_on_a_full_queue_are_counted(reader):
    sender = FakeSender()
    sender.gate = threading.Event()
    forwarder = make_forwarder("full", sender, max_queue_size=2, on_full="drop", batch_size=1)
    try:
        forwarder.forward(track(1))
        assert sender.entered.wait(5)  # m1 in flight counts in the queue: room for one more
        forwarder.forward(track(2))
        forwarder.forward(track(3))
    finally:
        sender.gate.set()
        forwarder.close(5)

    counts = events_by(reader, "full")
    assert counts[("dropped", "api_calls", "QueueFullError", None)] == 1
    assert counts[("mapped", "api_calls", None, None)] == 3


def test_rejected_events_are_counted_without_a_code(reader):
    with make_forwarder("rejected", FakeSender(), mapping_errors="report") as forwarder:
        forwarder.forward({"type": "nonsense", "messageId": "x"})
    assert events_by(reader, "rejected") == {("rejected", None, None, None): 1}


def test_queue_depth_and_batches_in_flight_are_observed_while_lago_is_slow(reader):
    sender = FakeSender()
    sender.gate = threading.Event()
    # One sender: the second event waits in the queue (with more senders, which
    # of them takes it when is a race).
    forwarder = make_forwarder("gauges", sender, batch_size=1, max_in_flight=1)
    try:
        forwarder.forward(track(1))
        assert sender.entered.wait(5)
        forwarder.forward(track(2))

        def gauge(name: str) -> int:
            (value,) = [
                p.value
                for p in points(reader, name)
                if p.attributes["lago_segment.forwarder.name"] == "gauges"
            ]
            return int(value)

        assert gauge("lago_segment.forwarder.queue.depth") == 2
        assert gauge("lago_segment.forwarder.batches.in_flight") == 1
    finally:
        sender.gate.set()
        forwarder.close(5)


def test_spool_depth_is_its_own_gauge(reader, tmp_path):
    sender = FakeSender()
    sender.gate = threading.Event()
    forwarder = make_forwarder("spooled", sender, spool=tmp_path / "spool.db", batch_size=1)
    try:
        forwarder.forward(track(1))
        assert sender.entered.wait(5)
        spool = [
            p.value
            for p in points(reader, "lago_segment.forwarder.spool.depth")
            if p.attributes["lago_segment.forwarder.name"] == "spooled"
        ]
        queue = [
            p
            for p in points(reader, "lago_segment.forwarder.queue.depth")
            if p.attributes["lago_segment.forwarder.name"] == "spooled"
        ]
        assert spool == [1]
        assert queue == []
    finally:
        sender.gate.set()
        forwarder.close(5)


def client(fake: FakeLago) -> LagoClient:
    return LagoClient(
        API_KEY,
        api_url=fake.url,
        http_client=httpx.Client(transport=fake.transport),
        retry=RetryPolicy(attempts=3, sleep=lambda seconds: None),
    )


def test_the_client_records_request_durations_batch_sizes_and_retried_events(reader):
    from lago_segment.testing import set_testing

    fake = FakeLago(api_key=API_KEY)
    fake.script(Fault.SERVER_ERROR)
    events = [
        {"transaction_id": f"t{n}", "external_subscription_id": "s", "code": "retry_me"}
        for n in range(3)
    ]
    from lago_segment import LagoEvent

    set_testing(True)
    try:
        with client(fake) as lago:
            result = lago.send_batch(LagoEvent(**e, timestamp=1) for e in events)
    finally:
        set_testing(False)
    assert len(result.delivered) == 3

    durations = {
        p.attributes.get("http.response.status_code"): p.count
        for p in points(reader, "lago_segment.client.request.duration")
        if p.attributes["url.path"] == "/api/v1/events/batch"
    }
    assert durations == {503: 1, 200: 1}
    (sizes,) = points(reader, "lago_segment.client.batch.size")
    assert (sizes.count, sizes.sum) == (1, 3)
    retried = [
        p.value
        for p in points(reader, "lago_segment.events")
        if p.attributes.get("lago.event.code") == "retry_me"
    ]
    assert retried == [3]


def test_instruments_follow_the_semantic_convention_style():
    for name, (_kind, unit, description) in otel.INSTRUMENTS.items():
        assert name.startswith("lago_segment.")
        assert name == name.lower()
        assert unit in ("s", "{event}", "{batch}")
        assert description.endswith(".")


def test_name_forwarder_refuses_what_is_not_a_forwarder():
    with pytest.raises(ConfigurationError, match="expected a Forwarder"):
        otel.name_forwarder(object(), "x")
    with make_forwarder("ok", FakeSender()) as forwarder, pytest.raises(ConfigurationError):
        otel.name_forwarder(forwarder, "")


def test_the_default_error_log_carries_message_id_rule_and_transaction_id(caplog):
    sender = FakeSender()
    sender.fail["m7"] = (LagoValidationError(422, "Unprocessable Entity"), True)
    caplog.set_level(logging.WARNING, logger="lago_segment")
    with Forwarder(sender, spec=TinySpec()) as forwarder:
        forwarder.forward(track(7))
        assert forwarder.flush(5)
    (record,) = [r for r in caplog.records if r.name == "lago_segment"]
    assert (record.message_id, record.transaction_id, record.rule) == ("m7", "m7", None)


def test_a_mapping_error_log_names_the_rule(caplog):
    from lago_segment.mapping import MappingSpec

    spec = MappingSpec.from_dict(
        {
            "rules": [
                {
                    "name": "calls",
                    "when": 'event = "API Call"',
                    "code": "api_calls",
                    "external_subscription_id": {"@path": "$.properties.missing"},
                }
            ]
        }
    )
    caplog.set_level(logging.WARNING, logger="lago_segment")
    with Forwarder(FakeSender(), spec=spec, mapping_errors="report") as forwarder:
        forwarder.forward(track(8))
    (record,) = [r for r in caplog.records if r.name == "lago_segment"]
    assert (record.message_id, record.rule) == ("m8", "calls")


SCRIPT = """
import sys
{block}
from lago_segment.forwarder import Forwarder
from lago_segment.client import BatchResult
from lago_segment import otel

class Sender:
    def send_batch(self, events):
        return BatchResult(delivered=tuple(events))

spec = type("S", (), {{"map": lambda self, e: []}})()
with Forwarder(Sender(), spec=spec) as forwarder:
    forwarder.forward({{"type": "track", "event": "x", "userId": "u", "messageId": "m"}})
loaded = sorted(m for m, v in sys.modules.items() if m.startswith("opentelemetry") and v)
print(otel.enabled(), loaded)
"""


def run_script(block: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(block=block)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return completed.stdout.strip()


def test_without_the_extra_nothing_is_imported_and_forwarding_works():
    # A None entry in sys.modules makes the import fail, as if not installed.
    assert run_script("sys.modules['opentelemetry'] = None") == "False []"


def test_importing_lago_segment_never_imports_opentelemetry_or_cryptography():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, lago_segment, lago_segment.otel, lago_segment.forwarder,"
            " lago_segment.lago_webhooks;"
            "print([m for m in sys.modules if m.startswith(('opentelemetry', 'cryptography'))])",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert out == "[]"


def test_with_the_extra_the_global_meter_provider_is_used():
    block = """
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
import atexit
def show():
    data = reader.get_metrics_data()
    names = sorted({m.name for r in data.resource_metrics for s in r.scope_metrics
                    if s.scope.name == "lago_segment" for m in s.metrics})
    print(names)
atexit.register(show)
"""
    out = run_script(block)
    assert "True" in out
    assert "'lago_segment.events'" in out
    assert "'lago_segment.forwarder.queue.depth'" in out


def test_the_production_page_lists_every_instrument_in_its_table():
    from pathlib import Path

    page = Path(__file__).resolve().parent.parent / "docs" / "production.md"
    rows = [
        line.split("|")[1].strip().strip("`")
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `lago_segment.")
        and line.split("|")[2].strip().split()[0] in ("counter", "histogram", "gauge")
    ]
    assert rows == list(otel.INSTRUMENTS)


def test_counts_from_many_threads_add_up_and_outlive_their_threads(reader):
    sender = FakeSender()
    forwarder = make_forwarder("threads", sender)
    threads = [
        threading.Thread(
            target=lambda k=k: [forwarder.forward(track(k * 1000 + n)) for n in range(200)]
        )
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    del threads, thread  # the threads' own counts are now retired
    forwarder.close(5)
    counts = events_by(reader, "threads")
    assert counts[("enqueued", "api_calls", None, None)] == 800
    assert counts[("delivered", "api_calls", None, None)] == 800
    # Collected again: cumulative, unchanged.
    assert events_by(reader, "threads") == counts


async def test_the_async_forwarder_records_the_same_outcomes(reader):
    from lago_segment.forwarder import AsyncForwarder

    class AsyncSender:
        async def send_batch(self, events):
            from lago_segment.client import BatchResult

            return BatchResult(delivered=tuple(events))

    forwarder = AsyncForwarder(AsyncSender(), spec=TinySpec())
    otel.name_forwarder(forwarder, "async")
    forwarder.forward(track(1))
    forwarder.forward({"type": "identify", "userId": "u1", "messageId": "i1"})
    await forwarder.aclose()
    assert events_by(reader, "async") == {
        ("mapped", "api_calls", None, None): 1,
        ("enqueued", "api_calls", None, None): 1,
        ("delivered", "api_calls", None, None): 1,
        ("skipped", None, None, None): 1,
    }
