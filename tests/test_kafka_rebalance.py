"""The consumer across rebalances: cooperative-sticky assignment and partitions lost.

Under ``partition.assignment.strategy=cooperative-sticky`` librdkafka hands the
rebalance callbacks *incremental* sets (only the partitions added or taken);
confluent-kafka then calls ``incremental_assign``/``incremental_unassign`` for
callbacks that do not assign themselves, which :class:`OwnedPartitions`'s never
do. A member that stops polling past ``max.poll.interval.ms`` is thrown out of
the group and its partitions are *lost*: its next poll calls ``on_lost`` (or
``on_revoke``, for partitions whose revocation was already pending when it
stalled, as the eager protocol's always is), and no commit may follow for them.

These tests run on their own mock cluster (see ``test_kafka``) with short
session timeouts: the mock broker waits ``session.timeout.ms - 1 s`` for the
members to rejoin, so a rebalance phase takes 3.5 s instead of librdkafka's
default 44 (the first join always takes 3 s, and a shorter session expires
members during that join).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lago_segment.mapping import MappingSpec
from lago_segment.testing import FakeLago

ck = pytest.importorskip("confluent_kafka")

from support_kafka import (  # noqa: E402 (after the importorskip)
    KEY,
    SPEC,
    Running,
    all_committed,
    assert_all_committed,
    fake_client,
    offsets,
    track,
    unique,
    wait_until,
)

from lago_segment.kafka import OffsetTracker, SegmentConsumer  # noqa: E402
from lago_segment.kafka._partitions import OwnedPartitions  # noqa: E402

#: The mock cluster's partition count for an auto-created topic (it has no CreateTopics).
PARTITIONS = 4
#: Fast group membership on the mock cluster (heartbeats run on librdkafka's own thread).
FAST_GROUP = {"session.timeout.ms": 4500, "heartbeat.interval.ms": 300}
COOPERATIVE = {**FAST_GROUP, "partition.assignment.strategy": "cooperative-sticky"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, str]]:
    """A 3-broker mock cluster of this module's own; yields its producer and brokers."""
    producer = ck.Producer({"test.mock.num.brokers": 3, "log_level": 0})
    brokers = producer.list_topics(timeout=10).brokers.values()
    yield producer, ",".join(f"{b.host}:{b.port}" for b in brokers)
    producer.flush(5)


def new_topic(cluster: tuple[Any, str]) -> str:
    """A topic of ``PARTITIONS`` partitions, created by the first message produced to it."""
    return unique("segment")


def produce_spread(cluster: tuple[Any, str], topic: str, numbers: range) -> None:
    """One message per number, round-robin over the partitions."""
    producer, _ = cluster
    for n in numbers:
        producer.produce(topic, json.dumps(track(n)).encode(), partition=n % PARTITIONS)
    assert producer.flush(30) == 0


def member(
    client: Any,
    brokers: str,
    topic: str,
    group: str,
    config: dict[str, Any],
    spec: Any = None,
    **options: Any,
) -> SegmentConsumer:
    return SegmentConsumer(
        client,
        spec=spec or MappingSpec.from_dict(SPEC),
        topics=[topic],
        group=group,
        config={"bootstrap.servers": brokers, "log_level": 0, **config},
        commit_interval=0.1,
        **options,
    )


Call = tuple[str, frozenset[int]]


def record_rebalances(consumer: SegmentConsumer) -> list[Call]:
    """Wrap the consumer's rebalance callbacks (before ``run``) to log each call's partitions."""
    calls: list[Call] = []
    owned = consumer._owned

    def recording(name: str, callback: Callable[[Any, list[Any]], None]) -> Any:
        def wrapper(kafka_consumer: Any, partitions: list[Any]) -> None:
            calls.append((name, frozenset(tp.partition for tp in partitions)))
            callback(kafka_consumer, partitions)

        return wrapper

    for name in ("on_assign", "on_revoke", "on_lost"):
        setattr(owned, name, recording(name, getattr(owned, name)))
    return calls


class SlowLago:
    """Lago answering each batch after ``latency`` s: batches stay in flight across rebalances."""

    def __init__(self, fake: FakeLago, latency: float = 0.01) -> None:
        self._client = fake_client(fake)
        self._latency = threading.Event()
        self._wait = latency

    def send_batch(self, events: Any) -> Any:
        self._latency.wait(self._wait)  # network latency, not a wait for another thread
        return self._client.send_batch(events)


def owned(consumer: SegmentConsumer) -> set[int]:
    return {partition for _, partition in consumer.stats.partitions}


# -- cooperative-sticky ---------------------------------------------------------------------


def test_cooperative_members_joining_and_leaving_bill_every_event_once(
    cluster: tuple[Any, str],
) -> None:
    _, brokers = cluster
    topic, group = new_topic(cluster), unique("group")
    fake = FakeLago(api_key=KEY)
    total = 3000
    produce_spread(cluster, topic, range(1000))
    first = member(SlowLago(fake), brokers, topic, group, COOPERATIVE, batch_size=50)
    second = member(SlowLago(fake), brokers, topic, group, COOPERATIVE, batch_size=50)
    first_calls, second_calls = record_rebalances(first), record_rebalances(second)
    everything = set(range(PARTITIONS))
    with Running(first):
        wait_until(lambda: owned(first) == everything, 30, "the first member's assignment")
        wait_until(lambda: len(fake.events) >= 200, 30, "the first events")
        with Running(second):
            wait_until(lambda: owned(second) != set(), 30, "the second member's share")
            taken = owned(second)
            assert owned(first) == everything - taken
            # Produced once the share moved: else the first member, while the
            # second's join takes seconds, may read all of it first, and the
            # second would have nothing to deliver.
            produce_spread(cluster, topic, range(1000, 2000))
            wait_until(lambda: second.stats.delivered > 0, 30, "the second member's deliveries")
            assert len(fake.events) < total
        # The second member left mid-stream: its partitions came back to the first.
        produce_spread(cluster, topic, range(2000, total))
        wait_until(lambda: owned(first) == everything, 30, "the first member to take all back")
        wait_until(lambda: len(fake.events) == total, 60, "every event stored")
        wait_until(lambda: first.stats.unsettled == 0, 30, "settlement")
        wait_until(lambda: all_committed(brokers, topic, group), 30, "the final commits")
    ids = fake.stored_transaction_ids()
    assert len(ids) == total
    assert set(ids) == {f"msg-{n}" for n in range(total)}
    assert_all_committed(brokers, topic, group)
    # Incremental, not eager: the first member gave up only what the second took,
    # and got back only that; only closing revoked its whole assignment.
    first_changes = [(name, parts) for name, parts in first_calls if parts]
    assert first_changes == [
        ("on_assign", frozenset(everything)),
        ("on_revoke", frozenset(taken)),
        ("on_assign", frozenset(taken)),
        ("on_revoke", frozenset(everything)),
    ], first_calls
    second_changes = [(name, parts) for name, parts in second_calls if parts]
    assert second_changes == [("on_assign", frozenset(taken)), ("on_revoke", frozenset(taken))]
    print(
        f"\ncooperative: {total} events stored once; "
        f"{first.stats.duplicates + second.stats.duplicates} duplicates re-delivered"
    )


# -- lost partitions ------------------------------------------------------------------------


class CommitLog:
    """A Kafka consumer as OwnedPartitions sees it: commits are recorded, never refused."""

    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> None:
        assert not asynchronous
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})


def owned_partitions(tracker: OffsetTracker, kafka_consumer: CommitLog) -> OwnedPartitions:
    return OwnedPartitions(
        ck,
        kafka_consumer,
        tracker,
        max_unsettled=100,
        revoke_timeout=0.0,
        settle_all=lambda timeout: False,  # nothing in flight settles in time
        count=lambda **counts: None,
    )


def test_lost_partitions_are_dropped_without_a_commit() -> None:
    tracker, kafka_consumer = OffsetTracker(), CommitLog()
    partitions = owned_partitions(tracker, kafka_consumer)
    partitions.on_assign(None, [ck.TopicPartition("t", 0), ck.TopicPartition("t", 1)])
    settled = [tracker.track("t", 0, offset) for offset in range(3)]
    for ticket in settled:
        tracker.settle(ticket)  # 0..2 delivered, not committed yet
    in_flight = tracker.track("t", 0, 3)
    tracker.add(in_flight)  # one Lago event still on its way
    tracker.settle(in_flight)  # the consumer's own hold
    tracker.settle(tracker.track("t", 1, 7))

    partitions.on_lost(None, [ck.TopicPartition("t", 0)])

    # Another member owns partition 0 now: not even its settled prefix is committed
    # (that commit could move the new owner's position back, or past its reads).
    assert kafka_consumer.commits == []
    assert partitions.keys == frozenset({("t", 1)})
    assert tracker.unsettled() == 0
    tracker.settle(in_flight)  # the late delivery (a duplicate for the new owner) is ignored
    assert partitions.commit()
    assert kafka_consumer.commits == [{("t", 1): 8}]
    assert partitions.commit()  # nothing new to commit
    assert kafka_consumer.commits == [{("t", 1): 8}]
    # Assigned again later: the stream restarts from the group's committed offset.
    partitions.on_assign(None, [ck.TopicPartition("t", 0)])
    tracker.settle(tracker.track("t", 0, 0))
    assert partitions.commit()
    assert kafka_consumer.commits[-1] == {("t", 0): 1}


def test_revoked_partitions_commit_their_settled_prefix_only() -> None:
    """The contrast with on_lost: a revoke still commits what is settled, nothing past it."""
    tracker, kafka_consumer = OffsetTracker(), CommitLog()
    partitions = owned_partitions(tracker, kafka_consumer)
    partitions.on_assign(None, [ck.TopicPartition("t", 0)])
    tracker.settle(tracker.track("t", 0, 0))
    in_flight = tracker.track("t", 0, 1)
    tracker.add(in_flight)
    tracker.settle(in_flight)
    tracker.settle(tracker.track("t", 0, 2))
    partitions.on_revoke(None, [ck.TopicPartition("t", 0)])
    assert kafka_consumer.commits == [{("t", 0): 1}]
    assert partitions.keys == frozenset()
    assert tracker.unsettled() == 0


class Blocking:
    """The spec, stuck on one message until released: the poll loop stops polling."""

    def __init__(self, spec: Any, message_id: str) -> None:
        self._spec = spec
        self._message_id = message_id
        self.blocked = threading.Event()
        self.release = threading.Event()

    def map(self, event: Any) -> Any:
        if event.get("messageId") == self._message_id and not self.release.is_set():
            self.blocked.set()
            assert self.release.wait(60)
        return self._spec.map(event)


class Commits:
    """A Kafka consumer seen through OwnedPartitions: records the commits that went through."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self.done: list[dict[int, int]] = []

    def commit(self, *, offsets: list[Any], asynchronous: bool) -> None:
        self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
        self.done.append({tp.partition: tp.offset for tp in offsets})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


@pytest.mark.parametrize("strategy", ["range,roundrobin", "cooperative-sticky"])
def test_a_member_past_max_poll_interval_loses_its_partitions_and_commits_none(
    cluster: tuple[Any, str], strategy: str
) -> None:
    _, brokers = cluster
    topic, group = new_topic(cluster), unique("group")
    total = 200
    produce_spread(cluster, topic, range(total))
    fake = FakeLago(api_key=KEY)
    config = {**FAST_GROUP, "partition.assignment.strategy": strategy}
    # The stuck member: it stops polling on msg-41 (partition 1, offset 10).
    stuck = Blocking(MappingSpec.from_dict(SPEC), "msg-41")
    first = member(
        fake_client(fake),
        brokers,
        topic,
        group,
        {**config, "max.poll.interval.ms": FAST_GROUP["session.timeout.ms"]},
        spec=stuck,
        revoke_timeout=2.0,
    )
    first_calls = record_rebalances(first)
    commits = first._owned._consumer = Commits(first._owned._consumer)
    second = member(fake_client(fake), brokers, topic, group, config)
    everything = set(range(PARTITIONS))
    with Running(first):
        assert stuck.blocked.wait(30)
        stuck_at = len(commits.done)
        with Running(second):
            # The first member is thrown out of the group; the second takes everything,
            # reads msg-41 again (nothing of partition 1 past offset 9 was committed).
            wait_until(lambda: owned(second) == everything, 60, "the takeover")
            wait_until(lambda: len(fake.events) == total, 30, "every event stored")
            wait_until(lambda: all_committed(brokers, topic, group), 30, "the second's commits")
            stuck.release.set()  # msg-41 goes to Lago again: a duplicate, stored once
            # Its next poll serves the rebalance it missed: the partitions go (on_lost, or
            # on_revoke when the group's rebalance was already pending as it stalled).
            wait_until(lambda: len(first_calls) > 1, 30, "the stuck member's rebalance")
            wait_until(lambda: first.stats.unsettled == 0, 30, "the stuck member to let go")
            committed, high = offsets(brokers, topic, group)
    gone = [(name, parts) for name, parts in first_calls[1:] if name != "on_assign"]
    assert frozenset().union(*(parts for _, parts in gone)) == frozenset(everything), first_calls
    if strategy == "cooperative-sticky":
        # The incremental revoke pending as it stalled, then the rest lost.
        assert [name for name, _ in gone] == ["on_revoke", "on_lost"], first_calls
    assert commits.done[stuck_at:] == [], commits.done  # not one commit once it stopped polling
    assert committed == high  # the end, as the second member committed it
    ids = fake.stored_transaction_ids()
    assert len(ids) == total
    assert set(ids) == {f"msg-{n}" for n in range(total)}
    assert_all_committed(brokers, topic, group)
