"""The CLI's reading rules, checkpoints, dead letters and progress line, without a subprocess."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lago_segment.cli._input import InputRecord, open_source, read_event_argument
from lago_segment.cli._ledger import (
    Checkpoint,
    CheckpointError,
    DeadLetters,
    Ledger,
    Mark,
    Progress,
    Tally,
)
from lago_segment.errors import InvalidEventPayload
from lago_segment.lago import LagoEvent

TRACK = {"type": "track", "event": "API Call", "userId": "u1", "messageId": "m1"}


def items(path: Path, lago: bool = False) -> list[InputRecord]:
    with open_source(str(path)) as source:
        return list(source.lago_events() if lago else source.segment_events())


def jsonl(*records: Any) -> bytes:
    return b"".join(
        (r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records
    )


def test_json_lines_keep_their_line_numbers_past_blank_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(TRACK, b"", b"not json", {**TRACK, "messageId": "m2"}))
    got = items(path)
    assert [(i.position, i.error is None) for i in got] == [(1, True), (3, False), (4, True)]
    assert got[1].where == f"{path}:3"
    assert got[1].error is not None
    assert got[1].error.line == 3


@pytest.mark.parametrize("name", ["events.jsonl.gz", "events.data"])
def test_gzip_is_read_by_suffix_or_by_magic_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(jsonl(TRACK)))
    (item,) = items(path)
    assert item.value.message_id == "m1"


def test_a_pretty_printed_batch_file_is_read_item_by_item(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    batch = {"batch": [TRACK, {"type": "track", "userId": "u2"}], "context": {"ip": "1.2.3.4"}}
    path.write_text(json.dumps(batch, indent=2))
    good, bad = items(path)
    assert good.value.context["ip"] == "1.2.3.4"
    assert bad.where == f"{path}[1]"
    assert isinstance(bad.error, InvalidEventPayload)
    assert bad.error.index == 1


def test_a_one_line_batch_object_is_a_batch_not_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps({"batch": [TRACK, TRACK]}))
    assert [i.error for i in items(path)] == [None, None]


def test_a_corrupt_first_line_is_a_bad_line_not_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl(b'{"type": "tra', TRACK))
    bad, good = items(path)
    assert (bad.position, bad.error is not None) == (1, True)
    assert (good.position, good.error) == (2, None)


def test_a_json_array_is_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text("  \n" + json.dumps([TRACK, TRACK]))
    assert [i.position for i in items(path)] == [1, 2]


def test_lago_events_are_read_plain_or_from_dead_letter_records(tmp_path: Path) -> None:
    event = {"transaction_id": "t", "external_subscription_id": "s", "code": "c", "timestamp": 1}
    path = tmp_path / "lago.jsonl"
    path.write_bytes(jsonl(event, {"lago_event": event, "error": "boom", "permanent": False}))
    assert [i.value for i in items(path, lago=True)] == [LagoEvent.from_dict(event)] * 2


def test_a_bad_lago_event_line_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "lago.jsonl"
    path.write_bytes(jsonl({"transactionId": "t"}))
    (item,) = items(path, lago=True)
    assert item.error is not None
    assert "transactionId" in str(item.error)


def test_an_event_argument_may_be_inline_json() -> None:
    assert read_event_argument(json.dumps(TRACK)).message_id == "m1"


def test_an_event_argument_may_be_a_file(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(TRACK, indent=2))
    assert read_event_argument(str(path)).message_id == "m1"


def test_an_event_argument_of_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(TRACK).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert read_event_argument("-").message_id == "m1"


def test_a_bad_event_file_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text('{"type": "track"}')
    with pytest.raises(InvalidEventPayload, match=r"event\.json"):
        read_event_argument(str(path))


def test_a_checkpoint_round_trips(tmp_path: Path) -> None:
    checkpoint = Checkpoint(str(tmp_path / "cp"), "/data/a.jsonl")
    assert checkpoint.load() is None
    checkpoint.save(Mark(42, "abc"))
    assert checkpoint.load() == Mark(42, "abc")


def test_a_checkpoint_of_another_input_is_refused(tmp_path: Path) -> None:
    Checkpoint(str(tmp_path / "cp"), "/data/a.jsonl").save(Mark(7, "abc"))
    with pytest.raises(CheckpointError, match=r"is for '/data/a\.jsonl'"):
        Checkpoint(str(tmp_path / "cp"), "/data/b.jsonl").load()


def item(position: int) -> InputRecord:
    return InputRecord(position, f"e:{position}", None, digest=f"d{position}")


def test_the_ledger_settles_records_in_input_order() -> None:
    ledger = Ledger(None)
    ledger.read(item(1), 2)
    ledger.read(item(2), 0)  # no rule matched: settled as soon as what precedes it is
    ledger.read(item(4), 1)
    ledger.settle(4)
    assert ledger.settled is None  # record 1 still has two open events
    ledger.settle(1)
    ledger.settle(1)
    assert ledger.settled == Mark(4, "d4")


def test_the_ledger_never_passes_a_lost_event() -> None:
    ledger = Ledger(Mark(1, "d1"))
    ledger.read(item(2), 1)
    ledger.read(item(3), 1)
    ledger.settle(2)
    ledger.lost(3)
    ledger.read(item(4), 0)
    ledger.read(item(5), 1)
    ledger.settle(5)
    assert ledger.settled == Mark(2, "d2")
    assert ledger.stuck_at == 3


def test_dead_letters_hold_the_lago_event_and_its_error(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    event = LagoEvent(transaction_id="t", external_subscription_id="s", code="c", timestamp=1)
    dead = DeadLetters(str(path))
    dead.write(event, "Lago answered 422", True, "events.jsonl:3")
    dead.close()
    record = json.loads(path.read_text())
    assert record == {
        "lago_event": event.to_dict(),
        "error": "Lago answered 422",
        "permanent": True,
        "source": "events.jsonl:3",
    }


def test_progress_off_a_terminal_prints_one_line_per_update_with_an_eta() -> None:
    out = io.StringIO()
    ticks = iter([0.0, 10.0])
    progress = Progress(out, size=1000, consumed=lambda: 250, clock=lambda: next(ticks))
    progress.update(Tally(read=50, delivered=40, failed=2))
    assert out.getvalue() == (
        "progress: 50 events read, 40 stored, 0 duplicates, 2 failed, 5/s, 25%, ETA 0:30\n"
    )


def test_the_final_progress_line_of_a_whole_input_says_100_percent_in_correct_plurals() -> None:
    out = io.StringIO()
    ticks = iter([0.0, 1.0])
    # A gzip file's compressed bytes are read ahead, so the count can stop short.
    progress = Progress(out, size=1000, consumed=lambda: 970, clock=lambda: next(ticks))
    progress.update(Tally(read=1, delivered=1, duplicates=1), final=True, complete=True)
    assert out.getvalue() == "progress: 1 event read, 1 stored, 1 duplicate, 0 failed, 1/s, 100%\n"


def test_a_batch_file_may_open_with_the_batch_key_on_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "batch.json"
    path.write_text('{"batch": [\n' + json.dumps(TRACK) + "\n]}\n")
    assert [(i.where, i.error) for i in items(path)] == [(f"{path}[0]", None)]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_message_clears_the_status_line_first() -> None:
    out = FakeTerminal()
    progress = Progress(out, size=None, consumed=lambda: 0, clock=lambda: 1.0)
    progress.update(Tally(read=1))
    progress.message("events.jsonl:2: invalid event")
    assert out.getvalue().endswith("\r\x1b[Kevents.jsonl:2: invalid event\n")
