"""Segment messages from JSON-lines files (plain or gzip): :func:`iter_events`."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from lago_segment.errors import InvalidEventPayload
from lago_segment.events._models import (
    MAX_MESSAGE_BYTES,
    SegmentEvent,
)
from lago_segment.events._parser import parse_event

logger = logging.getLogger("lago_segment.events")


# --------------------------------------------------------------------------- files

_GZIP_MAGIC = b"\x1f\x8b"
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
        with open(name, "rb") as raw:
            if name.endswith(".gz") or raw.peek(2)[:2] == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    yield from _iter_lines(
                        unzipped,  # type: ignore[arg-type]
                        name,
                        strict,
                        on_error,
                    )
            else:
                yield from _iter_lines(raw, name, strict, on_error)
    else:
        yield from _iter_lines(source, getattr(source, "name", None), strict, on_error)


def _iter_lines(
    f: IO[str] | IO[bytes],
    name: str | None,
    strict: bool,
    on_error: OnError | None,
) -> Iterator[SegmentEvent]:
    source = name if isinstance(name, str) else None
    limit = MAX_MESSAGE_BYTES + 2  # room for "\r\n"
    readline = f.readline
    number = 0
    while True:
        overlong = 0
        try:
            line = readline(limit)
            if len(line) >= limit and line[-1:] not in ("\n", b"\n"):
                overlong = len(line) + _skip_rest(f, limit)
        except _UNREADABLE as exc:
            # The stream itself is broken (a truncated or non-gzip .gz, bytes
            # that are not text): nothing after this point can be read.
            raise InvalidEventPayload(
                f"the file cannot be read past this point: {_describe(exc)}"
            ).located(line=number + 1, source=source) from None
        if not line:
            return
        number += 1
        try:
            if overlong:
                raise InvalidEventPayload(
                    f"message is {overlong}+ bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
                )
            line = line.strip()
            if not line:
                continue
            event = parse_event(line)
        except InvalidEventPayload as exc:
            error = exc.located(line=number, source=source)
            if on_error is not None:
                on_error(error)
            elif strict:
                raise error from None
            else:
                logger.warning("skipped a bad Segment message: %s", error)
            continue
        yield event


#: What reading a broken stream raises: gzip's EOFError (truncated),
#: BadGzipFile (an OSError: not gzip), zlib.error (corrupt data), and
#: UnicodeDecodeError from a text-mode file.
_UNREADABLE = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed data ends early (truncated gzip)"
    if isinstance(exc, gzip.BadGzipFile):
        return "not gzip data"
    if isinstance(exc, zlib.error):
        return "corrupt gzip data"
    return "not valid text in the file's encoding"


def _skip_rest(f: IO[str] | IO[bytes], limit: int) -> int:
    """Read to the end of an overlong line; return how much more it held."""
    skipped = 0
    while True:
        chunk = f.readline(limit)
        skipped += len(chunk)
        if not chunk or chunk[-1:] in ("\n", b"\n"):
            return skipped
