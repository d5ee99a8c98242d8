"""Forwarders deliver, batch, count and report; each test runs on both forwarders."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from support_forwarder import (
    PERMANENT,
    TRANSIENT,
    AsyncFakeSender,
    Driver,
    FakeSender,
    TinySpec,
    lago,
    track,
)

from lago_segment.client import BatchResult, DeliveryFailure
from lago_segment.errors import (
    ForwarderClosedError,
    InvalidEventPayload,
    LagoConnectionError,
    QueueFullError,
)
from lago_segment.forwarder import AsyncForwarder, Forwarder, ForwardingFailure
from lago_segment.forwarder._stores import QueuedEvent
from lago_segment.lago import LagoEvent


async def test_forwarded_events_are_delivered_in_batches_of_at_most_batch_size(
    driver: Driver, sender: FakeSender
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), batch_size=7)
    for n in range(50):
        fwd.forward(track(n))
    assert await driver.close(fwd)
    assert sorted(sender.stored) == sorted(f"m{n}" for n in range(50))
    assert max(len(b) for b in sender.batches) <= 7


async def test_counters_add_up_after_delivery(driver: Driver, sender: FakeSender) -> None:
    sender.duplicates = {"m3"}
    sender.fail = {"m4": (PERMANENT, True)}
    fwd = driver.make(sender, spec=TinySpec(), on_error=[])
    for n in range(10):
        fwd.forward(track(n))
    fwd.forward({**track(99), "type": "identify"})  # no rule for identify
    await driver.close(fwd)
    s = fwd.stats
    assert (s.received, s.skipped, s.mapped, s.enqueued) == (11, 1, 10, 10)
    assert (s.delivered, s.duplicates, s.failed, s.queue_depth) == (9, 1, 1, 0)
    assert s.enqueued == s.delivered + s.failed + s.queue_depth


async def test_forward_returns_while_the_sender_is_blocked_on_the_network(
    driver: Driver, sender: FakeSender
) -> None:
    sender.gate = threading.Event()
    fwd = driver.make(sender, spec=TinySpec(), batch_size=1)
    fwd.forward(track(0))
    if driver.kind == "thread":
        await asyncio.to_thread(sender.entered.wait)
    else:
        while not sender.entered.is_set():
            await asyncio.sleep(0)
    for n in range(1, 100):
        fwd.forward(track(n))  # the sender is stuck in send_batch: these only queue
    assert fwd.stats.queue_depth == 100
    sender.gate.set()
    await driver.close(fwd)
    assert len(sender.stored) == 100


async def test_a_permanent_failure_reaches_on_error_with_the_events(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    sender.fail = {"m1": (PERMANENT, True)}
    fwd = driver.make(sender, spec=TinySpec(), on_error=errors.append)
    fwd.forward(track(1))
    await driver.close(fwd)
    [failure] = errors
    assert failure.stage == "delivery"
    assert failure.error is PERMANENT
    assert failure.message_id == "m1"
    assert failure.lago_event == lago(1)
    assert failure.segment_event == track(1)
    assert failure.permanent


def test_error_callback_is_a_deprecated_alias_of_failure_callback() -> None:
    import lago_segment.forwarder as module

    with pytest.warns(DeprecationWarning, match=r"forwarder\.ErrorCallback is deprecated"):
        from lago_segment.forwarder import ErrorCallback
    assert ErrorCallback is module.FailureCallback
    assert "ErrorCallback" not in module.__all__
    assert "FailureCallback" in module.__all__


async def test_a_callback_typed_with_the_old_error_callback_name_still_works(
    driver: Driver, sender: FakeSender
) -> None:
    with pytest.warns(DeprecationWarning, match="use lago_segment.forwarder.FailureCallback"):
        from lago_segment.forwarder import ErrorCallback
    seen: list[ForwardingFailure] = []
    on_error: ErrorCallback = seen.append
    sender.fail = {"m1": (PERMANENT, True)}
    fwd = driver.make(sender, spec=TinySpec(), on_error=on_error)
    fwd.forward(track(1))
    await driver.close(fwd)
    assert [f.message_id for f in seen] == ["m1"]


async def test_in_memory_a_transient_failure_after_the_client_retries_is_reported(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    sender.fail = {"m1": (TRANSIENT, False)}
    fwd = driver.make(sender, spec=TinySpec(), on_error=errors.append)
    fwd.forward(track(1))
    await driver.close(fwd)
    assert [(e.stage, e.error) for e in errors] == [("delivery", TRANSIENT)]
    assert fwd.stats.failed == 1


async def test_a_client_that_raises_does_not_stop_the_sender(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    sender.raise_error = LagoConnectionError("boom")
    fwd = driver.make(sender, spec=TinySpec(), on_error=errors.append)
    fwd.forward(track(1))
    await driver.flush(fwd)
    sender.raise_error = None
    fwd.forward(track(2))
    await driver.close(fwd)
    assert [e.message_id for e in errors] == ["m1"]
    assert sender.stored == ["m2"]


async def test_a_full_queue_raises_queue_full_by_default(
    driver: Driver, sender: FakeSender
) -> None:
    # A long flush interval: nothing leaves the queue before close() flushes it.
    fwd = driver.make(sender, spec=TinySpec(), max_queue_size=3, flush_interval=60)
    for n in range(3):
        fwd.forward(track(n))
    with pytest.raises(QueueFullError):
        fwd.forward(track(3))
    await driver.close(fwd)
    assert fwd.stats.dropped == 1


async def test_a_full_queue_drops_and_reports_with_on_full_drop(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    fwd = driver.make(
        sender,
        spec=TinySpec(),
        max_queue_size=3,
        on_full="drop",
        on_error=errors.append,
        flush_interval=60,
    )
    for n in range(4):
        fwd.forward(track(n))
    await driver.close(fwd)
    assert [(e.stage, e.message_id) for e in errors] == [("queue", "m3")]
    assert isinstance(errors[0].error, QueueFullError)
    assert (fwd.stats.dropped, len(sender.stored)) == (1, 3)


async def test_mapping_errors_are_raised_from_forward_by_default(
    driver: Driver, sender: FakeSender
) -> None:
    fwd = driver.make(sender, spec=TinySpec())
    with pytest.raises(InvalidEventPayload, match=r"\$\.type"):
        fwd.forward({"type": "nope", "messageId": "x"})
    await driver.close(fwd)
    assert fwd.stats.rejected == 1


async def test_mapping_errors_go_to_on_error_when_reported(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), mapping_errors="report", on_error=errors.append)
    fwd.forward({"type": "nope", "messageId": "x"})
    await driver.close(fwd)
    assert [(e.stage, e.message_id, e.lago_event) for e in errors] == [("mapping", "x", None)]


async def test_forward_after_close_raises(driver: Driver, sender: FakeSender) -> None:
    fwd = driver.make(sender, spec=TinySpec())
    await driver.close(fwd)
    with pytest.raises(ForwarderClosedError):
        fwd.forward(track(1))


async def test_close_delivers_what_was_queued(driver: Driver, sender: FakeSender) -> None:
    fwd = driver.make(sender, spec=TinySpec(), flush_interval=3600)
    for n in range(5):
        fwd.forward(track(n))
    assert await driver.close(fwd)
    assert sorted(sender.stored) == [f"m{n}" for n in range(5)]


async def test_close_past_its_deadline_reports_every_undelivered_event_once(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    sender.gate = threading.Event()
    fwd = driver.make(
        sender, spec=TinySpec(), batch_size=1, max_in_flight=1, on_error=errors.append
    )
    for n in range(3):
        fwd.forward(track(n))
    await asyncio.to_thread(sender.entered.wait)  # m0 is in flight, m1 and m2 queued
    done = await driver.close(fwd, timeout=0.05)
    assert not done
    # Reported before close() returned: the queued events and the one in flight.
    assert sorted(e.message_id for e in errors) == ["m0", "m1", "m2"]
    assert all(isinstance(e.error, ForwarderClosedError) for e in errors)
    in_flight = next(e for e in errors if e.message_id == "m0")
    assert "in flight" in str(in_flight.error)
    # The stuck request ends after close(): nothing more is reported.
    sender.gate.set()
    if isinstance(fwd, Forwarder):
        for thread in fwd._threads:
            await asyncio.to_thread(thread.join, 10)
    assert len(errors) == 3
    s = fwd.stats
    assert (s.failed, s.delivered, s.queue_depth) == (3, 0, 0)


async def test_flush_waits_for_everything_forwarded_so_far(
    driver: Driver, sender: FakeSender
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), flush_interval=3600)
    for n in range(3):
        fwd.forward(track(n))
    assert await driver.flush(fwd)
    assert len(sender.stored) == 3
    await driver.close(fwd)


def test_flush_waits_for_an_event_the_sender_could_settle_before_forward_counted_it() -> None:
    # forward() puts events in the store, then counts them: the sender may settle
    # them in between. flush() must still wait for the events forwarded after.
    sender = FakeSender()
    fwd = Driver("thread").make(sender, spec=TinySpec(), batch_size=1, flush_interval=3600)
    assert isinstance(fwd, Forwarder)
    fwd._state.store.put([QueuedEvent(lago(1), "m1")])  # a forward() not yet counted
    fwd._ensure_sender()
    with fwd._cond:
        assert fwd._cond.wait_for(lambda: fwd._state.settled == 1, 10)
    sender.gate = threading.Event()
    fwd.forward(track(2))
    assert not fwd.flush(timeout=0)
    sender.gate.set()
    assert fwd.flush(10)
    assert sender.stored == ["m1", "m2"]
    fwd.close()


async def test_an_on_error_callback_that_raises_is_logged_not_propagated(
    driver: Driver, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(failure: ForwardingFailure) -> None:
        raise RuntimeError("callback bug")

    sender.fail = {"m1": (PERMANENT, True)}
    fwd = driver.make(sender, spec=TinySpec(), on_error=broken)
    fwd.forward(track(1))
    fwd.forward(track(2))
    await driver.close(fwd)
    assert "on_error callback raised" in caplog.text
    assert sender.stored == ["m2"]


async def test_the_default_on_error_logs_without_the_properties(
    driver: Driver, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    sender.fail = {"m1": (PERMANENT, True)}
    fwd = driver.make(sender, spec=TinySpec())
    fwd.forward(track(1, properties={"sub": "sub-1", "calls": 1, "secret": "hunter2"}))
    await driver.close(fwd)
    assert "messageId=m1" in caplog.text
    assert "hunter2" not in caplog.text


def test_the_async_forwarder_refuses_to_block_the_loop() -> None:
    with pytest.raises(ValueError, match="on_full"):
        AsyncForwarder(FakeSender(), on_full="block")  # type: ignore[arg-type]


def blocking_forwarder(block_timeout: float) -> tuple[FakeSender, Any]:
    """A thread forwarder with room for one event, whose sender waits on a gate."""
    sender = FakeSender()
    sender.gate = threading.Event()
    fwd = Driver("thread").make(
        sender,
        spec=TinySpec(),
        max_queue_size=1,
        batch_size=1,
        on_full="block",
        block_timeout=block_timeout,
    )
    return sender, fwd


def test_a_full_queue_blocks_then_raises_with_on_full_block() -> None:
    sender, fwd = blocking_forwarder(block_timeout=0.01)
    fwd.forward(track(0))  # in flight until the gate opens: the queue is full
    with pytest.raises(QueueFullError):
        fwd.forward(track(1))
    sender.gate.set()
    fwd.close()
    assert sender.stored == ["m0"]


def test_a_blocked_forward_proceeds_when_room_frees_up() -> None:
    sender, fwd = blocking_forwarder(block_timeout=30)
    fwd.forward(track(0))
    sender.entered.wait()
    sender.gate.set()
    fwd.forward(track(1))  # waits for m0 to be settled, then queues
    fwd.close()
    assert sender.stored == ["m0", "m1"]
    assert sender.stored == ["m0", "m1"]


async def test_report_hands_a_callers_error_to_on_error_with_its_stage(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    fwd = driver.make(sender, on_error=errors.append)
    full = QueueFullError("full")
    fwd.report(full, track(5))
    await driver.close(fwd)
    assert [(e.error, e.stage, e.message_id) for e in errors] == [(full, "queue", "m5")]


class ForeignFailureSender(FakeSender):
    """Breaks the client contract: reports a failure for an event it was not sent."""

    def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:
        list(events)
        return BatchResult(failed=(DeliveryFailure(lago(99), PERMANENT, True),))


class AsyncForeignFailureSender(ForeignFailureSender):
    async def send_batch(self, events: Iterable[LagoEvent]) -> BatchResult:  # type: ignore[override]
        return ForeignFailureSender.send_batch(self, events)


async def test_a_batch_result_naming_foreign_events_fails_the_batch(
    driver: Driver, errors: list[ForwardingFailure]
) -> None:
    client = AsyncForeignFailureSender() if driver.kind == "asyncio" else ForeignFailureSender()
    fwd = driver.make(client, spec=TinySpec(), on_error=errors.append)
    fwd.forward(track(1))
    assert await driver.flush(fwd)
    assert [(e.message_id, e.stage, type(e.error)) for e in errors] == [
        ("m1", "delivery", RuntimeError)
    ]
    assert fwd.stats.failed == 1
    await driver.close(fwd)


async def test_the_sender_carries_on_after_an_unexpected_error(
    driver: Driver, sender: FakeSender, caplog: pytest.LogCaptureFixture
) -> None:
    # One sender: the one that fails is the one that delivers (and logged first).
    fwd = driver.make(sender, spec=TinySpec(), max_in_flight=1)
    store = fwd._state.store
    real_take = store.take
    calls: list[int] = []

    def take_failing_once(n: int) -> list[QueuedEvent]:
        calls.append(n)
        if len(calls) == 1:
            raise OSError("disk gone for a moment")
        return real_take(n)

    store.take = take_failing_once  # type: ignore[method-assign]
    fwd.forward(track(1))
    assert await driver.flush(fwd)
    assert sender.stored == ["m1"]
    assert "the sender hit an unexpected error" in caplog.text
    await driver.close(fwd)


async def test_forward_from_another_threads_loop_uses_the_running_sender() -> None:
    sender = AsyncFakeSender()
    fwd = AsyncForwarder(sender, spec=TinySpec(), flush_interval=0.01)
    await fwd.start()
    tasks = fwd._tasks

    async def forward_there() -> None:
        fwd.forward(track(1))

    await asyncio.to_thread(asyncio.run, forward_there())
    assert fwd._tasks is tasks
    assert await fwd.flush(10)
    assert sender.stored == ["m1"]
    await fwd.aclose()


def test_flush_from_an_on_error_callback_returns_instead_of_waiting_for_itself() -> None:
    # on_error runs on the sender thread: a flush() there cannot wait for the sender.
    sender = FakeSender()
    sender.fail = {"m1": (PERMANENT, True)}
    results: list[bool] = []
    returned = threading.Event()

    def flush_on_error(failure: ForwardingFailure) -> None:
        results.append(fwd.flush())
        returned.set()

    fwd = Driver("thread").make(sender, spec=TinySpec(), on_error=flush_on_error)
    fwd.forward(track(1))
    fwd.forward(track(2))
    assert returned.wait(10)  # a deadlock guard, not a speed check
    assert results == [False]
    assert fwd.close()
    assert sender.stored == ["m2"]
