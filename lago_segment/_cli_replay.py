"""The ``replay`` command's machinery: checkpoints, the dead-letter file, the progress line.

Resuming is safe by construction: the checkpoint only ever names an input
position whose every Lago event has settled (stored, a duplicate, or written
to the dead-letter file). Whatever was in flight when the run stopped is sent
again, and Lago stores one event per transaction_id: a resent event comes back
as a duplicate, never as a second charge.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import attrs

from .client import BatchResult
from .lago import LagoEvent

__all__ = ["Checkpoint", "DeadLetters", "Progress", "Tally", "settled_position"]


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


@attrs.frozen(slots=True)
class Checkpoint:
    """The last input position whose Lago events have all settled, saved atomically.

    The file is a small JSON object: ``{"source": ..., "position": N}``.
    ``source`` is the input's absolute path (``"<stdin>"`` for stdin), so a
    checkpoint is never applied to a different file by mistake.
    """

    path: str
    source: str

    def load(self) -> int:
        """The saved position, or 0 when there is no checkpoint yet.

        Raises :class:`ValueError` when the checkpoint belongs to another input
        or is unreadable.
        """
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read checkpoint {self.path}: {exc}") from None
        position = data.get("position") if isinstance(data, dict) else None
        if not isinstance(position, int) or isinstance(position, bool):
            raise ValueError(f"checkpoint {self.path} holds no position")
        if data.get("source") != self.source:
            raise ValueError(
                f"checkpoint {self.path} is for {data.get('source')!r}, not {self.source!r}"
            )
        return position

    def save(self, position: int) -> None:
        """Record ``position``: written to a temporary file, then renamed over the old one."""
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"source": self.source, "position": position}, f)
            f.write("\n")
        os.replace(tmp, self.path)


class DeadLetters:
    """Appends the Lago events that failed to a JSON-lines file, one record per line.

    A record is ``{"lago_event": {...}, "error": "...", "permanent": bool,
    "source": "events.jsonl:12"}``: ``lago_event`` is exactly what Lago would
    receive, so ``lago-segment replay --lago-events FILE`` sends it again.
    """

    def __init__(self, path: str | None) -> None:
        self._file: IO[str] | None = (
            open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        )

    def write(self, event: LagoEvent, error: str, permanent: bool, where: str) -> None:
        """Append one failed event (nothing when no dead-letter file was asked for)."""
        if self._file is None:
            return
        record = {
            "lago_event": event.to_dict(),
            "error": error,
            "permanent": permanent,
            "source": where,
        }
        self._file.write(json.dumps(record) + "\n")

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
    forced on elsewhere (``--progress``), each update is its own line, so a
    script can follow it.
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

    def message(self, text: str) -> None:
        """Print a message line without mixing it into the status line."""
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._last = float("-inf")  # redraw the status line at the next update
        self._stream.write(text + "\n")
        self._stream.flush()

    def update(self, tally: Tally, *, final: bool = False) -> None:
        """Show the current counts (throttled on a terminal unless ``final``)."""
        now = self._clock()
        if self._tty and not final and now - self._last < 0.1:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        parts = [
            f"{tally.read} events read",
            f"{tally.delivered} stored",
            f"{tally.duplicates} duplicates",
            f"{tally.failed + tally.invalid} failed",
            f"{tally.read / elapsed:.0f}/s",
        ]
        if self._size:
            done = min(self._consumed() / self._size, 1.0)
            parts.append(f"{done:.0%}")
            if 0 < done < 1:
                parts.append(f"ETA {_duration(elapsed / done - elapsed)}")
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


def settled_position(pending: Iterable[tuple[int, Any]], last_read: int) -> int:
    """The last input position with nothing left pending (positions arrive in order)."""
    for position, _ in pending:
        return position - 1
    return last_read
