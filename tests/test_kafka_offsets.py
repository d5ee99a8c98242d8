"""The offset tracker: commit positions are each partition's settled prefix (no Kafka)."""

from __future__ import annotations

from lago_segment.kafka import OffsetTracker


def test_nothing_is_committable_while_the_first_message_is_unsettled() -> None:
    tracker = OffsetTracker()
    first = tracker.track("t", 0, 0)
    for offset in range(1, 5):
        tracker.settle(tracker.track("t", 0, offset))
    assert tracker.positions() == {}
    tracker.settle(first)
    assert tracker.positions() == {("t", 0): 5}


def test_a_message_settles_only_when_every_lago_event_did() -> None:
    tracker = OffsetTracker()
    ticket = tracker.track("t", 0, 7)
    tracker.add(ticket, 3)  # three Lago events
    tracker.settle(ticket)  # the consumer's hold
    tracker.settle(ticket, 2)
    assert tracker.positions() == {}
    assert tracker.unsettled() == 1
    tracker.settle(ticket)
    assert tracker.positions() == {("t", 0): 8}
    assert tracker.unsettled() == 0


def test_the_position_stops_at_the_first_gap_in_settlement() -> None:
    tracker = OffsetTracker()
    tickets = [tracker.track("t", 1, offset) for offset in (10, 11, 13, 14)]  # 12: compacted
    for index in (0, 1, 3):
        tracker.settle(tickets[index])
    assert tracker.positions() == {("t", 1): 12}
    tracker.settle(tickets[2])
    assert tracker.positions() == {("t", 1): 15}


def test_partitions_advance_independently() -> None:
    tracker = OffsetTracker()
    stuck = tracker.track("t", 0, 0)
    tracker.settle(tracker.track("t", 1, 0))
    tracker.settle(tracker.track("u", 0, 3))
    assert tracker.positions() == {("t", 1): 1, ("u", 0): 4}
    assert tracker.unsettled_in({("t", 0)}) == 1
    assert tracker.unsettled_in({("t", 1), ("u", 0)}) == 0
    tracker.settle(stuck)
    assert tracker.positions({("t", 0)}) == {("t", 0): 1}


def test_committed_positions_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.settle(tracker.track("t", 0, 0))
    positions = tracker.positions()
    tracker.committed(positions)
    assert tracker.positions() == {}
    tracker.settle(tracker.track("t", 0, 1))
    assert tracker.positions() == {("t", 0): 2}


def test_a_released_partition_ignores_late_settlements() -> None:
    tracker = OffsetTracker()
    late = tracker.track("t", 0, 0)
    tracker.settle(tracker.track("t", 0, 1))
    assert tracker.release({("t", 0)}) == 1
    assert tracker.unsettled() == 0
    tracker.settle(late)  # its batch came back after the partition was revoked
    assert tracker.positions() == {}
    # Reassigned later: a fresh start, untouched by the old tickets.
    again = tracker.track("t", 0, 0)
    tracker.settle(late)
    assert tracker.positions() == {}
    tracker.settle(again)
    assert tracker.positions() == {("t", 0): 1}


def test_a_restarted_stream_is_not_moved_by_messages_read_before_it() -> None:
    tracker = OffsetTracker()
    stale = [tracker.track("t", 0, offset) for offset in (50, 51)]  # read before a revoke
    fresh = tracker.track("t", 0, 40)  # the re-assigned partition starts at its commit
    for ticket in stale:
        tracker.settle(ticket)
    assert tracker.positions() == {}  # 52 would skip 40..49
    assert tracker.unsettled() == 1
    tracker.settle(fresh)
    assert tracker.positions() == {("t", 0): 41}
