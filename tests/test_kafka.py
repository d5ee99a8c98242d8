"""Kafka both ways, against librdkafka's own mock cluster (the Kafka protocol on loopback).

One client configured with ``test.mock.num.brokers=3`` starts the cluster for
this module; every other client, in this process or in ``consume`` worker
processes, reaches it through its broker addresses. Group joins take ~3 s
each, so the tests share the cluster and use their own topics and groups.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lago_segment import Forwarder, ForwardingFailure, LagoEvent
from lago_segment.errors import ConfigurationError, LagoValidationError
from lago_segment.mapping import MappingSpec
from lago_segment.testing import FakeLago

ck = pytest.importorskip("confluent_kafka")

from support_kafka import (  # noqa: E402 (after the importorskip)
    KEY,
    ROOT,
    SPEC,
    Running,
    all_committed,
    assert_all_committed,
    fake_client,
    offsets,
    produce,
    read_all,
    track,
    unique,
    wait_until,
)

from lago_segment.kafka import (  # noqa: E402 (after the importorskip)
    ConsumerStats,
    KafkaDeliveryError,
    RawEventsSink,
    SegmentConsumer,
    raw_event_message,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, str]]:
    """A 3-broker mock cluster, alive as long as this producer; yields it and its brokers."""
    producer = ck.Producer({"test.mock.num.brokers": 3, "log_level": 0})
    brokers = producer.list_topics(timeout=10).brokers.values()
    yield producer, ",".join(f"{b.host}:{b.port}" for b in brokers)
    producer.flush(5)


# -- the sink: lago-api's message, field by field --------------------------------------


def lago_api_message(event: dict[str, Any], organization_id: str, now: datetime) -> Any:
    """What lago-api's Events::KafkaProducerService builds, rule by rule, for a stored event."""
    amount = event.get("precise_total_amount_cents")
    return (
        f"{organization_id}-{event['external_subscription_id']}",
        {
            "organization_id": organization_id,
            "external_customer_id": None,
            "external_subscription_id": event["external_subscription_id"],
            "transaction_id": event["transaction_id"],
            "timestamp": repr(float(event["timestamp"])),  # Ruby: timestamp.to_f.to_s
            "code": event["code"],
            # Rails' BigDecimal#to_s; "0.0" when absent
            "precise_total_amount_cents": "0.0" if amount is None else amount,
            "properties": event.get("properties", {}),
            "ingested_at": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],  # iso8601 minus "Z"
            "source": "http_ruby",
            "source_metadata": {"api_post_processed": False},
        },
    )


INGESTED = datetime(2026, 8, 21, 13, 5, 0, 123456, tzinfo=timezone.utc)
SINK_EVENTS = [
    LagoEvent("tx-1", "sub-1", "api_calls", 1716200000, {"calls": 3, "region": "eu"}),
    LagoEvent("tx-2", "sub-2", "storage", Decimal("1716200000.123"), {"gb": 1.5}),
    LagoEvent(
        "tx-3",
        "sub-1",
        "seats",
        datetime(2024, 5, 20, 10, 13, 20, 450000, tzinfo=timezone.utc),
        precise_total_amount_cents=Decimal("1250.500"),
    ),
    LagoEvent("tx-4", "sub-3", "api_calls", 1716200000, precise_total_amount_cents="12"),
]
EXPECTED_AMOUNTS = ["0.0", "0.0", "1250.5", "12.0"]


def test_raw_event_message_equals_lago_apis_for_each_event() -> None:
    for event, amount in zip(SINK_EVENTS, EXPECTED_AMOUNTS, strict=True):
        stored = {**event.to_dict(), "precise_total_amount_cents": None}
        if event.precise_total_amount_cents is not None:
            stored["precise_total_amount_cents"] = amount
        expected = lago_api_message(stored, "org-9", INGESTED)
        got = raw_event_message(
            event, "org-9", ingested_at=INGESTED, source="http_ruby", api_post_processed=False
        )
        assert got == expected
    _, value = raw_event_message(SINK_EVENTS[1], "org-9", ingested_at=INGESTED)
    assert value["timestamp"] == "1716200000.123"
    assert value["ingested_at"] == "2026-08-21T13:05:00.123"
    # Not through the API: the events-processor must post-process them itself.
    assert value["source"] == "lago-segment"
    assert all(isinstance(value[k], str) for k in value if k not in _NOT_STRINGS)


_NOT_STRINGS = {"properties", "external_customer_id", "source_metadata"}


def test_the_sink_under_a_forwarder_produces_lago_apis_messages(
    cluster: tuple[Any, str],
) -> None:
    _, brokers = cluster
    topic = unique("events_raw")
    errors: list[ForwardingFailure] = []
    sink = RawEventsSink(
        {"bootstrap.servers": brokers, "log_level": 0},
        topic=topic,
        organization_id="org-9",
        source="http_ruby",
        clock=lambda: INGESTED,
    )
    spec = MappingSpec.from_dict(SPEC)
    with Forwarder(sink, spec=spec, on_error=errors.append) as forwarder:
        for n in range(20):
            forwarder.forward(track(n, properties={"calls": n}))
        assert forwarder.flush(30)
    assert errors == []
    messages = read_all(brokers, topic, 20)
    assert len(messages) == 20
    for message in messages:
        value = json.loads(message.value())
        n = int(value["transaction_id"].split("-")[1])
        stored = {
            "transaction_id": f"msg-{n}",
            "external_subscription_id": f"sub-{n % 13}",
            "code": "api_calls",
            "timestamp": "1779271200",
            "properties": {"calls": n},
        }
        key, expected = lago_api_message(stored, "org-9", INGESTED)
        assert message.key() == key.encode()
        assert value == expected
        assert list(value) == list(expected)  # the same field order as lago-api


def test_the_sink_refuses_an_invalid_message_before_producing_it(
    cluster: tuple[Any, str],
) -> None:
    _, brokers = cluster
    sink = RawEventsSink(
        {"bootstrap.servers": brokers, "log_level": 0},
        topic=unique("events_raw"),
        organization_id="org-9",
        max_message_bytes=450,
    )
    big = LagoEvent("tx-big", "sub-1", "api_calls", 1716200000, {"blob": "x" * 500})
    long_id = LagoEvent("t" * 300, "sub-1", "api_calls", 1716200000)
    ok = SINK_EVENTS[0]
    result = sink.send_batch([big, ok, long_id])
    assert result.delivered == (ok,)
    assert [f.event for f in result.failed] == [big, long_id]
    assert all(f.permanent for f in result.failed)
    assert isinstance(result.failed[0].error, LagoValidationError)
    assert "event" in result.failed[0].error.error_details
    assert "transaction_id" in result.failed[1].error.error_details


def test_failed_delivery_reports_reach_the_forwarders_on_error() -> None:
    # Nothing listens on this port: every message times out in librdkafka's queue.
    sink = RawEventsSink(
        {"bootstrap.servers": "127.0.0.1:9", "log_level": 0},
        topic="events_raw",
        organization_id="org-9",
        delivery_timeout=0.5,
    )
    errors: list[ForwardingFailure] = []
    with Forwarder(sink, on_error=errors.append) as forwarder:

        @forwarder.on("track")
        def _one(event: Any, settings: Any) -> LagoEvent:
            return SINK_EVENTS[0]

        forwarder.forward(track(1))
        assert forwarder.flush(20)
    assert len(errors) == 1
    assert errors[0].stage == "delivery"
    assert errors[0].lago_event == SINK_EVENTS[0]
    assert isinstance(errors[0].error, KafkaDeliveryError)
    assert errors[0].error.kafka_error == "_MSG_TIMED_OUT"
    assert forwarder.stats.failed == 1


def test_the_sink_names_a_missing_option() -> None:
    with pytest.raises(ConfigurationError, match="organization_id"):
        RawEventsSink({"bootstrap.servers": "127.0.0.1:9"}, topic="t", organization_id=" ")


# -- the consumer, in process ---------------------------------------------------------------


def consumer_for(
    client: Any, brokers: str, topic: str, group: str, **options: Any
) -> SegmentConsumer:
    return SegmentConsumer(
        client,
        spec=MappingSpec.from_dict(SPEC),
        topics=[topic],
        group=group,
        config={"bootstrap.servers": brokers, "log_level": 0},
        commit_interval=0.2,
        **options,
    )


def test_malformed_messages_go_to_the_dead_letter_topic_and_consumption_continues(
    cluster: tuple[Any, str],
) -> None:
    _, brokers = cluster
    topic, group, dead = unique("segment"), unique("group"), unique("dead")
    malformed = {
        b"not json at all": "not_json",
        b"[1, 2]": "not_segment_event",
        json.dumps({"type": "shout", "messageId": "m-x"}).encode(): "not_segment_event",
        json.dumps(track(9999, properties={"calls": [1]})).encode(): "mapping_failed",
        json.dumps(track(9998, padding="x" * 5000)).encode(): "too_large",
    }
    good = [json.dumps(track(n)).encode() for n in range(30)]
    skipped = [json.dumps({**track(100), "event": "Page Viewed"}).encode()]
    produce(cluster, topic, [*good[:15], *malformed, *skipped, *good[15:]])
    fake = FakeLago(api_key=KEY)
    errors: list[ForwardingFailure] = []
    consumer = consumer_for(
        fake_client(fake),
        brokers,
        topic,
        group,
        dead_letter_topic=dead,
        max_message_bytes=4000,
        on_error=errors.append,
    )
    with Running(consumer):
        wait_until(lambda: consumer.stats.consumed == 36, 30, "every message")
        wait_until(lambda: consumer.stats.unsettled == 0, 30, "settlement")
    assert sorted(fake.stored_transaction_ids()) == sorted(f"msg-{n}" for n in range(30))
    stats = consumer.stats
    assert (stats.mapped, stats.skipped, stats.dead_lettered) == (30, 1, 5)
    assert len(errors) == 5
    assert all(e.stage == "mapping" for e in errors)
    letters = read_all(brokers, dead, 5)
    reasons = {m.value(): dict(m.headers())["lago-segment-reason"].decode() for m in letters}
    assert reasons == malformed
    headers = dict(letters[0].headers())
    assert headers["lago-segment-topic"] == topic.encode()
    assert int(headers["lago-segment-offset"]) >= 0
    assert headers["lago-segment-error"]
    assert_all_committed(brokers, topic, group)


def test_events_lago_rejects_are_dead_lettered_as_lago_events(
    cluster: tuple[Any, str],
) -> None:
    _, brokers = cluster
    topic, group, dead = unique("segment"), unique("group"), unique("dead")
    produce(cluster, topic, [json.dumps(track(n)).encode() for n in range(10)])
    fake = FakeLago(api_key=KEY)
    client = fake_client(fake)

    class Refusing:
        """Lago refuses msg-3 for good (a 422 for that event); stores the others."""

        def send_batch(self, events: Any) -> Any:
            from lago_segment.client import BatchResult, DeliveryFailure

            events = list(events)
            bad = [e for e in events if e.transaction_id == "msg-3"]
            result = client.send_batch([e for e in events if e.transaction_id != "msg-3"])
            refusal = LagoValidationError(422, "Unprocessable Entity", code="validation_errors")
            return BatchResult(
                result.delivered,
                result.duplicates,
                (*result.failed, *(DeliveryFailure(e, refusal, True) for e in bad)),
            )

    consumer = consumer_for(Refusing(), brokers, topic, group, dead_letter_topic=dead)
    with Running(consumer):
        wait_until(lambda: consumer.stats.consumed == 10, 30, "every message")
        wait_until(lambda: consumer.stats.unsettled == 0, 30, "settlement")
    assert len(fake.events) == 9
    (letter,) = read_all(brokers, dead, 1)
    assert json.loads(letter.value())["transaction_id"] == "msg-3"
    assert dict(letter.headers())["lago-segment-reason"] == b"lago_rejected"
    assert_all_committed(brokers, topic, group)


def test_a_lago_outage_pauses_consumption_without_committing_or_losing_events(
    cluster: tuple[Any, str],
) -> None:
    _, brokers = cluster
    topic, group = unique("segment"), unique("group")
    produce(cluster, topic, [json.dumps(track(n)).encode() for n in range(600)])
    fake = FakeLago(api_key=KEY)
    fake.fail_randomly(1.0, faults=[503])  # Lago is down
    consumer = consumer_for(
        fake_client(fake), brokers, topic, group, max_unsettled=100, retry_wait=0.05
    )
    with Running(consumer):
        wait_until(lambda: consumer.stats.paused, 30, "the consumer to pause")
        wait_until(lambda: consumer.stats.outage_retries >= 3, 30, "retries")
        held = consumer.stats.consumed
        assert held < 600  # paused, not reading the whole topic into memory
        committed, _ = offsets(brokers, topic, group)
        assert all(offset < 0 for offset in committed.values())  # nothing committed
        assert fake.events == []
        fake.fail_randomly(0.0)  # Lago is back
        wait_until(lambda: len(fake.events) == 600, 60, "every event stored")
        wait_until(lambda: not consumer.stats.paused, 10, "the consumer to resume")
    assert sorted(fake.stored_transaction_ids()) == sorted(f"msg-{n}" for n in range(600))
    assert_all_committed(brokers, topic, group)


# -- the consume command: worker processes in one group ------------------------------------


def worker(
    spec: Path, brokers: str, topic: str, group: str, url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAGO_")}
    env.update(PYTHONPATH=str(ROOT), LAGO_API_KEY=KEY)
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lago_segment",
                "consume",
                str(spec),
                "--bootstrap-servers",
                brokers,
                "--topic",
                topic,
                "--group",
                group,
                "--api-url",
                url,
                "--status-interval",
                "1",
                "--commit-interval",
                "0.5",
                "-X",
                "session.timeout.ms=6000",
                "-X",
                "heartbeat.interval.ms=500",
                "-X",
                "log_level=0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def last_status(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if "consumed " in line]
    return lines[-1] if lines else ""


def test_workers_in_one_group_store_every_event_once_despite_a_kill(
    cluster: tuple[Any, str], tmp_path: Path
) -> None:
    _, brokers = cluster
    topic, group = unique("segment"), unique("group")
    total = 20_000
    where = produce(cluster, topic, [json.dumps(track(n)).encode() for n in range(total)])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    fake = FakeLago(api_key=KEY)
    workers: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"worker-{i}.log" for i in range(3)]
    try:
        with fake.serve() as url:
            workers += [worker(spec, brokers, topic, group, url, logs[i]) for i in range(2)]
            wait_until(lambda: len(fake.events) >= 2_000, 60, "the first events")
            workers[0].send_signal(signal.SIGKILL)  # mid-stream, nothing settled or committed
            workers[0].wait(10)
            assert len(fake.events) < total
            workers.append(worker(spec, brokers, topic, group, url, logs[2]))
            try:
                wait_until(lambda: len(fake.events) >= total, 90, "every event")
            except AssertionError:
                stored = set(fake.stored_transaction_ids())
                missing = sorted(where[n] for n in range(total) if f"msg-{n}" not in stored)
                raise AssertionError(
                    f"{len(missing)} missing, e.g. {missing[:5]}...{missing[-5:]}; "
                    f"committed {offsets(brokers, topic, group)}; "
                    + " | ".join(last_status(log) for log in logs)
                ) from None
            wait_until(
                lambda: all("0 unsettled" in last_status(log) for log in logs[1:]),
                30,
                "the survivors to settle",
            )
            codes = []
            for process in workers[1:]:  # one at a time, as a rolling restart does
                if process is workers[-1]:
                    # The survivor took the stopped worker's partitions over: it
                    # re-reads their unsettled tail (duplicates) and commits it
                    # once settled. A worker stopped before it read a message
                    # cannot commit it, so wait for that before stopping it.
                    wait_until(
                        lambda: all_committed(brokers, topic, group),
                        60,
                        "the last worker to commit every partition",
                    )
                process.send_signal(signal.SIGTERM)
                codes.append(process.wait(30))
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs[1:]]
    ids = fake.stored_transaction_ids()
    assert len(ids) == total
    assert len(set(ids)) == total
    assert_all_committed(brokers, topic, group)
    duplicates = sum(
        int(m.group(1))
        for log in logs[1:]
        if (m := re.search(r"\((\d+) duplicates\)", last_status(log)))
    )
    # Re-delivered after the kill, stored once: Lago answered "already stored".
    print(f"\n{total} events stored once; {duplicates} duplicates re-delivered after SIGKILL")
    for log in logs[1:]:
        assert "stopped" in log.read_text()


CONSUME = (sys.executable, "-m", "lago_segment", "consume")


def test_consume_needs_the_bootstrap_servers(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAGO_")}
    result = subprocess.run(
        [*CONSUME, str(spec), "--topic", "t", "--group", "g", "-X", "nonsense"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "expected key=value, not 'nonsense'" in result.stderr
    result = subprocess.run(
        [*CONSUME, str(spec), "--topic", "t", "--group", "g"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT), "LAGO_API_KEY": KEY},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--bootstrap-servers" in result.stderr


def test_stopping_during_an_outage_commits_nothing_unsettled_and_returns(
    cluster: tuple[Any, str],
) -> None:
    _, brokers = cluster
    topic, group = unique("segment"), unique("group")
    produce(cluster, topic, [json.dumps(track(n)).encode() for n in range(50)])
    fake = FakeLago(api_key=KEY)
    fake.fail_randomly(1.0, faults=[503])
    errors: list[ForwardingFailure] = []
    consumer = consumer_for(
        fake_client(fake),
        brokers,
        topic,
        group,
        retry_wait=0.05,
        shutdown_timeout=0.5,
        revoke_timeout=0.5,
        on_error=errors.append,
    )
    running = Running(consumer)
    with running:
        wait_until(lambda: consumer.stats.outage_retries >= 2, 30, "retries")
    assert isinstance(running.result, ConsumerStats)
    assert running.result.delivered == 0
    assert errors
    assert all(not e.permanent for e in errors)  # kept in Kafka, read again next time
    committed, _ = offsets(brokers, topic, group)
    assert all(offset < 0 for offset in committed.values())


def test_consume_can_produce_lago_events_to_the_raw_events_topic(
    cluster: tuple[Any, str], tmp_path: Path
) -> None:
    _, brokers = cluster
    topic, group, raw = unique("segment"), unique("group"), unique("events_raw")
    produce(cluster, topic, [json.dumps(track(n)).encode() for n in range(40)])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAGO_")}
    log = tmp_path / "consume.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *CONSUME,
                str(spec),
                "--bootstrap-servers",
                brokers,
                "--topic",
                topic,
                "--group",
                group,
                "--raw-events-topic",
                raw,
                "--organization-id",
                "org-7",
                "-X",
                "log_level=0",
            ],
            env={**env, "PYTHONPATH": str(ROOT)},  # no LAGO_API_KEY: Lago's API is not used
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        messages = read_all(brokers, raw, 40, timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(messages) == 40
    values = sorted((json.loads(m.value()) for m in messages), key=lambda v: v["transaction_id"])
    assert {v["transaction_id"] for v in values} == {f"msg-{n}" for n in range(40)}
    for message in messages:
        value = json.loads(message.value())
        assert message.key() == f"org-7-{value['external_subscription_id']}".encode()
        assert value["timestamp"] == "1779271200.0"
        assert value["precise_total_amount_cents"] == "0.0"
        assert value["source"] == "lago-segment"
        assert not value["ingested_at"].endswith("Z")
    assert_all_committed(brokers, topic, group)
