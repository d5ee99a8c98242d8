"""The durable spool: committed before forward() returns, deleted on Lago's ack."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from forwarder_support import PERMANENT, TRANSIENT, Driver, FakeSender, TinySpec, track

from lago_segment.errors import QueueFullError
from lago_segment.forwarder import ForwardingError


@pytest.fixture(params=["thread", "asyncio"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)


@pytest.fixture
def sender(driver: Driver) -> FakeSender:
    return driver.sender()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool.db"


def rows(path: Path) -> list[str]:
    # closing(): sqlite3's own context manager commits but never closes.
    with closing(sqlite3.connect(path)) as db:
        return [r[0] for r in db.execute("SELECT message_id FROM events ORDER BY id")]


async def test_forward_commits_the_event_to_the_spool_before_returning(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), spool=spool, flush_interval=3600)
    fwd.forward(track(1))
    assert rows(spool) == ["m1"]
    await driver.close(fwd)


async def test_the_spool_is_a_sqlite_file_in_wal_mode(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), spool=spool)
    await driver.close(fwd)
    with closing(sqlite3.connect(spool)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_acknowledged_events_leave_the_spool(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    sender.duplicates = {"m2"}
    fwd = driver.make(sender, spec=TinySpec(), spool=spool)
    for n in range(3):
        fwd.forward(track(n))
    assert await driver.close(fwd)
    assert (rows(spool), sorted(sender.stored)) == ([], ["m0", "m1"])


async def test_a_new_forwarder_delivers_what_an_earlier_one_left(
    driver: Driver, spool: Path
) -> None:
    down = driver.sender()
    down.raise_error = TRANSIENT
    first = driver.make(down, spec=TinySpec(), spool=spool, spool_retry_wait=3600, on_error=[])
    for n in range(5):
        first.forward(track(n))
    assert not await driver.close(first, timeout=0.2)
    assert rows(spool) == [f"m{n}" for n in range(5)]

    up = driver.sender()
    second = driver.make(up, spec=TinySpec(), spool=spool)
    assert second.stats.enqueued == 5
    assert await driver.close(second)
    assert (sorted(up.stored), rows(spool)) == ([f"m{n}" for n in range(5)], [])


async def test_a_transient_failure_keeps_the_events_and_sends_them_again(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    errors: list[ForwardingError] = []
    sender.fail = {"m1": (TRANSIENT, False)}
    fwd = driver.make(
        sender, spec=TinySpec(), spool=spool, spool_retry_wait=0, on_error=errors.append
    )
    fwd.forward(track(1))
    fwd.forward(track(2))
    while not errors:  # the first send failed; let Lago recover
        await driver.flush(fwd, timeout=0.01)
    sender.fail = {}
    assert await driver.close(fwd)
    assert sorted(sender.stored) == ["m1", "m2"]
    assert not errors[0].permanent
    assert fwd.stats.failed == 0
    assert fwd.stats.retried >= 1


async def test_a_permanent_failure_leaves_the_spool_and_is_reported(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    errors: list[ForwardingError] = []
    sender.fail = {"m1": (PERMANENT, True)}
    fwd = driver.make(sender, spec=TinySpec(), spool=spool, on_error=errors.append)
    fwd.forward(track(1))
    await driver.close(fwd)
    assert rows(spool) == []
    assert [(e.message_id, e.permanent) for e in errors] == [("m1", True)]
    assert errors[0].lago_event is not None


async def test_a_full_spool_raises_queue_full(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    fwd = driver.make(
        sender, spec=TinySpec(), spool=spool, max_spool_events=2, flush_interval=3600
    )
    fwd.forward(track(1))
    fwd.forward(track(2))
    with pytest.raises(QueueFullError):
        fwd.forward(track(3))
    assert rows(spool) == ["m1", "m2"]
    await driver.close(fwd)


async def test_a_full_spool_drops_and_reports_with_on_full_drop(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    errors: list[ForwardingError] = []
    fwd = driver.make(
        sender,
        spec=TinySpec(),
        spool=spool,
        max_spool_events=1,
        on_full="drop",
        on_error=errors.append,
        flush_interval=3600,
    )
    fwd.forward(track(1))
    fwd.forward(track(2))
    assert [(e.stage, e.message_id) for e in errors] == [("queue", "m2")]
    await driver.close(fwd)


async def test_two_live_forwarders_on_one_spool_send_only_their_own_events(
    driver: Driver, spool: Path
) -> None:
    stuck, free = driver.sender(), driver.sender()
    stuck.gate = threading.Event()
    one = driver.make(stuck, spec=TinySpec(), spool=spool, batch_size=1)
    one.forward(track(1))
    two = driver.make(free, spec=TinySpec(), spool=spool)
    two.forward(track(2))
    assert await driver.flush(two)
    assert free.stored == ["m2"]
    stuck.gate.set()
    await driver.close(one)
    await driver.close(two)
    assert stuck.stored == ["m1"]
