"""What the CLI reads: Segment events from JSON lines or batch files, one event argument.

Kept apart from the argument parsing so the reading rules (format detection,
positions for error messages and checkpoints) are testable with plain calls.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol, cast

import attrs

from .errors import InvalidEventPayload, InvalidLagoEvent
from .events import SegmentEvent, parse_batch, parse_event
from .lago import LagoEvent

__all__ = ["Item", "Source", "open_source", "read_event_argument"]

_GZIP_MAGIC = b"\x1f\x8b"


@attrs.frozen(slots=True)
class Item:
    """One input record: its position and either the parsed value or why it is bad.

    ``position`` is the 1-based line number in a JSON-lines file, or the
    1-based item number in a batch file; checkpoints record it.
    """

    position: int
    where: str
    """The position for messages: ``events.jsonl:12``, or ``batch.json[3]`` (0-based)."""
    value: Any
    error: InvalidEventPayload | InvalidLagoEvent | None = None


class _Stream(Protocol):
    """What reading needs: a binary file that can peek (BufferedReader, GzipFile)."""

    def peek(self, size: int, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


@attrs.define
class Source:
    """An open input: a path (``.gz`` transparently), or ``-`` for stdin.

    ``size`` is the file's size on disk (None for stdin or a pipe) and
    :attr:`consumed` how many of those bytes were read so far: together they
    give the progress display its ETA.
    """

    name: str
    stream: _Stream
    size: int | None
    _raw: IO[bytes]
    _closers: list[_Stream] = attrs.field(factory=list)
    _consumed: int = 0

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

    def segment_events(self) -> Iterator[Item]:
        """Yield Segment events: JSON lines, or a batch file (``{"batch": [...]}`` or an array).

        A bad line or item becomes an :class:`Item` with ``error`` set (and
        named by its line or item number); reading goes on.
        """
        return self._items(_parse_segment_line, _parse_segment_batch)

    def lago_events(self) -> Iterator[Item]:
        """Yield Lago events: JSON lines of Lago events (``map`` output) or dead-letter records.

        A dead-letter record holds the event under ``"lago_event"``; its
        error information is ignored when replaying it.
        """
        return self._items(_parse_lago_line, None)

    def _items(
        self,
        parse_line: Callable[[int, bytes, str], Item],
        parse_batch_file: Callable[[bytes, str], Iterator[Item]] | None,
    ) -> Iterator[Item]:
        first = self.stream.peek(64).lstrip()[:1]
        if parse_batch_file is not None and first == b"[":
            yield from parse_batch_file(self.stream.read(), self.name)
            return
        lines = iter(self.stream)
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if number == 1 and parse_batch_file is not None and _is_batch_start(line):
                rest = b"".join(lines)
                yield from parse_batch_file(line + rest, self.name)
                return
            yield parse_line(number, line, self.name)


_BATCH_OPENING = re.compile(rb'\s*\{\s*(?:"batch"\s*:.*)?')


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


def _parse_segment_line(number: int, line: bytes, name: str) -> Item:
    where = f"{name}:{number}"
    try:
        return Item(number, where, parse_event(line))
    except InvalidEventPayload as exc:
        return Item(number, where, None, exc.located(line=number, source=name))


def _parse_segment_batch(data: bytes, name: str) -> Iterator[Item]:
    try:
        document = json.loads(data)
    except ValueError as exc:
        yield Item(1, name, None, InvalidEventPayload(f"not JSON: {exc}", source=name))
        return
    if isinstance(document, list):
        items, shared = document, {}
    elif isinstance(document, dict) and isinstance(document.get("batch"), list):
        items = document["batch"]
        shared = {k: document[k] for k in ("context", "integrations") if k in document}
    else:
        problem = 'a batch file holds {"batch": [...]} or a JSON array'
        yield Item(1, name, None, InvalidEventPayload(problem, source=name))
        return
    for index, item in enumerate(items):
        # One item at a time, so one bad item does not hide the others; through
        # parse_batch so the batch's shared context and integrations are merged.
        where = f"{name}[{index}]"
        try:
            (event,) = parse_batch({"batch": [item], **shared})
        except InvalidEventPayload as exc:
            yield Item(index + 1, where, None, exc.located(index=index, source=name))
        else:
            yield Item(index + 1, where, event)


def _parse_lago_line(number: int, line: bytes, name: str) -> Item:
    where = f"{name}:{number}"
    try:
        data = json.loads(line)
    except ValueError as exc:
        return Item(number, where, None, InvalidLagoEvent("event", f"not JSON: {exc}"))
    if isinstance(data, dict) and "lago_event" in data:
        data = data["lago_event"]
    try:
        return Item(number, where, LagoEvent.from_dict(data))
    except InvalidLagoEvent as exc:
        return Item(number, where, None, exc)


def open_source(name: str) -> Source:
    """Open ``name`` for reading (``-`` is stdin); gzip is detected by suffix or magic bytes.

    Raises :class:`OSError` when the file cannot be opened.
    """
    if name == "-":
        # sys.stdin.buffer is a BufferedReader (it can peek) unless replaced.
        raw = cast("io.BufferedReader", sys.stdin.buffer)
        size = None
        closers: list[_Stream] = []
    else:
        raw = open(name, "rb")  # noqa: SIM115 - closed by Source.close
        size = os.fstat(raw.fileno()).st_size
        closers = [raw]
    stream: _Stream = raw
    if name.endswith(".gz") or raw.peek(2)[:2] == _GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=raw, mode="rb")
        closers.append(stream)
    return Source("<stdin>" if name == "-" else name, stream, size, raw, closers)


def read_event_argument(argument: str) -> SegmentEvent:
    """The ``explain`` command's EVENT: inline JSON, ``-`` for stdin, or a file of one event.

    Raises :class:`InvalidEventPayload` for a bad event, :class:`OSError` for
    a file that cannot be read.
    """
    if argument == "-":
        return parse_event(sys.stdin.buffer.read())
    if argument.lstrip().startswith("{"):
        return parse_event(argument)
    with open(argument, "rb") as f:
        data = f.read()
    if data[:2] == _GZIP_MAGIC:
        data = gzip.decompress(data)
    try:
        return parse_event(data)
    except InvalidEventPayload as exc:
        raise exc.located(source=argument) from None
