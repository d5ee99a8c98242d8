"""JSON-lines files of Segment messages (plain or gzip): :func:`iter_events` and its line reader.

The one reader of JSON-lines input: :func:`gunzipped` opens a file plain or
gzip (one sniff: the ``.gz`` suffix or gzip's magic bytes), and
:func:`read_lines` yields its numbered lines, each read up to a size cap, and
names the file and line where a broken stream stops. :func:`iter_events`
parses those lines into events; the CLI (:mod:`lago_segment.cli._input`)
reads its input files with the same two functions.
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Protocol, TypeVar

from lago_segment.errors import InvalidEventPayload
from lago_segment.events._models import (
    MAX_MESSAGE_BYTES,
    SegmentEvent,
)
from lago_segment.events._parser import parse_event

logger = logging.getLogger("lago_segment.events")


# --------------------------------------------------------------------------- the line reader

GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of every gzip file."""

LINE_LIMIT = MAX_MESSAGE_BYTES + 2
"""How much of one line :func:`iter_events` reads at once: a message, and room for ``\\r\\n``."""

_Line_co = TypeVar("_Line_co", bound="str | bytes", covariant=True)
_Line = TypeVar("_Line", bound="str | bytes")


class _LineStream(Protocol[_Line_co]):
    """What :func:`read_lines` needs: a file, binary or text, that reads a line up to a size."""

    def readline(self, size: int = -1, /) -> _Line_co: ...


#: An overlong line's rest: read past it, return how much more it held.
SkipRest = Callable[[], int]


def gunzipped(raw: io.BufferedReader, name: str) -> io.BufferedReader | gzip.GzipFile:
    """``raw``, or a gzip reader over it when ``name`` ends in ``.gz`` or the data starts with
    :data:`GZIP_MAGIC` (closing the gzip reader leaves ``raw`` open)."""
    if name.endswith(".gz") or raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def read_lines(
    stream: _LineStream[_Line], source: str | None, limit: int
) -> Iterator[tuple[int, _Line, SkipRest | None]]:
    """Yield ``(number, line, skip_rest)`` for each line of ``stream``, numbered from 1.

    A line comes with its line end; blank lines are yielded too. A line is
    read up to ``limit`` characters: a longer one is yielded as its first
    ``limit`` characters with ``skip_rest``, a function that reads past the
    rest of the line and returns how many more characters it held. Call it
    before reading on (or stop reading: the CLI reads the rest of a batch
    file itself); ``skip_rest`` is None for a whole line.

    A stream that cannot be read on (a truncated or corrupt gzip, data that
    is not gzip, a text-mode file holding bytes its encoding cannot decode)
    raises :class:`~lago_segment.errors.InvalidEventPayload` naming ``source``
    and the line where reading stopped; the low-level error is its
    ``__context__``.
    """
    readline = stream.readline
    number = 0
    while True:
        try:
            line = readline(limit)
        except _UNREADABLE as exc:
            raise _unreadable(exc, number + 1, source) from None
        if not line:
            return
        number += 1
        if len(line) >= limit and line[-1:] not in ("\n", b"\n"):
            yield number, line, functools.partial(_skip_rest, stream, limit, number, source)
        else:
            yield number, line, None


def overlong_problem(size: int) -> str:
    """What is wrong with a line of ``size``\\+ characters, over the message limit."""
    return f"message is {size}+ bytes, over the {MAX_MESSAGE_BYTES}-byte limit"


#: What reading a broken stream raises: gzip's EOFError (truncated),
#: BadGzipFile (an OSError: not gzip), zlib.error (corrupt data), and
#: UnicodeDecodeError from a text-mode file.
_UNREADABLE = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)


def _unreadable(exc: BaseException, line: int, source: str | None) -> InvalidEventPayload:
    # The stream itself is broken: nothing after this point can be read.
    return InvalidEventPayload(
        f"the file cannot be read past this point: {describe_unreadable(exc)}"
    ).located(line=line, source=source)


def describe_unreadable(exc: BaseException) -> str:
    """Why a file cannot be read on, in words (``iter_events``' and the CLI's messages)."""
    if isinstance(exc, EOFError):
        return "not a valid gzip file: it ends before gzip's end-of-stream marker (truncated?)"
    if isinstance(exc, gzip.BadGzipFile):
        text = str(exc)
        if text.startswith("Not a gzipped file"):
            return "not a valid gzip file: it does not start with gzip's magic bytes"
        return "not a valid gzip file: " + text[:1].lower() + text[1:]
    if isinstance(exc, zlib.error):
        return "not a valid gzip file: corrupt compressed data"
    if isinstance(exc, UnicodeDecodeError):
        return "not valid text in the file's encoding"
    strerror = exc.strerror if isinstance(exc, OSError) else None
    return f"cannot read: {strerror or exc}"


def _skip_rest(
    stream: _LineStream[str | bytes], limit: int, number: int, source: str | None
) -> int:
    """Read to the end of the overlong line ``number``; return how much more it held."""
    skipped = 0
    try:
        while True:
            chunk = stream.readline(limit)
            skipped += len(chunk)
            if not chunk or chunk[-1:] in ("\n", b"\n"):
                return skipped
    except _UNREADABLE as exc:
        raise _unreadable(exc, number, source) from None


# --------------------------------------------------------------------------- iter_events

OnError = Callable[[InvalidEventPayload], None]


def iter_events(
    source: str | os.PathLike[str] | IO[str] | IO[bytes],
    *,
    strict: bool = True,
    on_error: OnError | None = None,
) -> Iterator[SegmentEvent]:
    """Stream events from JSON lines: a path (``.gz`` read transparently) or an open file.

    One message per line; blank lines are skipped. A path is gzip-decompressed
    when it ends in ``.gz`` or starts with the gzip magic bytes; an open file
    is read as it is (wrap a compressed one in :func:`gzip.open` yourself).
    Lines are read one at a time, never more than 32 KB of one line at once.

    On a bad line: with ``on_error``, it is called with the error (which
    carries :attr:`~lago_segment.errors.InvalidEventPayload.line`, 1-based)
    and reading goes on; else with ``strict=True`` the error is raised; else
    (``strict=False``) it is logged as a warning and reading goes on. A line
    holding a whole batch (``{"batch": [...]}``) is not accepted: it is a bad
    line (use :func:`parse_batch` on it).

    A stream that cannot be read on (a truncated or corrupt ``.gz``, a file
    named ``.gz`` that is not gzip, a text-mode file holding bytes its
    encoding cannot decode) raises :class:`~lago_segment.errors.InvalidEventPayload`
    naming the file and the line where reading stopped, whatever ``strict``
    and ``on_error`` say: nothing after that point can be read.

    >>> import io
    >>> from lago_segment.events import iter_events
    >>> lines = io.BytesIO(b'{"type":"identify","userId":"u1"}\\n\\n[1]\\n')
    >>> bad = []
    >>> [e.user_id for e in iter_events(lines, on_error=bad.append)]
    ['u1']
    >>> bad[0].line
    3
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as raw, gunzipped(raw, name) as stream:
            yield from _iter_lines(stream, name, strict, on_error)
    else:
        yield from _iter_lines(source, getattr(source, "name", None), strict, on_error)


def _iter_lines(
    stream: _LineStream[str | bytes],
    name: object,
    strict: bool,
    on_error: OnError | None,
) -> Iterator[SegmentEvent]:
    source = name if isinstance(name, str) else None
    for number, raw, skip_rest in read_lines(stream, source, LINE_LIMIT):
        if skip_rest is not None:
            error = InvalidEventPayload(overlong_problem(len(raw) + skip_rest()))
        else:
            line = raw.strip()
            if not line:
                continue
            try:
                event = parse_event(line)
            except InvalidEventPayload as exc:
                error = exc
            else:
                yield event
                continue
        error = error.located(line=number, source=source)
        if on_error is not None:
            on_error(error)
        elif strict:
            raise error from None
        else:
            logger.warning("skipped a bad Segment message: %s", error)
