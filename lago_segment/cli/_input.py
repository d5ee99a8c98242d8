"""What the CLI reads: Segment events from JSON lines or batch files, one event argument.

Kept apart from the argument parsing so the reading rules (format detection,
positions for error messages and checkpoints) are testable with plain calls.

Input files are untrusted: whatever they hold, reading them raises only
:class:`InputError` (the whole file cannot be read: not gzip, truncated,
too large to be a batch file) or yields an :class:`InputRecord` whose ``error`` says
what is wrong with that one line. Memory stays bounded: a line of Segment
events is read up to a message's size (32 KB, as :func:`~lago_segment.events.iter_events`
reads it: the lines come from the same reader), a line of Lago events up to
:data:`MAX_LINE_BYTES`, a batch file (read whole, it is one JSON document) up
to :data:`MAX_BATCH_FILE_BYTES`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol, cast

import attrs

from lago_segment.errors import InvalidEventPayload, InvalidLagoEvent, LagoSegmentError
from lago_segment.events import SegmentEvent, parse_batch, parse_event
from lago_segment.events._files import (
    LINE_LIMIT,
    describe_unreadable,
    gunzipped,
    overlong_problem,
    read_lines,
)
from lago_segment.lago import LagoEvent

__all__ = [
    "MAX_BATCH_FILE_BYTES",
    "MAX_LINE_BYTES",
    "InputError",
    "InputRecord",
    "Source",
    "open_source",
    "read_event_argument",
]

MAX_LINE_BYTES = 1 << 20
"""The longest line of Lago events read (1 MiB): a longer line is reported as invalid
without being held in memory. (A line of Segment events is read up to Segment's 32 KB
message limit, as :func:`~lago_segment.events.iter_events` reads it.)"""

MAX_BATCH_FILE_BYTES = 16 << 20
"""The largest batch file (a JSON array or ``{"batch": [...]}``, 16 MiB uncompressed).

A batch file is one JSON document, parsed whole (about five times its size in
memory); a larger one is refused with a hint to convert it to JSON lines, which
are streamed whatever their size."""

_CONVERT_HINT = "convert it to JSON lines, e.g. jq -c '.[]' (an array) or jq -c '.batch[]'"


class InputError(LagoSegmentError):
    """An input file cannot be read as a whole: not gzip, truncated, or too large.

    The message starts with the file's name (``events.jsonl.gz: not a valid
    gzip file: ...``).
    """


@attrs.frozen(slots=True)
class InputRecord:
    """One input record: its position and either the parsed value or why it is bad.

    ``position`` is the 1-based line number in a JSON-lines file, or the
    1-based item number in a batch file; checkpoints record it, with
    ``digest`` (a hash of the record's bytes) to recognise it on resume.
    """

    position: int
    where: str
    """The position for messages: ``events.jsonl:12``, or ``batch.json[3]`` (0-based)."""
    value: Any
    error: InvalidEventPayload | InvalidLagoEvent | None = None
    digest: str = ""


def digest(data: bytes) -> str:
    """The hash a checkpoint keeps of the input record at its position."""
    return hashlib.sha256(data.rstrip(b"\r\n")).hexdigest()[:32]


class _Stream(Protocol):
    """What reading needs: a binary file that can peek (BufferedReader, GzipFile)."""

    def peek(self, size: int, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


@attrs.define
class Source:
    """An open input: a path (``.gz`` transparently), or ``-`` for stdin.

    ``size`` is the file's size on disk (None for stdin or a pipe) and
    :attr:`consumed` how many of those bytes were read so far: together they
    give the progress display its ETA. :attr:`exhausted` turns true once the
    whole input was read.
    """

    name: str
    stream: _Stream
    size: int | None
    _raw: IO[bytes]
    _closers: list[_Stream] = attrs.field(factory=list)
    _consumed: int = 0
    exhausted: bool = False

    @property
    def consumed(self) -> int:
        """Bytes of the file on disk read so far (compressed bytes for ``.gz``)."""
        # A pipe cannot tell; a closed file keeps its last count.
        with contextlib.suppress(OSError, ValueError):
            self._consumed = self._raw.tell()
        return self._consumed

    def close(self) -> None:
        """Close what :func:`open_source` opened (never stdin)."""
        for f in reversed(self._closers):
            f.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def segment_events(self) -> Iterator[InputRecord]:
        """Yield Segment events: JSON lines, or a batch file (``{"batch": [...]}`` or an array).

        A bad line or item becomes an :class:`InputRecord` with ``error`` set (and
        named by its line or item number); reading goes on. Raises
        :class:`InputError` when the file itself cannot be read.
        """
        return self._items(_parse_segment_line, _parse_segment_batch)

    def lago_events(self) -> Iterator[InputRecord]:
        """Yield Lago events: JSON lines of Lago events (``map`` output) or dead-letter records.

        A dead-letter record holds the event under ``"lago_event"``; its
        error information is ignored when replaying it.
        """
        return self._items(_parse_lago_line, None)

    def _items(
        self,
        parse_line: Callable[[int, bytes, str], InputRecord],
        parse_batch_file: Callable[[bytes, str], Iterator[InputRecord]] | None,
    ) -> Iterator[InputRecord]:
        # Segment events are read up to a message's size, as iter_events reads
        # them; Lago events (map's output, dead letters) have no such limit.
        limit = LINE_LIMIT if parse_batch_file is not None else MAX_LINE_BYTES + 1
        number = 0
        try:
            first = self.stream.peek(64).lstrip()[:1]
            if parse_batch_file is not None and first == b"[":
                yield from parse_batch_file(self._read_document(b""), self.name)
                self.exhausted = True
                return
            for number, line, skip_rest in read_lines(self.stream, self.name, limit):
                if number == 1 and parse_batch_file is not None and _is_batch_start(line):
                    yield from parse_batch_file(self._read_document(line), self.name)
                    self.exhausted = True
                    return
                if skip_rest is not None:
                    size = len(line) + skip_rest()
                    yield _too_long(number, line, size, self.name, parse_batch_file is None)
                    continue
                if not line.strip():
                    continue
                yield parse_line(number, line, self.name)
            self.exhausted = True
        except InvalidEventPayload as exc:  # from read_lines: the stream is broken
            reason = exc.__context__ if exc.__context__ is not None else exc
            raise InputError(self._unreadable(reason, number)) from None
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(self._unreadable(exc, number)) from None

    def _read_document(self, start: bytes) -> bytes:
        rest = self.stream.read(MAX_BATCH_FILE_BYTES + 1 - len(start))
        data = start + rest
        if len(data) > MAX_BATCH_FILE_BYTES:
            raise InputError(
                f"{self.name}: a batch file is parsed whole, and this one is over "
                f"{MAX_BATCH_FILE_BYTES >> 20} MiB: {_CONVERT_HINT}"
            )
        return data

    def _unreadable(self, exc: BaseException, lines: int) -> str:
        after = f" (after line {lines})" if lines else ""
        return f"{self.name}: {describe_unreadable(exc)}{after}"


def _too_long(number: int, line: bytes, size: int, name: str, lago: bool) -> InputRecord:
    where = f"{name}:{number}"
    if lago:
        problem = f"line longer than {MAX_LINE_BYTES >> 20} MiB"
        return InputRecord(number, where, None, InvalidLagoEvent("event", problem), digest(line))
    error = InvalidEventPayload(overlong_problem(size), line=number, source=name)
    return InputRecord(number, where, None, error, digest(line))


_BATCH_OPENING = re.compile(rb'\s*\{\s*(?:"batch"\s*:.*)?')

# A JSON escape of a UTF-16 surrogate: the only way JSON text in UTF-8 can hold
# text that is not valid Unicode (a lone surrogate, which nothing can encode).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _is_batch_start(line: bytes) -> bool:
    """A batch file's first line: a whole ``{"batch": ...}`` object, or the opening of one.

    The opening of a pretty-printed document is a lone ``{`` or ``{"batch": [``;
    any other line that is not JSON is a bad first line of a JSON-lines file.
    """
    try:
        data = json.loads(line)
    except ValueError:
        return _BATCH_OPENING.fullmatch(line.strip()) is not None
    return isinstance(data, dict) and "batch" in data


def lone_surrogate(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first string (or key) holding a lone surrogate, else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if isinstance(key, str) else path
            if isinstance(key, str) and lone_surrogate(key) is not None:
                return inner
            found = lone_surrogate(item, inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


_SURROGATE_PROBLEM = "holds a lone UTF-16 surrogate (e.g. \\ud800): not valid Unicode"


def _surrogate_path(data: bytes | str) -> str | None:
    """Where JSON text holds a lone surrogate (checked only when it may hold one)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if not _SURROGATE_ESCAPE.search(raw) and not (
        isinstance(data, str) and lone_surrogate(data) is not None
    ):
        return None
    try:
        return lone_surrogate(json.loads(data))
    except ValueError:
        return None


def _parse_segment_line(number: int, line: bytes, name: str) -> InputRecord:
    where = f"{name}:{number}"
    try:
        event = parse_event(line)
    except InvalidEventPayload as exc:
        return InputRecord(
            number, where, None, exc.located(line=number, source=name), digest(line)
        )
    path = _surrogate_path(line)
    if path is not None:
        error = InvalidEventPayload(_SURROGATE_PROBLEM, path, line=number, source=name)
        return InputRecord(number, where, None, error, digest(line))
    return InputRecord(number, where, event, None, digest(line))


def _parse_segment_batch(data: bytes, name: str) -> Iterator[InputRecord]:
    whole = digest(data[:4096])
    try:
        document = json.loads(data)
    except ValueError as exc:
        yield InputRecord(
            1, name, None, InvalidEventPayload(f"not JSON: {exc}", source=name), whole
        )
        return
    if isinstance(document, list):
        items, shared = document, {}
    elif isinstance(document, dict) and isinstance(document.get("batch"), list):
        items = document["batch"]
        shared = {k: document[k] for k in ("context", "integrations") if k in document}
    else:
        problem = 'a batch file holds {"batch": [...]} or a JSON array'
        yield InputRecord(1, name, None, InvalidEventPayload(problem, source=name), whole)
        return
    if lone_surrogate(shared) is not None:
        shared = {}  # reported with each item below
    for index, item in enumerate(items):
        # One item at a time, so one bad item does not hide the others; through
        # parse_batch so the batch's shared context and integrations are merged.
        where = f"{name}[{index}]"
        mark = digest(json.dumps(item, sort_keys=True, ensure_ascii=True).encode())
        path = lone_surrogate(item)
        try:
            if path is not None:
                raise InvalidEventPayload(_SURROGATE_PROBLEM, path)
            (event,) = parse_batch({"batch": [item], **shared})
        except InvalidEventPayload as exc:
            error = exc.located(index=index, source=name)
            yield InputRecord(index + 1, where, None, error, mark)
        else:
            yield InputRecord(index + 1, where, event, None, mark)


def _parse_lago_line(number: int, line: bytes, name: str) -> InputRecord:
    where = f"{name}:{number}"
    mark = digest(line)
    try:
        data = json.loads(line)
    except ValueError as exc:
        return InputRecord(
            number, where, None, InvalidLagoEvent("event", f"not JSON: {exc}"), mark
        )
    if isinstance(data, dict) and "lago_event" in data:
        data = data["lago_event"]
    path = lone_surrogate(data)
    if path is not None:
        return InputRecord(number, where, None, InvalidLagoEvent(path, _SURROGATE_PROBLEM), mark)
    try:
        return InputRecord(number, where, LagoEvent.from_dict(data), None, mark)
    except InvalidLagoEvent as exc:
        return InputRecord(number, where, None, exc, mark)


def open_source(name: str) -> Source:
    """Open ``name`` for reading (``-`` is stdin); gzip is detected by suffix or magic bytes.

    Raises :class:`OSError` when the file cannot be opened (or is a directory).
    """
    if name == "-":
        # sys.stdin.buffer is a BufferedReader (it can peek) unless replaced.
        raw = cast("io.BufferedReader", sys.stdin.buffer)
        size = None
        closers: list[_Stream] = []
    else:
        raw = open(name, "rb")  # noqa: SIM115 - closed by Source.close
        status = os.fstat(raw.fileno())
        size = status.st_size if stat.S_ISREG(status.st_mode) else None  # a FIFO: like stdin
        closers = [raw]
    try:
        stream: _Stream = gunzipped(raw, name)
    except OSError:
        if name != "-":
            raw.close()
        raise
    if stream is not raw:
        closers.append(stream)
    label = "<stdin>" if name == "-" else name
    return Source(label, stream, size, raw, closers)


def read_event_argument(argument: str) -> SegmentEvent:
    """The ``explain`` command's EVENT: inline JSON, ``-`` for stdin, or a file of one event.

    Raises :class:`InvalidEventPayload` for a bad event, :class:`InputError`
    for a file that is not one event (JSON lines, corrupt gzip), :class:`OSError`
    for a file that cannot be read.
    """
    name = argument
    data: bytes | str
    if argument == "-":
        name = "<stdin>"
        data = sys.stdin.buffer.read(MAX_BATCH_FILE_BYTES + 1)
    elif argument.lstrip().startswith("{"):
        name = "EVENT"
        data = argument
    else:
        if os.path.isdir(argument):
            raise IsADirectoryError(21, "Is a directory", argument)
        with open(argument, "rb") as f:
            data = f.read(MAX_BATCH_FILE_BYTES + 1)
    if isinstance(data, bytes):
        try:
            with gunzipped(io.BufferedReader(io.BytesIO(data)), "") as unzipped:
                data = unzipped.read(MAX_BATCH_FILE_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{name}: {describe_unreadable(exc)}") from None
    if len(data) > MAX_BATCH_FILE_BYTES:
        raise InputError(f"{name}: over {MAX_BATCH_FILE_BYTES >> 20} MiB, not one event")
    try:
        event = parse_event(data)
    except InvalidEventPayload as exc:
        lines = _json_lines(data)
        if lines > 1:
            source = "FILE" if argument == "-" else argument
            raise InputError(
                f"{name}: holds {lines} events (JSON lines), and explain takes one: pick one, "
                f"e.g. the 3rd with: sed -n 3p {source} | lago-segment explain SPEC -"
            ) from None
        if name == "EVENT":
            raise
        raise exc.located(source=name) from None
    path = _surrogate_path(data)
    if path is not None:
        raise InvalidEventPayload(_SURROGATE_PROBLEM, path, source=name)
    return event


def _json_lines(data: bytes | str) -> int:
    """How many JSON objects ``data`` holds, one a line (0 unless its first line is one)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    lines = [line for line in raw.splitlines() if line.strip()]
    if len(lines) < 2:
        return 0
    try:
        first = json.loads(lines[0])
    except ValueError:
        return 0
    return len(lines) if isinstance(first, dict) else 0
