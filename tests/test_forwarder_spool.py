"""The durable spool: committed before forward() returns, deleted on Lago's ack."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from contextlib import closing
from pathlib import Path

import pytest
from support_forwarder import PERMANENT, TRANSIENT, Driver, FakeSender, TinySpec, lago, track

from lago_segment.errors import ConfigurationError, QueueFullError, SpoolError
from lago_segment.forwarder import AsyncForwarder, Forwarder, ForwardingFailure
from lago_segment.forwarder._spool import SpoolStore
from lago_segment.forwarder._stores import QueuedEvent


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
    errors: list[ForwardingFailure] = []
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
    errors: list[ForwardingFailure] = []
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
    errors: list[ForwardingFailure] = []
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


def leave_in_spool(spool: Path, n: int) -> None:
    """Spool ``n`` events and close without delivering them (Lago never answers)."""
    stuck = FakeSender()
    stuck.gate = threading.Event()
    fwd = Driver("thread").make(stuck, spec=TinySpec(), spool=spool, flush_interval=3600)
    for i in range(n):
        fwd.forward(track(i))
    fwd.close(timeout=0.05)
    stuck.gate.set()
    for thread in fwd._threads:
        thread.join(10)


def poison(spool: Path, message_id: str, event: object) -> None:
    with closing(sqlite3.connect(spool)) as db, db:
        db.execute("UPDATE events SET event = ? WHERE message_id = ?", (event, message_id))


@pytest.mark.parametrize("bad", ['{"transaction_id": "m2"}', "not json", b"\x00\xff", "[]"])
async def test_a_row_that_fails_validation_is_reported_once_and_set_aside(
    driver: Driver, sender: FakeSender, spool: Path, bad: object
) -> None:
    leave_in_spool(spool, 5)
    poison(spool, "m2", bad)
    errors: list[ForwardingFailure] = []
    fwd = driver.make(sender, spool=spool, on_error=errors.append)
    assert await driver.close(fwd)
    assert sorted(sender.stored) == ["m0", "m1", "m3", "m4"]
    [failure] = errors
    assert (failure.stage, failure.message_id, failure.permanent) == ("delivery", "m2", True)
    assert isinstance(failure.error, SpoolError)
    assert "set aside" in str(failure.error)
    s = fwd.stats
    assert (s.enqueued, s.delivered, s.failed, s.queue_depth) == (5, 4, 1, 0)
    # Kept for inspection, never sent; a later forwarder does not report it again.
    assert rows(spool) == []
    with closing(sqlite3.connect(spool)) as db:
        kept = db.execute("SELECT message_id, event, error FROM set_aside").fetchall()
    assert [(mid, event) for mid, event, _ in kept] == [("m2", bad)]
    again = driver.make(driver.sender(), spool=spool, on_error=errors.append)
    assert await driver.close(again)
    assert len(errors) == 1


def fill_the_disk(fwd: Forwarder | AsyncForwarder) -> None:
    store = fwd._state.store
    assert isinstance(store, SpoolStore)
    pages = store._put_db.execute("PRAGMA page_count").fetchone()[0]
    store._put_db.execute(f"PRAGMA max_page_count = {pages}")


def big(n: int) -> dict[str, object]:
    return track(n, context={"padding": "x" * 20_000})


def forward_many(fwd: Forwarder | AsyncForwarder, n: int = 1000) -> None:
    for i in range(n):
        fwd.forward(big(i))


async def test_a_spool_write_error_raises_a_spool_error_by_default(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), spool=spool, flush_interval=3600)
    fill_the_disk(fwd)
    with pytest.raises(SpoolError, match="could not write 1 event") as info:
        forward_many(fwd)
    assert not isinstance(info.value.__cause__, SpoolError)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert info.value.path == str(spool)
    assert fwd.stats.dropped == 1
    await driver.close(fwd)


async def test_a_spool_write_error_is_reported_with_on_full_drop(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    errors: list[ForwardingFailure] = []
    fwd = driver.make(
        sender,
        spec=TinySpec(),
        spool=spool,
        on_full="drop",
        on_error=errors.append,
        flush_interval=3600,
    )
    fill_the_disk(fwd)
    forward_many(fwd, 300)
    assert errors
    assert {(e.stage, type(e.error)) for e in errors} == {("queue", SpoolError)}
    s = fwd.stats
    assert s.dropped == len(errors)
    assert s.mapped == s.enqueued + s.dropped == 300
    await driver.close(fwd)
    assert len(sender.stored) == s.enqueued


def test_a_spool_write_error_with_on_full_block_raises_after_trying_again(
    spool: Path,
) -> None:
    fwd = Forwarder(
        FakeSender(), spec=TinySpec(), spool=spool, on_full="block", flush_at_exit=False
    )
    fill_the_disk(fwd)
    with pytest.raises(SpoolError):
        forward_many(fwd)
    fwd.close()


@pytest.mark.parametrize(("option", "level"), [("normal", 1), ("full", 2)])
async def test_spool_sync_sets_sqlites_synchronous(
    driver: Driver, sender: FakeSender, spool: Path, option: str, level: int
) -> None:
    fwd = driver.make(sender, spool=spool, spool_sync=option)
    store = fwd._state.store
    assert isinstance(store, SpoolStore)
    for db in (store._put_db, store._send_db):
        assert db.execute("PRAGMA synchronous").fetchone()[0] == level
    await driver.close(fwd)


def test_spool_sync_is_validated(driver: Driver, spool: Path) -> None:
    with pytest.raises(ConfigurationError, match="spool_sync"):
        driver.make(driver.sender(), spool=spool, spool_sync="off")


async def test_spool_files_are_private_whatever_the_umask(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    old = os.umask(0o022)
    try:
        fwd = driver.make(sender, spec=TinySpec(), spool=spool, flush_interval=3600)
        fwd.forward(track(1))
        files = [spool, Path(f"{spool}-wal"), Path(f"{spool}-shm")]
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        await driver.close(fwd)
    finally:
        os.umask(old)
    assert modes == {f.name: 0o600 for f in files}


def test_a_resent_batch_skips_rows_another_batch_has_in_flight(spool: Path) -> None:
    store = SpoolStore(spool, max_events=100, retry_wait=0)
    store.put([QueuedEvent(lago(n), f"m{n}") for n in range(4)])
    first, second = store.take(2), store.take(2)
    store.retry_later(first)  # transient failure: resend from m0 on...
    again = store.take(4)
    assert [i.message_id for i in again] == ["m0", "m1"]  # ...but m2, m3 are in flight
    store.ack(second)
    store.ack(again)
    assert (store.depth(), store.ready(), rows(spool)) == (0, 0, [])
    store.close()


async def test_with_several_batches_in_flight_each_ack_deletes_its_own_rows(
    driver: Driver, sender: FakeSender, spool: Path
) -> None:
    sender.fail = {"m1": (TRANSIENT, False)}
    errors: list[ForwardingFailure] = []
    fwd = driver.make(
        sender,
        spec=TinySpec(),
        spool=spool,
        batch_size=2,
        max_in_flight=4,
        spool_retry_wait=0,
        on_error=errors.append,
        flush_interval=3600,
    )
    for n in range(8):
        fwd.forward(track(n))
    await asyncio.to_thread(sender.entered.wait, 10)
    sender.fail = {}
    assert await driver.close(fwd)
    assert sorted(set(sender.stored)) == [f"m{n}" for n in range(8)]
    assert rows(spool) == []
    s = fwd.stats
    assert (s.enqueued, s.delivered, s.failed, s.queue_depth) == (8, 8, 0, 0)


def test_a_spool_error_names_the_file_and_survives_pickling() -> None:
    import pickle

    error = SpoolError("/var/spool/lago.db", "could not write 1 event(s): disk I/O error")
    assert str(error) == "spool /var/spool/lago.db: could not write 1 event(s): disk I/O error"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.path, str(copy)) == (SpoolError, error.path, str(error))
