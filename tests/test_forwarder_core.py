"""The forwarders' I/O-free core: batching decisions and what a BatchResult means."""

from __future__ import annotations

import pytest
from forwarder_support import PERMANENT, TRANSIENT, lago

from lago_segment._forwarder_core import Core, ForwardingError, Item, MemoryStore
from lago_segment._handlers import HandlerRetry
from lago_segment.client import BatchResult, DeliveryFailure
from lago_segment.lago import LagoEvent


def make_core(errors: list[ForwardingError], batch_size: int = 3) -> Core:
    return Core(
        spec=None,
        settings=None,
        on_error=errors.append,
        store=MemoryStore(100),
        batch_size=batch_size,
        on_full="raise",
        mapping_errors="raise",
        handler_retry=HandlerRetry(),
        sleep=lambda s: None,
    )


def queued(core: Core, *events: LagoEvent) -> list[Item]:
    items = [Item(e, e.transaction_id) for e in events]
    assert core.store.put(items)
    core.accepted(items)
    return core.store.take(len(items))


@pytest.fixture
def errors() -> list[ForwardingError]:
    return []


def test_a_full_batch_is_sent_at_once(errors: list[ForwardingError]) -> None:
    core = make_core(errors)
    core.store.put([Item(lago(n)) for n in range(3)])
    assert core.next_wait(urgent=False, now=0, deadline=10, interval=1) is None


def test_a_partial_batch_waits_for_the_deadline(errors: list[ForwardingError]) -> None:
    core = make_core(errors)
    core.store.put([Item(lago(1))])
    assert core.next_wait(urgent=False, now=4, deadline=10, interval=1) == 6
    assert core.next_wait(urgent=False, now=10, deadline=10, interval=1) is None


def test_a_partial_batch_goes_at_once_when_a_flush_waits(errors: list[ForwardingError]) -> None:
    core = make_core(errors)
    core.store.put([Item(lago(1))])
    assert core.next_wait(urgent=True, now=0, deadline=10, interval=1) is None


def test_an_empty_queue_waits_one_interval(errors: list[ForwardingError]) -> None:
    assert make_core(errors).next_wait(urgent=True, now=0, deadline=0, interval=2.5) == 2.5


def test_settle_counts_delivered_duplicates_and_failures(errors: list[ForwardingError]) -> None:
    core = make_core(errors)
    items = queued(core, lago(1), lago(2), lago(3))
    result = BatchResult(
        delivered=(lago(1),),
        duplicates=(lago(2),),
        failed=(DeliveryFailure(lago(3), PERMANENT, True),),
        retries=2,
    )
    assert core.settle(items, result) == 3
    s = core.stats()
    assert (s.delivered, s.duplicates, s.failed, s.retried, s.queue_depth) == (2, 1, 1, 2, 0)
    assert [(e.message_id, e.error, e.permanent) for e in errors] == [("m3", PERMANENT, True)]


def test_settle_matches_equal_events_the_client_rebuilt(errors: list[ForwardingError]) -> None:
    core = make_core(errors)
    items = queued(core, lago(1))
    # Not the same object, an equal one: matched on transaction_id + subscription.
    core.settle(items, BatchResult(failed=(DeliveryFailure(lago(1), TRANSIENT, False),)))
    assert errors[0].message_id == "m1"
    assert errors[0].lago_event is items[0].event


def test_a_client_exception_fails_the_whole_batch(errors: list[ForwardingError]) -> None:
    core = make_core(errors)
    items = queued(core, lago(1), lago(2))
    boom = RuntimeError("client bug")
    assert core.settle(items, boom) == 2
    assert [(e.message_id, e.error) for e in errors] == [("m1", boom), ("m2", boom)]
    assert core.stats().failed == 2


def test_batch_size_is_capped_at_lagos_limit(errors: list[ForwardingError]) -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        make_core(errors, batch_size=101)
