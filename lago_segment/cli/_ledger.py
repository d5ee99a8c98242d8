"""The ``replay`` command's machinery: checkpoints, the dead-letter file, the progress line.

Resuming is safe by construction: the checkpoint only ever names an input
position whose every Lago event has settled (stored, a duplicate, or written
to the dead-letter file). Whatever was in flight when the run stopped is sent
again, and Lago stores one event per transaction_id: a resent event comes back
as a duplicate, never as a second charge.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import attrs

from lago_segment._dead_letters import dead_letter_line, dead_letter_record, open_private
from lago_segment.cli._conventions import plural
from lago_segment.errors import LagoSegmentError

if TYPE_CHECKING:  # annotations only: the CLI's parser imports this module light
    from lago_segment.cli._input import InputRecord
    from lago_segment.client import BatchResult
    from lago_segment.lago import LagoEvent

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DeadLetters",
    "Ledger",
    "Mark",
    "Progress",
    "Tally",
    "default_checkpoint_path",
]


@attrs.define
class Tally:
    """Running counts of one ``map`` or ``replay`` run."""

    read: int = 0
    """Input records read (events, valid or not)."""
    matched: int = 0
    """Input events at least one rule mapped."""
    skipped: int = 0
    """Input events no rule matched."""
    invalid: int = 0
    """Input records that are not valid events, or that a rule failed to map."""
    lago_events: int = 0
    """Lago events produced."""
    delivered: int = 0
    duplicates: int = 0
    failed: int = 0

    def add(self, result: BatchResult) -> None:
        """Count a batch's outcome."""
        self.delivered += len(result.delivered)
        self.duplicates += len(result.duplicates)
        self.failed += len(result.failed)


class CheckpointError(LagoSegmentError):
    """A checkpoint cannot be used: unreadable, of another input, or its input changed."""


def default_checkpoint_path(input_path: str) -> str:
    """Where ``replay`` keeps the checkpoint of ``input_path`` unless told otherwise.

    ``$XDG_STATE_HOME/lago-segment/checkpoints/<file name>-<hash of its absolute
    path>.json`` (``~/.local/state`` when ``XDG_STATE_HOME`` is unset;
    ``%LOCALAPPDATA%`` on Windows): the user's state directory, never next to
    the input in someone's checkout.
    """
    absolute = os.path.abspath(input_path)
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        local = os.environ.get("LOCALAPPDATA", "") if os.name == "nt" else ""
        base = local or os.path.join(os.path.expanduser("~"), ".local", "state")
    key = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = f"{os.path.basename(absolute)}-{key}.json"
    return os.path.join(base, "lago-segment", "checkpoints", name)


@attrs.frozen(slots=True)
class Mark:
    """An input record a checkpoint points at: its position and a hash of its bytes."""

    position: int
    digest: str


@attrs.frozen(slots=True)
class Checkpoint:
    """The last input record whose Lago events have all settled, saved atomically.

    The file is a small JSON object: ``{"version": 2, "source": ..., "position":
    N, "digest": ...}``. ``source`` is the input's absolute path (``"<stdin>"``
    for stdin), so a checkpoint is never applied to a different file by
    mistake; ``digest`` is a hash of the record at ``position``, so a file
    replaced or rotated under the same name is recognised (see :meth:`verify`).
    """

    path: str
    source: str

    def load(self) -> Mark | None:
        """The saved mark, or None when there is no checkpoint yet.

        Raises :class:`CheckpointError` when the checkpoint belongs to another
        input or is unreadable.
        """
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint {self.path} holds no position")
        position, mark = data.get("position"), data.get("digest")
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise CheckpointError(f"checkpoint {self.path} holds no position")
        if data.get("source") != self.source:
            raise CheckpointError(
                f"checkpoint {self.path} is for {data.get('source')!r}, not {self.source!r}"
            )
        if not isinstance(mark, str):
            raise CheckpointError(
                f"checkpoint {self.path} was written by an older lago-segment, whose "
                "checkpoints could skip events that were not stored: run again without "
                "--resume (events already stored come back as duplicates, never billed twice)"
            )
        return Mark(position, mark) if position else None

    def verify(self, mark: Mark, found: Mark | None) -> None:
        """Check that the input still holds, at the mark's position, the record it had.

        ``found`` is what the input holds there now (None when it ends sooner).
        Raises :class:`CheckpointError` when the input was replaced, rotated or
        truncated since the checkpoint was written.
        """
        if found is not None and found == mark:
            return
        what = (
            f"ends before position {mark.position}"
            if found is None
            else f"holds another record at position {mark.position}"
        )
        raise CheckpointError(
            f"{self.source} {what} than when checkpoint {self.path} was written: it was "
            "replaced, rotated or truncated since. Nothing was sent. Run without --resume "
            "to send it all (events already stored come back as duplicates, never billed "
            "twice), or give the file the checkpoint was written for"
        )

    def save(self, mark: Mark | None) -> None:
        """Record ``mark``: written to a new private file, then renamed over the old one.

        The temporary file gets a random name and is created exclusively with
        mode 0600 (never following a link planted at its path); the rename
        replaces a link at :attr:`path` rather than writing through it.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(self.path)}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                if hasattr(os, "fchmod"):  # mkstemp's 0600 is already minus the umask
                    os.fchmod(f.fileno(), 0o600)
                record = {
                    "version": 2,
                    "source": self.source,
                    "position": 0 if mark is None else mark.position,
                    "digest": "" if mark is None else mark.digest,
                }
                json.dump(record, f)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class Ledger:
    """Which input records have settled, so the checkpoint never passes an unsettled one.

    A record settles when every Lago event it produced was stored, found
    already stored, or written to the dead-letter file; a record that produced
    none (no rule matched, or invalid and reported) settles at once. Records
    settle in input order: :attr:`settled` is the last one before the first
    record still open. After :meth:`lost` (an event neither stored nor kept),
    it never moves past that record again, and later records are not tracked.
    """

    def __init__(self, start: Mark | None) -> None:
        self.settled = start
        """The mark a checkpoint may record now (None: nothing settled yet)."""
        self._open: deque[list[Any]] = deque()  # [position, digest, events still open]
        self._by_position: dict[int, list[Any]] = {}
        self._limit: int | None = None

    def read(self, item: InputRecord, events: int) -> None:
        """Track a record that produced ``events`` Lago events (0 settles it)."""
        if self._limit is not None:
            return
        entry = [item.position, item.digest, events]
        self._open.append(entry)
        self._by_position[item.position] = entry
        self._advance()

    def settle(self, position: int) -> None:
        """One Lago event of the record at ``position`` settled."""
        entry = self._by_position.get(position)
        if entry is not None:
            entry[2] -= 1
            self._advance()

    def lost(self, position: int) -> None:
        """An event of the record at ``position`` was neither stored nor kept."""
        if self._limit is None or position < self._limit:
            self._limit = position
        while self._open and self._open[-1][0] >= position:
            del self._by_position[self._open.pop()[0]]

    @property
    def stuck_at(self) -> int | None:
        """The first record with a lost event (the checkpoint stays before it)."""
        return self._limit

    def _advance(self) -> None:
        while self._open and self._open[0][2] <= 0:
            position, mark, _ = self._open.popleft()
            del self._by_position[position]
            self.settled = Mark(position, mark)


class DeadLetters:
    """Appends the Lago events that failed to a JSON-lines file, one record per line.

    A record is ``{"lago_event": {...}, "error": "...", "permanent": bool,
    "source": "events.jsonl:12"}``: ``lago_event`` is exactly what Lago would
    receive, so ``lago-segment replay --lago-events FILE`` sends it again.
    A new file is created with mode 0600 (it holds billing data), whatever the
    umask; text is UTF-8 (the record and the file are
    :mod:`lago_segment._dead_letters`', shared with the Lago webhook receiver's
    :class:`~lago_segment.lago_webhooks.DeadLetterFile`).
    """

    def __init__(self, path: str | None) -> None:
        self._file: IO[str] | None = open_private(path) if path is not None else None

    @property
    def enabled(self) -> bool:
        """Whether a dead-letter file was asked for."""
        return self._file is not None

    def write(self, event: LagoEvent, error: str, permanent: bool, where: str) -> None:
        """Append one failed event (nothing when no dead-letter file was asked for)."""
        if self._file is None:
            return
        self._file.write(
            dead_letter_line(dead_letter_record(event.to_dict(), error, permanent, where))
        )

    def flush(self) -> None:
        """Make what was written durable before the checkpoint moves past it."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()


class Progress:
    """One status line on stderr: events, rate, failures and, for a file, an ETA.

    On a terminal the line is redrawn in place at most ten times a second;
    forced on elsewhere (``--progress``), each update (one per batch sent) is
    its own line, so a script can follow it.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        size: int | None,
        consumed: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._size = size
        self._consumed = consumed
        self._clock = clock
        self._start = clock()
        self._last = float("-inf")
        self._shown: list[str] | None = None

    @property
    def live(self) -> bool:
        """True on a terminal (redrawn as events are read); else one line per batch sent."""
        return self._tty

    def message(self, text: str) -> None:
        """Print a message line without mixing it into the status line."""
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._last = float("-inf")  # redraw the status line at the next update
        self._stream.write(text + "\n")
        self._stream.flush()

    def update(self, tally: Tally, *, final: bool = False, complete: bool = False) -> None:
        """Show the current counts (throttled on a terminal unless ``final``).

        ``complete`` says the whole input was read: the line says 100%.
        """
        now = self._clock()
        if self._tty and not final and now - self._last < 0.1:
            return
        elapsed = max(now - self._start, 1e-9)
        parts = [
            f"{plural(tally.read, 'event')} read",
            f"{tally.delivered} stored",
            plural(tally.duplicates, "duplicate"),
            f"{tally.failed + tally.invalid} failed",
            f"{tally.read / elapsed:.0f}/s",
        ]
        shown = [*parts[:4]]
        if self._size:
            done = 1.0 if complete else min(self._consumed() / self._size, 1.0)
            parts.append(f"{done:.0%}")
            shown.append(parts[-1])
            if 0 < done < 1:
                parts.append(f"ETA {_duration(elapsed / done - elapsed)}")
        if not self._tty and final and shown == self._shown:
            return  # the last line already said it all
        self._last = now
        self._shown = shown
        line = ", ".join(parts)
        if self._tty:
            self._stream.write(f"\r\x1b[K{line}" + ("\n" if final else ""))
        else:
            self._stream.write(f"progress: {line}\n")
        self._stream.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
