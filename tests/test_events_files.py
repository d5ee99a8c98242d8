"""lago_segment.events.iter_events: JSON lines from paths and open files."""

from __future__ import annotations

import gzip
import io
import json
import logging
from pathlib import Path

import pytest

from lago_segment.errors import InvalidEventPayload
from lago_segment.events import Identify, Track, iter_events

GOOD_1 = {"type": "track", "event": "e1", "userId": "u1"}
GOOD_2 = {"type": "identify", "userId": "u2"}
BAD = {"type": "track", "userId": "u3"}

LINES = [json.dumps(GOOD_1), "", "  ", json.dumps(BAD), json.dumps(GOOD_2)]
CONTENT = ("\n".join(LINES) + "\n").encode()


@pytest.fixture(params=["plain", "gz-suffix", "gz-magic-only"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "plain":
        target = tmp_path / "events.jsonl"
        target.write_bytes(CONTENT)
    else:
        name = "events.jsonl.gz" if request.param == "gz-suffix" else "events.jsonl"
        target = tmp_path / name
        target.write_bytes(gzip.compress(CONTENT))
    return target


@pytest.fixture(params=["path", "str", "text-file", "binary-file"])
def source(request: pytest.FixtureRequest, path: Path) -> object:
    if request.param == "path":
        return path
    if request.param == "str":
        return str(path)
    data = gzip.decompress(path.read_bytes()) if path.read_bytes()[:2] == b"\x1f\x8b" else CONTENT
    if request.param == "binary-file":
        return io.BytesIO(data)
    return io.StringIO(data.decode())


def test_strict_raises_at_the_first_bad_line_with_its_number(source: object) -> None:
    events = iter_events(source)  # type: ignore[arg-type]
    first = next(events)
    assert isinstance(first, Track)
    assert first.event == "e1"
    with pytest.raises(InvalidEventPayload) as info:
        next(events)
    assert info.value.line == 4
    assert info.value.path == "$.event"


def test_on_error_skips_and_reports_each_bad_line(source: object) -> None:
    errors: list[InvalidEventPayload] = []
    events = list(iter_events(source, on_error=errors.append))  # type: ignore[arg-type]
    assert [type(e) for e in events] == [Track, Identify]
    assert [(e.line, e.problem) for e in errors] == [(4, 'track event is missing "event"')]


def test_events_round_trip_from_files(source: object) -> None:
    events = list(iter_events(source, strict=False))  # type: ignore[arg-type]
    assert [e.to_dict() for e in events] == [GOOD_1, GOOD_2]


def test_non_strict_logs_bad_lines_as_warnings(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lago_segment"):
        events = list(iter_events(path, strict=False))
    assert len(events) == 2
    assert [r.name for r in caplog.records] == ["lago_segment.events"]
    assert "line 4" in caplog.records[0].getMessage()


def test_error_from_a_path_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "bad.jsonl"
    target.write_text("[1]\n")
    with pytest.raises(InvalidEventPayload) as info:
        list(iter_events(target))
    assert info.value.source == str(target)
    assert str(info.value) == f"message must be a JSON object, not array @ $ ({target}, line 1)"


def test_on_error_takes_precedence_over_strict() -> None:
    errors: list[InvalidEventPayload] = []
    data = io.BytesIO(b"not json\n" + json.dumps(GOOD_2).encode())
    events = list(iter_events(data, strict=True, on_error=errors.append))
    assert len(events) == 1
    assert errors[0].line == 1


def test_last_line_without_newline_is_read() -> None:
    events = list(iter_events(io.BytesIO(json.dumps(GOOD_2).encode())))
    assert [e.user_id for e in events] == ["u2"]


def test_crlf_lines_are_read() -> None:
    data = (json.dumps(GOOD_1) + "\r\n" + json.dumps(GOOD_2) + "\r\n").encode()
    assert len(list(iter_events(io.BytesIO(data)))) == 2


def test_overlong_line_is_reported_and_the_next_line_still_read() -> None:
    long_line = json.dumps({**GOOD_1, "properties": {"blob": "x" * 100_000}})
    data = io.StringIO(long_line + "\n" + json.dumps(GOOD_2) + "\n")
    errors: list[InvalidEventPayload] = []
    events = list(iter_events(data, on_error=errors.append))
    assert [e.user_id for e in events] == ["u2"]
    assert errors[0].line == 1
    assert "over the 32768-byte limit" in errors[0].problem


def test_iter_events_is_lazy() -> None:
    class CountingReads(io.BytesIO):
        reads = 0

        def readline(self, size: int | None = -1) -> bytes:
            CountingReads.reads += 1
            return super().readline(size)

    data = CountingReads((json.dumps(GOOD_2) + "\n").encode() * 1000)
    next(iter_events(data))
    assert CountingReads.reads == 1


def test_invalid_utf8_line_is_reported_with_its_line() -> None:
    data = io.BytesIO(b'{"type":"identify","userId":"\xff"}\n' + json.dumps(GOOD_2).encode())
    errors: list[InvalidEventPayload] = []
    assert len(list(iter_events(data, on_error=errors.append))) == 1
    assert (errors[0].line, errors[0].problem) == (1, "message is not valid UTF-8")


def test_batch_line_is_not_accepted() -> None:
    data = io.BytesIO(json.dumps({"batch": [GOOD_2]}).encode())
    with pytest.raises(InvalidEventPayload, match='missing "type"'):
        list(iter_events(data))


@pytest.mark.parametrize("mode", ["r", "rb"])
def test_real_open_files_in_text_and_binary_mode(tmp_path: Path, mode: str) -> None:
    target = tmp_path / "events.jsonl"
    target.write_bytes(CONTENT)
    with open(target, mode) as f:
        events = list(iter_events(f, strict=False))
    assert [e.user_id for e in events] == ["u1", "u2"]


def test_open_file_error_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "events.jsonl"
    target.write_bytes(CONTENT)
    with open(target, "rb") as f, pytest.raises(InvalidEventPayload) as info:
        list(iter_events(f))
    assert (info.value.source, info.value.line) == (str(target), 4)
