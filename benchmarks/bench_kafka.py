"""Kafka benchmarks (only with the ``kafka`` extra installed): consume workers vs in-process.

- Events/s of one ``SegmentConsumer`` worker process (Segment events read from
  a topic of librdkafka's mock cluster, mapped, delivered, offsets committed)
  against the in-process ``Forwarder`` on the same events (JSON bytes parsed,
  mapped, delivered), same run.
- Events/s of two worker processes in one group, as a ratio to one.

Both deliver to a client that accepts every batch at once, so the figures
are the pipeline's own cost, not Lago's. A worker's time runs from its first
message to its last delivery; the events are produced once the group has
formed, so the ~3 s group join is not counted.

Run: ``python -m benchmarks.bench_kafka``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lago_segment.client import BatchResult
from lago_segment.lago import LagoEvent

from ._harness import Result, print_table

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 20_000
SPEC = {
    "version": 1,
    "rules": [
        {
            "name": "api-calls",
            "when": 'type = "track"',
            "code": "api_calls",
            "external_subscription_id": {"@path": "$.userId"},
            "transaction_id": {"@path": "$.messageId"},
            "properties": {"endpoint": {"@path": "$.properties.endpoint"}},
        }
    ],
}


class _Accepting:
    """A client that stores every batch at once and notes when the last one came."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.lock = threading.Lock()

    def send_batch(self, events: Iterable[LagoEvent], /) -> BatchResult:
        events = tuple(events)
        with self.lock:
            self.count += len(events)
            self.last = time.perf_counter()
        return BatchResult(delivered=events)


def _payloads() -> list[bytes]:
    return [
        json.dumps(
            {
                "type": "track",
                "event": "API Call",
                "userId": f"user-{n % 50}",
                "messageId": f"msg-{n}",
                "timestamp": "2026-05-20T10:00:00.000Z",
                "properties": {"endpoint": "/v1/users"},
            }
        ).encode()
        for n in range(EVENTS)
    ]


def _in_process(payloads: list[bytes]) -> float:
    from lago_segment.forwarder import Forwarder
    from lago_segment.mapping import MappingSpec

    client = _Accepting()
    forwarder = Forwarder(
        client, spec=MappingSpec.from_dict(SPEC), max_queue_size=len(payloads) + 1
    )
    start = time.perf_counter()
    for payload in payloads:
        forwarder.forward(json.loads(payload))
    forwarder.flush()
    elapsed = time.perf_counter() - start
    forwarder.close()
    return len(payloads) / elapsed


def _worker(brokers: str, topic: str, group: str) -> None:
    """One worker process: consume until SIGTERM, then print its count and span.

    Prints ``assigned N`` whenever its assignment changes, so the parent can
    produce once the group is stable (a join takes ~3 s and is not measured).
    """
    from lago_segment.kafka import SegmentConsumer
    from lago_segment.mapping import MappingSpec

    client = _Accepting()
    consumer = SegmentConsumer(
        client,
        spec=MappingSpec.from_dict(SPEC),
        topics=[topic],
        group=group,
        config={"bootstrap.servers": brokers, "log_level": 0},
    )
    first: list[float] = []
    owned = consumer._owned
    track, assign, revoke = consumer._tracker.track, owned.on_assign, owned.on_revoke

    def tracked(*args: Any) -> Any:
        if not first:
            first.append(time.perf_counter())
        return track(*args)

    def assigned(*args: Any) -> None:
        assign(*args)
        print(f"assigned {len(owned.keys)}", flush=True)

    def revoked(*args: Any) -> None:
        revoke(*args)
        print(f"assigned {len(owned.keys)}", flush=True)

    consumer._tracker.track = tracked  # type: ignore[method-assign]
    owned.on_assign = assigned  # type: ignore[method-assign]
    owned.on_revoke = revoked  # type: ignore[method-assign]
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    consumer.run()
    span = {"count": client.count, "first": first[0] if first else 0.0, "last": client.last}
    print(json.dumps(span), flush=True)


class _Process:
    """A worker process whose stdout lines are collected by a thread."""

    def __init__(self, command: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.popen = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.strip())

    def assigned(self) -> int:
        marks = [line for line in self.lines if line.startswith("assigned ")]
        return int(marks[-1].split()[1]) if marks else 0


def _committed_all(kafka: Any, brokers: str, topic: str, group: str) -> bool:
    consumer = kafka.Consumer({"bootstrap.servers": brokers, "group.id": group, "log_level": 0})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [kafka.TopicPartition(topic, p) for p in parts]
        committed = consumer.committed(tps, timeout=10)
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in committed]
        # An empty partition has nothing to commit.
        return all(tp.offset == end or end == 0 for tp, end in zip(committed, ends, strict=True))
    finally:
        consumer.close()


def _produce(producer: Any, topic: str, payloads: list[bytes]) -> None:
    for payload in payloads:
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def _wait(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench_kafka: timed out waiting for {what}")
        time.sleep(0.2)


def _workers(kafka: Any, cluster: Any, brokers: str, payloads: list[bytes], count: int) -> float:
    """Events/s of ``count`` workers in one group, from first message to last delivery."""
    topic = f"bench-segment-{os.getpid()}-{count}"
    _produce(cluster, topic, payloads[:1])  # creates the topic (4 partitions)
    command = [sys.executable, "-m", "benchmarks.bench_kafka", "worker", brokers, topic, topic]
    workers = [_Process(command) for _ in range(count)]
    try:
        partitions = len(cluster.list_topics(topic, timeout=10).topics[topic].partitions)
        _wait(
            lambda: (
                all(w.assigned() for w in workers)
                and sum(w.assigned() for w in workers) == partitions
            ),
            "the group to form",
        )
        _produce(cluster, topic, payloads[1:])
        _wait(lambda: _committed_all(kafka, brokers, topic, topic), "the workers", 300.0)
        for worker in workers:
            worker.popen.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.popen.wait(60)
            worker.reader.join(10)
        spans = [json.loads(w.lines[-1]) for w in workers]
    finally:
        for worker in workers:
            if worker.popen.poll() is None:
                worker.popen.kill()
                worker.popen.wait()
    done = sum(s["count"] for s in spans)
    # perf_counter is CLOCK_MONOTONIC on Linux: comparable across processes.
    begin = min(s["first"] for s in spans if s["count"])
    end = max(s["last"] for s in spans)
    return done / (end - begin)


def run() -> list[Result]:
    """The Kafka rows of the benchmark table (none without confluent-kafka)."""
    try:
        import confluent_kafka as kafka
    except ImportError:
        print("bench_kafka: confluent-kafka is not installed; skipped", file=sys.stderr)
        return []
    payloads = _payloads()
    cluster = kafka.Producer({"test.mock.num.brokers": 3, "log_level": 0})
    brokers = ",".join(
        f"{b.host}:{b.port}" for b in cluster.list_topics(timeout=10).brokers.values()
    )
    forwarder = _in_process(payloads)
    one = _workers(kafka, cluster, brokers, payloads, 1)
    two = _workers(kafka, cluster, brokers, payloads, 2)
    return [
        Result(
            "kafka: 1 consume worker, events/s",
            one,
            "events/s",
            "in-process Forwarder, events/s",
            forwarder,
            higher_is_better=True,
        ),
        Result(
            "kafka: 2 consume workers, events/s",
            two,
            "events/s",
            "1 consume worker, events/s",
            one,
            higher_is_better=True,
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        _worker(*sys.argv[2:5])
    else:
        print_table(run())
