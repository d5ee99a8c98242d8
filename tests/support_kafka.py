"""Helpers shared by the Kafka test modules (librdkafka's mock cluster, FakeLago).

Import it after ``pytest.importorskip("confluent_kafka")``: it needs the client.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import httpx

from lago_segment.client import LagoClient, RetryPolicy
from lago_segment.kafka import ConsumerStats, SegmentConsumer
from lago_segment.testing import FakeLago

ROOT = Path(__file__).resolve().parent.parent

KEY = "kafka-test-key"

SPEC = {
    "version": 1,
    "rules": [
        {
            "name": "api-calls",
            "when": 'type = "track" and event = "API Call"',
            "code": "api_calls",
            "external_subscription_id": {"@path": "$.userId"},
            "transaction_id": {"@path": "$.messageId"},
            "properties": {"calls": {"@path": "$.properties.calls"}},
        }
    ],
}

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def track(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "API Call",
        "userId": f"sub-{n % 13}",
        "messageId": f"msg-{n}",
        "timestamp": "2026-05-20T10:00:00.000Z",
        "properties": {"calls": 1},
        **extra,
    }


def produce(cluster: tuple[Any, str], topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    """Produce ``values`` in order; returns where each landed (partition, offset)."""
    producer, _ = cluster
    where: list[tuple[int, int]] = [(-1, -1)] * len(values)

    def landed(index: int) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:
            assert error is None, error
            where[index] = (message.partition(), message.offset())

        return report

    for index, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, on_delivery=landed(index))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(30) == 0
    return where


def offsets(brokers: str, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset and the high watermark, per partition."""
    consumer = ck.Consumer({"bootstrap.servers": brokers, "group.id": group, "log_level": 0})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [ck.TopicPartition(topic, p) for p in parts]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
        high = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        return committed, high
    finally:
        consumer.close()


def all_committed(brokers: str, topic: str, group: str) -> bool:
    committed, high = offsets(brokers, topic, group)
    return all(
        committed[partition] == end or (end == 0 and committed[partition] < 0)
        for partition, end in high.items()
    )


def assert_all_committed(brokers: str, topic: str, group: str) -> None:
    committed, high = offsets(brokers, topic, group)
    for partition, end in high.items():
        # An empty partition has nothing to commit.
        assert committed[partition] == end or (end == 0 and committed[partition] < 0), (
            committed,
            high,
        )


def read_all(brokers: str, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    consumer = ck.Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "log_level": 0,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            messages.extend(m for m in consumer.consume(100, 0.2) if m.error() is None)
    finally:
        consumer.close()
    return messages


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Running:
    """A SegmentConsumer running on a thread, stopped (and joined) on exit."""

    def __init__(self, consumer: SegmentConsumer) -> None:
        self.consumer = consumer
        self.result: ConsumerStats | BaseException | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.result = self.consumer.run()
        except BaseException as exc:
            self.result = exc

    def __enter__(self) -> SegmentConsumer:
        self.thread.start()
        return self.consumer

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


def fake_client(fake: FakeLago) -> LagoClient:
    return LagoClient(
        KEY,
        api_url=fake.url,
        http_client=httpx.Client(transport=fake.transport),
        retry=RetryPolicy(attempts=2, wait_initial=0.01, wait_jitter=0.0, timeout=5.0),
    )
