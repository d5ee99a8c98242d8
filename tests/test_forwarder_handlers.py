"""Segment Functions-style handlers: outcomes, order with the spec, settings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support_forwarder import Driver, FakeSender, TinySpec, lago, track

from lago_segment.errors import (
    ConfigurationError,
    DropEvent,
    EventNotSupported,
    InvalidEventPayload,
    RetryError,
    ValidationError,
)
from lago_segment.events import SegmentEvent, Track
from lago_segment.forwarder import ForwardingFailure, HandlerRetry, Settings
from lago_segment.lago import LagoEvent

NO_WAIT = HandlerRetry(attempts=3, wait_initial=0, wait_max=0, wait_jitter=0)


@pytest.mark.parametrize(
    "error", [EventNotSupported("no"), InvalidEventPayload("bad"), ValidationError("invalid")]
)
async def test_a_permanent_handler_error_discards_and_reports_the_event(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure], error: Exception
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), on_error=errors.append)

    @fwd.on("track")
    def handler(event: SegmentEvent, settings: Settings) -> None:
        raise error

    fwd.forward(track(1))
    await driver.close(fwd)
    [failure] = errors
    assert (failure.stage, failure.error, failure.message_id) == ("handler", error, "m1")
    assert isinstance(failure.segment_event, Track)
    assert sender.stored == []  # the spec's event is discarded with it
    assert fwd.stats.rejected == 1


async def test_drop_event_discards_quietly_and_is_counted(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    fwd = driver.make(sender, spec=TinySpec(), on_error=errors.append)

    @fwd.on("track")
    def handler(event: SegmentEvent, settings: Settings) -> None:
        raise DropEvent()

    fwd.forward(track(1))
    await driver.close(fwd)
    assert (errors, sender.stored, fwd.stats.discarded) == ([], [], 1)


async def test_retry_error_retries_the_handler_until_it_succeeds(
    driver: Driver, sender: FakeSender
) -> None:
    waits: list[float] = []
    fwd = driver.make(sender, handler_retry=NO_WAIT, sleep=waits.append)
    calls = []

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> LagoEvent:
        calls.append(event.message_id)
        if len(calls) < 3:
            raise RetryError("lookup service busy")
        return lago(7)

    fwd.forward(track(7))
    await driver.close(fwd)
    assert (len(calls), len(waits), sender.stored) == (3, 2, ["m7"])


async def test_retry_error_is_reported_once_the_attempts_run_out(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    fwd = driver.make(sender, handler_retry=NO_WAIT, sleep=lambda s: None, on_error=errors.append)

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> None:
        raise RetryError("still busy")

    fwd.forward(track(1))
    await driver.close(fwd)
    assert [(e.stage, type(e.error)) for e in errors] == [("handler", RetryError)]


async def test_a_handler_raising_any_exception_does_not_stop_later_events(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    fwd = driver.make(sender, on_error=errors.append)

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> LagoEvent:
        if event.message_id == "m1":
            raise KeyError("surprise")
        return lago(int(event.message_id[1:]))

    for n in range(3):
        fwd.forward(track(n))
    await driver.close(fwd)
    assert [type(e.error) for e in errors] == [KeyError]
    assert sorted(sender.stored) == ["m0", "m2"]


async def test_a_handler_returning_something_else_is_reported(
    driver: Driver, sender: FakeSender, errors: list[ForwardingFailure]
) -> None:
    fwd = driver.make(sender, on_error=errors.append)
    fwd.on("track")(lambda event, settings: {"code": "x"})
    fwd.forward(track(1))
    await driver.close(fwd)
    assert [type(e.error) for e in errors] == [TypeError]


async def test_spec_events_come_first_then_the_handlers(
    driver: Driver, sender: FakeSender
) -> None:
    fwd = driver.make(sender, spec=TinySpec())

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> list[LagoEvent]:
        return [lago(100), lago(101)]

    fwd.forward(track(1))
    await driver.close(fwd)
    assert sender.stored == ["m1", "m100", "m101"]


async def test_handlers_get_the_parsed_event_and_the_settings(
    driver: Driver, sender: FakeSender
) -> None:
    seen: list[Any] = []
    fwd = driver.make(sender, settings={"region": "eu"})

    @fwd.on("identify")
    def handler(event: SegmentEvent, settings: Settings) -> None:
        seen.append((type(event).__name__, settings["region"]))

    fwd.forward({"type": "identify", "userId": "u1", "messageId": "i1"})
    await driver.close(fwd)
    assert seen == [("Identify", "eu")]
    assert fwd.stats.skipped == 1  # it returned nothing


async def test_a_batch_handler_gets_the_whole_batch(driver: Driver, sender: FakeSender) -> None:
    fwd = driver.make(sender)

    @fwd.on("batch")
    def handler(events: list[SegmentEvent], settings: Settings) -> list[LagoEvent]:
        return [lago(len(events))]

    fwd.forward({"batch": [track(1), track(2)]})
    await driver.close(fwd)
    assert sender.stored == ["m2"]
    assert fwd.stats.received == 2


def test_registering_an_unknown_call_type_is_refused() -> None:
    fwd = Driver("thread").make(FakeSender())
    with pytest.raises(ValueError, match="unknown call type 'trak'"):
        fwd.on("trak")


def test_sensitive_settings_are_masked_when_displayed() -> None:
    settings = Settings({"api_token": "s3cr3t", "region": "eu"}, sensitive={"api_token"})
    assert settings["api_token"] == "s3cr3t"
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings)
    assert repr(settings) == "HandlerSettings({'api_token': '********', 'region': 'eu'})"


def test_settings_are_read_only() -> None:
    settings = Settings({"a": 1})
    with pytest.raises(TypeError):
        settings["a"] = 2  # type: ignore[index]


async def test_async_forwarder_retries_a_handler_without_blocking_the_loop(
    monkeypatch: pytest.MonkeyPatch, errors: list[ForwardingFailure]
) -> None:
    # forward() runs on the event loop: a time.sleep there would stall it.
    def no_blocking_sleep(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) called on the event loop")

    monkeypatch.setattr(time, "sleep", no_blocking_sleep)
    driver = Driver("asyncio")
    sender = driver.sender()
    fwd = driver.make(sender, on_error=errors.append)
    calls = []

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> LagoEvent:
        calls.append(event.message_id)
        if len(calls) < 3:
            raise RetryError("lookup service busy")
        return lago(7)

    fwd.forward(track(7))
    await driver.close(fwd)
    assert (len(calls), sender.stored, errors) == (3, ["m7"], [])


async def test_async_forwarder_awaits_a_handlers_retry_wait_while_the_loop_runs(
    errors: list[ForwardingFailure],
) -> None:
    driver = Driver("asyncio")
    sender = driver.sender()
    retry = HandlerRetry(attempts=2, wait_initial=0.05, wait_max=0.05, wait_jitter=0)
    fwd = driver.make(sender, on_error=errors.append, handler_retry=retry)
    other_ran = asyncio.Event()
    seen_by_retry: list[bool] = []

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> LagoEvent:
        seen_by_retry.append(other_ran.is_set())
        if len(seen_by_retry) == 1:
            raise RetryError("lookup service busy")
        return lago(7)

    async def other() -> None:
        other_ran.set()

    fwd.forward(track(7))
    # forward() returned before the retry: nothing queued yet, the loop is free.
    assert (seen_by_retry, fwd.stats.enqueued) == ([False], 0)
    await asyncio.create_task(other())
    assert await fwd.flush(10)
    # The retry ran after the other coroutine: its wait was awaited, not slept.
    assert seen_by_retry == [False, True]
    assert (sender.stored, errors) == (["m7"], [])
    await driver.close(fwd)


async def test_aclose_reports_an_event_whose_handler_retry_is_still_waiting(
    errors: list[ForwardingFailure],
) -> None:
    driver = Driver("asyncio")
    sender = driver.sender()
    retry = HandlerRetry(attempts=2, wait_initial=3600, wait_max=3600, wait_jitter=0)
    fwd = driver.make(sender, on_error=errors.append, handler_retry=retry)

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> LagoEvent:
        raise RetryError("lookup service busy")

    fwd.forward(track(7))
    assert not await fwd.aclose(timeout=0.05)
    assert [(e.stage, e.message_id, type(e.error).__name__) for e in errors] == [
        ("handler", "m7", "ForwarderClosedError")
    ]
    assert fwd.stats.rejected == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [("batch_size", 101), ("on_full", "wait"), ("mapping_errors", "ignore")],
)
def test_invalid_options_raise_configuration_error(
    driver: Driver, option: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as info:
        driver.make(driver.sender(), **{option: value})
    assert info.value.option == option


def test_handler_retry_waits_use_the_clients_backoff_and_stay_under_wait_max() -> None:
    retry = HandlerRetry(wait_initial=0.05, wait_max=0.1, wait_jitter=1.0)
    assert all(0.05 <= retry.wait(1) <= 0.1 for _ in range(50))
    assert all(retry.wait(5) <= 0.1 for _ in range(50))


def test_set_testing_makes_handler_retry_waits_zero() -> None:
    from lago_segment.errors import RetryError
    from lago_segment.forwarder._handlers import handler_flow
    from lago_segment.testing import set_testing

    calls = []

    def flaky(event: Any, settings: Any) -> None:
        calls.append(event)
        raise RetryError("later")

    set_testing(True)
    try:
        flow = handler_flow(flaky, {}, Settings({}), HandlerRetry(attempts=3, wait_initial=5))
        waits = [step.seconds for step in flow]
    finally:
        set_testing(False)
    assert waits == [0.0, 0.0]
    assert len(calls) == 3


def test_handler_retry_speaks_the_retry_policys_six_fields() -> None:
    from lago_segment.client import RetryPolicy

    fields = ("attempts", "timeout", "wait_initial", "wait_max", "wait_jitter", "wait_exp_base")
    assert [f.name for f in attrs_fields(HandlerRetry) if f.repr] == list(fields)
    assert [f.name for f in attrs_fields(RetryPolicy) if f.repr] == list(fields)
    assert HandlerRetry().timeout is None  # no deadline unless asked


def attrs_fields(cls: type) -> tuple[Any, ...]:
    import attrs

    return tuple(attrs.fields(cls))


def test_handler_retry_timeout_stops_the_retries_before_a_wait_past_it() -> None:
    from lago_segment.forwarder._handlers import handler_flow

    now = [100.0]
    calls = []

    def flaky(event: Any, settings: Any) -> None:
        calls.append(now[0])
        now[0] += 1.0  # each call takes a second
        raise RetryError("later")

    retry = HandlerRetry(
        attempts=100, wait_initial=2, wait_max=4, wait_jitter=0, timeout=10.5,
        clock=lambda: now[0],
    )  # fmt: skip
    flow = handler_flow(flaky, {}, Settings({}), retry)
    waits = []
    try:
        while True:
            wait = next(flow)
            waits.append(wait.seconds)
            now[0] += wait.seconds
    except StopIteration as stop:
        outcome = stop.value
    # call 1 s, wait 2, call 1 s, wait 4 (ends at 108), call 1 s: 109 + 4 > 110.5.
    assert (waits, calls) == ([2, 4], [100.0, 103.0, 108.0])
    assert (outcome.kind, outcome.retries, type(outcome.error)) == ("rejected", 2, RetryError)


def test_handler_retry_without_timeout_retries_all_its_attempts() -> None:
    from lago_segment.forwarder._handlers import handler_flow

    def flaky(event: Any, settings: Any) -> None:
        raise RetryError("later")

    retry = HandlerRetry(attempts=4, wait_initial=1000, wait_max=1000, wait_jitter=0)
    waits = [step.seconds for step in handler_flow(flaky, {}, Settings({}), retry)]
    assert waits == [1000, 1000, 1000]


def test_handler_retry_waits_grow_by_wait_exp_base() -> None:
    retry = HandlerRetry(wait_initial=1, wait_max=100, wait_jitter=0, wait_exp_base=3)
    assert [retry.wait(n) for n in (1, 2, 3)] == [1, 3, 9]


async def test_a_handler_retry_timeout_reports_the_event_from_either_forwarder(
    driver: Driver, errors: list[ForwardingFailure]
) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    sender = driver.sender()
    retry = HandlerRetry(
        attempts=10, wait_initial=1, wait_max=1, wait_jitter=0, timeout=2.5, clock=lambda: now[0]
    )
    fwd = driver.make(sender, on_error=errors.append, handler_retry=retry, sleep=sleep)

    @fwd.on("track")
    def handler(event: Track, settings: Settings) -> None:
        raise RetryError("lookup service busy")

    fwd.forward(track(7))
    await driver.close(fwd)
    assert slept == [1, 1]
    assert [(e.stage, e.message_id, type(e.error).__name__) for e in errors] == [
        ("handler", "m7", "RetryError")
    ]
