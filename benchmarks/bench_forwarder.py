"""Forwarder benchmarks: caller latency, end-to-end throughput, memory while Lago is down.

- ``forward()`` p99 (with mapping) against segment-analytics-python's
  ``Client.track()`` p99 (and p50 against p50), queueing mode, same process,
  same run. Both background consumers run and upload to a no-op, so neither
  pays for HTTP.
- End-to-end events/s, raw Segment dicts -> ``Forwarder`` -> ``LagoClient`` ->
  a fast local endpoint, against the raw HTTP floor of the clients benchmark:
  with the standard library's json, and with orjson (``[speedups]``).
- Memory while Lago is down (the sender is stuck in a request) and 1,000,000
  events are offered (100,000 with ``--quick``): memory mode (bounded by
  ``max_queue_size``) and spool mode.

Run: ``python -m benchmarks.bench_forwarder``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lago_segment.client import BatchResult
from lago_segment.forwarder import Forwarder, Mapper
from lago_segment.lago import LagoEvent

from ._harness import OPTIONS, Result, percentile, print_table, scaled

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LATENCY_CALLS = 20_000
E2E_EVENTS = 20_000
MEMORY_OFFERED = 1_000_000


class _InlineSpec:
    """Used only when ``lago_segment.mapping`` or the examples are not there yet."""

    def map(self, event: Any) -> list[LagoEvent]:
        data = event if isinstance(event, Mapping) else event.payload
        return [
            LagoEvent(
                transaction_id=data["messageId"],
                external_subscription_id=data.get("userId") or data["anonymousId"],
                code=str(data.get("event", data["type"])),
                timestamp=1_714_564_860,
                properties={"status": str(data.get("properties", {}).get("status", ""))},
            )
        ]


def load_spec_and_events() -> tuple[Mapper, list[dict[str, Any]], str]:
    """The examples' spec and Segment events (only those the spec maps), or inline stand-ins."""
    try:
        from lago_segment.mapping import MappingSpec

        spec: Mapper = MappingSpec.load(EXAMPLES / "lago-mapping.toml")
        lines = (EXAMPLES / "segment-events.jsonl").read_text(encoding="utf-8").splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        tag = "examples spec"
    except (ImportError, OSError):
        spec = _InlineSpec()
        events = [
            {
                "type": "track",
                "event": "API Call",
                "messageId": f"msg-{i}",
                "userId": "user-1",
                "timestamp": "2024-05-01T12:01:00Z",
                "properties": {"endpoint": "/v1/users", "status": 200},
            }
            for i in range(32)
        ]
        tag = "inline spec"
    mappable = []
    for event in events:
        try:
            if spec.map(event):
                mappable.append(event)
        except Exception:
            continue
    return spec, mappable, tag


def with_ids(events: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` events cycled from ``events``, each with its own messageId."""
    return [{**events[i % len(events)], "messageId": f"bench-{i:08d}"} for i in range(n)]


class _NoOpClient:
    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        return BatchResult(delivered=tuple(events))


class _StuckClient:
    """Lago is down: the first request never returns (until released)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        self.release.wait()
        return BatchResult(delivered=tuple(events))


def _latencies(call: Callable[[Any], object], args: list[Any]) -> list[float]:
    clock = time.perf_counter_ns
    samples = []
    gc.collect()
    for arg in args:
        start = clock()
        call(arg)
        samples.append((clock() - start) / 1e3)
    return samples


def bench_latency() -> list[Result]:
    from segment.analytics.client import Client as AnalyticsClient  # type: ignore[import-untyped]

    spec, events, tag = load_spec_and_events()
    segment_events = with_ids(events, scaled(LATENCY_CALLS))

    forwarder = Forwarder(
        _NoOpClient(), spec=spec, max_queue_size=LATENCY_CALLS * 10, flush_at_exit=False
    )
    _latencies(forwarder.forward, with_ids(events, 2_000))  # warm up
    ours = _latencies(forwarder.forward, segment_events)
    forwarder.close()

    analytics = AnalyticsClient(
        write_key="bench", host="http://127.0.0.1:9", max_queue_size=LATENCY_CALLS * 10
    )
    for consumer in analytics.consumers or []:
        consumer.request = lambda batch: None  # a no-op upload: no HTTP in the way

    def track(event: dict[str, Any]) -> object:
        return analytics.track(
            user_id=event.get("userId"),
            event=event.get("event", "API Call"),
            properties=event.get("properties"),
            context=event.get("context"),
            message_id=event["messageId"],
        )

    _latencies(track, with_ids(events, 2_000))
    theirs = _latencies(track, segment_events)
    analytics.shutdown()

    mapping_only = _latencies(spec.map, segment_events)
    their_p50 = percentile(theirs, 50)
    return [
        Result(
            "analytics track() p99 (context)",
            percentile(theirs, 99),
            "µs",
            "analytics track p50",
            their_p50,
        ),
        Result(
            f"spec.map() alone p99 ({tag})",
            percentile(mapping_only, 99),
            "µs",
            "analytics track p50",
            their_p50,
        ),
        Result(
            f"forward() p50 ({tag})",
            percentile(ours, 50),
            "µs",
            "analytics track p50",
            their_p50,
        ),
        Result(
            f"forward() p99 ({tag})",
            percentile(ours, 99),
            "µs",
            "analytics track p99",
            percentile(theirs, 99),
            1.0,
        ),
        *bench_spool_latency(spec, events, their_p50),
    ]


def bench_spool_latency(
    spec: Mapper, events: list[dict[str, Any]], their_p50: float
) -> list[Result]:
    """Spool mode, with the sender busy (a no-op Lago: it competes for the GIL all
    the time) and idle (Lago stuck: forward() alone)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, client in (("sender busy", _NoOpClient()), ("sender idle", _StuckClient())):
            forwarder = Forwarder(
                client, spec=spec, spool=Path(tmp) / f"{label}.db", flush_at_exit=False
            )
            samples = _latencies(forwarder.forward, with_ids(events, scaled(LATENCY_CALLS) // 4))
            if isinstance(client, _StuckClient):
                client.release.set()
            forwarder.close(timeout=None if isinstance(client, _NoOpClient) else 0)
            for pct in (50, 99):
                rows.append(
                    Result(
                        f"forward() p{pct}, spool, {label}",
                        percentile(samples, pct),
                        "µs",
                        "analytics track p50",
                        their_p50,
                    )
                )
    return rows


def _end_to_end_rate(url: str, spec: Mapper, segment_events: list[dict[str, Any]]) -> float:
    from lago_segment.client import LagoClient

    with LagoClient(api_key="bench", api_url=url) as client:
        forwarder = Forwarder(
            client, spec=spec, max_queue_size=len(segment_events) * 10, flush_at_exit=False
        )
        start = time.perf_counter()
        for event in segment_events:
            forwarder.forward(event)
        forwarder.close(timeout=None)
        elapsed = time.perf_counter() - start
    return forwarder.stats.delivered / elapsed


def bench_end_to_end() -> list[Result]:
    """Raw dicts -> map -> POST, against the raw floor: with the stdlib's json and with orjson.

    The three are interleaved, best of each kept, so a noisy neighbour does
    not favour one of them. ``lago_segment._json._orjson`` is switched in
    place: the same process, the same spec and events.
    """
    from lago_segment import _json

    from ._endpoint import local_endpoint, raw_floor_events_per_s

    try:
        import orjson
    except ImportError:
        orjson = None
    spec, events, _ = load_spec_and_events()
    n = scaled(E2E_EVENTS)
    segment_events = with_ids(events, n)
    backends = {"stdlib": None, "speedups": orjson} if orjson else {"stdlib": None}
    best = dict.fromkeys(backends, 0.0)
    floor = 0.0
    original = _json._orjson
    with local_endpoint() as url:
        try:
            for _ in range(2 if OPTIONS.quick else 3):
                floor = max(floor, raw_floor_events_per_s(url, n, repeat=1))
                for name, module in backends.items():
                    _json._orjson = module
                    best[name] = max(best[name], _end_to_end_rate(url, spec, segment_events))
        finally:
            _json._orjson = original
    rows = [
        Result(
            "end-to-end raw dicts -> Lago, stdlib json",
            best["stdlib"],
            "ev/s",
            "raw floor httpx",
            floor,
            0.25,
            True,
        )
    ]
    if orjson is None:
        print("orjson not installed: no [speedups] figure", file=sys.stderr)
    else:
        rows.append(
            Result(
                "end-to-end raw dicts -> Lago, [speedups]",
                best["speedups"],
                "ev/s",
                "raw floor httpx",
                floor,
                0.35,
                True,
            )
        )
    return rows


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory_child(mode: str, offered_total: int) -> None:
    """In a fresh process: RSS before, after 10k and after 1M events offered, Lago down."""
    spec, events, _ = load_spec_and_events()
    client = _StuckClient()
    with tempfile.TemporaryDirectory() as tmp:
        forwarder = Forwarder(
            client,
            spec=spec,
            max_queue_size=10_000,
            on_full="drop",
            on_error=lambda failure: None,
            spool=Path(tmp) / "spool.db" if mode == "spool" else None,
            max_spool_events=2 * offered_total,
            flush_at_exit=False,
        )
        samples = [_rss_mb()]
        offered = 0
        for n in (10_000, offered_total - 10_000):
            for i in range(offered, offered + n):
                forwarder.forward({**events[i % len(events)], "messageId": f"mem-{i:08d}"})
            offered += n
            gc.collect()
            samples.append(_rss_mb())
        client.release.set()
        forwarder.close(timeout=0)
    print(json.dumps(samples))


def bench_memory() -> list[Result]:
    offered = MEMORY_OFFERED // 10 if OPTIONS.quick else MEMORY_OFFERED
    rows = []
    for mode in ("memory", "spool"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_forwarder",
                "--memory-child",
                mode,
                str(offered),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        before, at_10k, at_1m = json.loads(done.stdout.splitlines()[-1])
        rows.append(
            Result(
                f"RSS growth 10k->{offered // 1000}k offered, Lago down, {mode}",
                at_1m - at_10k,
                "MB",
                "RSS growth 0->10k offered",
                at_10k - before,
            )
        )
    return rows


def run() -> list[Result]:
    return [*bench_latency(), *bench_end_to_end(), *bench_memory()]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        _memory_child(sys.argv[2], int(sys.argv[3]))
    else:
        print_table(run())
