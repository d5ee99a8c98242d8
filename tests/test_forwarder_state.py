"""The forwarders' I/O-free state: batching decisions and what a BatchResult means."""

from __future__ import annotations

from collections.abc import Generator

import httpx
import pytest
from support_forwarder import PERMANENT, TRANSIENT, lago

from lago_segment.client import BatchResult, DeliveryFailure
from lago_segment.client._flows import Call, Wait
from lago_segment.errors import LagoRateLimitError
from lago_segment.forwarder._options import ForwarderOptions
from lago_segment.forwarder._records import ForwardingFailure
from lago_segment.forwarder._sender_flow import Abandoned, Idle, Send
from lago_segment.forwarder._state import ForwardingState
from lago_segment.forwarder._stores import MemoryStore, QueuedEvent
from lago_segment.lago import LagoEvent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_state(
    errors: list[ForwardingFailure], batch_size: int = 3, clock: Clock | None = None
) -> ForwardingState:
    options = ForwarderOptions(
        on_error=errors.append,
        batch_size=batch_size,
        sleep=lambda s: None,
        max_in_flight=4,
        clock=clock or Clock(),
    )
    return ForwardingState(options, MemoryStore(100))


def one_call() -> Generator[Call, object, object]:
    """A client flow posting once and returning what it got."""
    reply = yield Call("/api/v1/events/batch", b"{}")
    return reply


def queued(state: ForwardingState, *events: LagoEvent) -> list[QueuedEvent]:
    items = [QueuedEvent(e, e.transaction_id) for e in events]
    assert state.store.put(items)
    state.accepted(items)
    return state.store.take(len(items))


def test_a_full_batch_is_sent_at_once(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    state.store.put([QueuedEvent(lago(n)) for n in range(3)])
    assert state.next_wait(urgent=False, now=0, deadline=10, interval=1) is None


def test_a_partial_batch_waits_for_the_deadline(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    state.store.put([QueuedEvent(lago(1))])
    assert state.next_wait(urgent=False, now=4, deadline=10, interval=1) == 6
    assert state.next_wait(urgent=False, now=10, deadline=10, interval=1) is None


def test_a_partial_batch_goes_at_once_when_a_flush_waits(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    state.store.put([QueuedEvent(lago(1))])
    assert state.next_wait(urgent=True, now=0, deadline=10, interval=1) is None


def test_an_empty_queue_waits_one_interval(errors: list[ForwardingFailure]) -> None:
    assert make_state(errors).next_wait(urgent=True, now=0, deadline=0, interval=2.5) == 2.5


def test_settle_counts_delivered_duplicates_and_failures(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    items = queued(state, lago(1), lago(2), lago(3))
    result = BatchResult(
        delivered=(lago(1),),
        duplicates=(lago(2),),
        failed=(DeliveryFailure(lago(3), PERMANENT, True),),
        retries=2,
    )
    assert state.settle(items, result) == 3
    s = state.stats()
    assert (s.delivered, s.duplicates, s.failed, s.retried, s.queue_depth) == (2, 1, 1, 2, 0)
    assert [(e.message_id, e.error, e.permanent) for e in errors] == [("m3", PERMANENT, True)]


def test_settle_matches_equal_events_the_client_rebuilt(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    items = queued(state, lago(1))
    # Not the same object, an equal one: matched on transaction_id + subscription.
    state.settle(items, BatchResult(failed=(DeliveryFailure(lago(1), TRANSIENT, False),)))
    assert errors[0].message_id == "m1"
    assert errors[0].lago_event is items[0].event


def test_a_client_exception_fails_the_whole_batch(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    items = queued(state, lago(1), lago(2))
    boom = RuntimeError("client bug")
    assert state.settle(items, boom) == 2
    assert [(e.message_id, e.error) for e in errors] == [("m1", boom), ("m2", boom)]
    assert state.stats().failed == 2


def test_batch_size_is_capped_at_lagos_limit(errors: list[ForwardingFailure]) -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        make_state(errors, batch_size=101)


def test_a_429_pauses_every_sender_until_the_reset(errors: list[ForwardingFailure]) -> None:
    clock = Clock()
    state = make_state(errors, clock=clock)
    first = state.gated(one_call())
    assert isinstance(next(first), Call)
    too_many = httpx.Response(429, headers={"X-RateLimit-Reset": "5"})
    with pytest.raises(StopIteration):
        first.send(too_many)
    # Another sender's request now waits for the reset before it goes out.
    second = state.gated(one_call())
    assert next(second) == Wait(5.0)
    clock.now += 5
    assert isinstance(second.send(None), Call)


def test_a_paused_sender_idles_with_a_full_batch_ready(errors: list[ForwardingFailure]) -> None:
    clock = Clock()
    state = make_state(errors, clock=clock)
    state.store.put([QueuedEvent(lago(n)) for n in range(3)])
    state.pause(2.5)
    sender = state.sender()
    assert next(sender) == Idle(2.5, state.wakeups)
    clock.now += 2.5
    assert isinstance(sender.send(None), Send)


def test_a_rate_limited_batch_pauses_every_sender(errors: list[ForwardingFailure]) -> None:
    clock = Clock()
    state = make_state(errors, clock=clock)
    state.store.put([QueuedEvent(lago(n)) for n in range(6)])
    sender = state.sender()
    step = next(sender)
    assert isinstance(step, Send)
    limited = LagoRateLimitError(429, "Too Many Requests", reset=7.0)
    failed = tuple(DeliveryFailure(e, limited, False) for e in step.events)
    assert sender.send(BatchResult(failed=failed)) == Idle(7.0, state.wakeups)
    assert len(errors) == 3  # memory mode: the batch is reported


def test_a_client_flow_stops_once_close_gave_up(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    flow = state.gated(one_call())
    state.abandon()
    with pytest.raises(Abandoned):
        next(flow)


def test_close_takes_over_a_batch_in_flight_exactly_once(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    state.store.put([QueuedEvent(lago(n)) for n in range(3)])
    sender = state.sender()
    step = next(sender)
    assert isinstance(step, Send)
    state.stopping = True
    assert [i.event for i in state.abandon()] == step.events
    # The request ends later: its sender neither settles nor reports it, and stops.
    with pytest.raises(StopIteration):
        sender.send(BatchResult(delivered=tuple(step.events)))
    assert (state.stats().delivered, errors, state.abandon()) == (0, [], [])


def test_senders_share_the_work_one_batch_each(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    state.store.put([QueuedEvent(lago(n)) for n in range(6)])
    first, second, third = state.sender(), state.sender(), state.sender()
    a, b = next(first), next(second)
    assert isinstance(a, Send)
    assert isinstance(b, Send)
    assert {e.transaction_id for e in a.events + b.events} == {f"m{n}" for n in range(6)}
    assert isinstance(next(third), Idle)  # nothing left for a third
    assert isinstance(first.send(BatchResult(delivered=tuple(a.events))), Idle)
    assert state.settled == 3


def test_no_pause_when_waiting_is_off(errors: list[ForwardingFailure]) -> None:
    state = make_state(errors)
    state.pauses = False  # the client's retry policy does not really sleep
    state.pause(5)
    assert state.paused_until == 0
