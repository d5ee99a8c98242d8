"""The durable spool: a SQLite file (WAL mode) holding Lago events until Lago has them.

A row is inserted and committed before ``forward()`` returns, and deleted when
Lago acknowledges the event (stored or duplicate) or it fails for good. A
process killed with SIGKILL leaves its rows behind; the next forwarder on the
file adopts them and delivers them (Lago dedupes on transaction_id, so an event
that was in flight when the process died is not stored twice).

Ownership: each row names the forwarder that wrote it (``pid:token``). A
forwarder only ever sends its own rows, so two live processes on one file (a
forked child and its parent, two workers) never send each other's rows. At
start, a forwarder adopts the rows of owners that are gone: a pid that no
longer runs, or this very pid with a token no live forwarder in this process
holds (a previous incarnation, e.g. a restarted container whose pid is 1 again).

A row that cannot be read back as a Lago event (written by another version,
edited, corrupted) is moved to the ``set_aside`` table, with the reason, and
reported once: it never blocks the rows after it. The file and its ``-wal`` and
``-shm`` companions are created readable by their owner only (0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Literal

from lago_segment.errors import ConfigurationError, SpoolError
from lago_segment.forwarder._stores import QueuedEvent, SetAside
from lago_segment.lago import LagoEvent

__all__ = ["SpoolStore", "SpoolSync"]

#: SQLite's ``synchronous`` setting for the spool: ``"normal"`` or ``"full"``.
SpoolSync = Literal["normal", "full"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    message_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_owner ON events (owner, id);
CREATE TABLE IF NOT EXISTS set_aside (
    id INTEGER PRIMARY KEY,
    owner TEXT,
    message_id TEXT,
    event,
    error TEXT NOT NULL
);
"""

# Tokens of the spool stores alive in this process (to tell a previous incarnation
# with the same pid from a live sibling).
_LIVE_TOKENS: set[str] = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(owner: str) -> bool:
    pid_text, _, token = owner.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if pid == os.getpid():
        return token not in _LIVE_TOKENS
    return not _pid_alive(pid)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _create_private(path: str) -> None:
    """Create the spool file with mode 0600 (whatever the umask) if it does not exist.

    SQLite then gives its ``-wal`` and ``-shm`` files the same mode.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _connect(path: str, *, auto_checkpoint: int, sync: SpoolSync) -> sqlite3.Connection:
    # Autocommit mode with explicit transactions; shared between threads under a lock.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed row survives the process being killed
    # (SIGKILL); only an OS crash or power loss can lose the last commits.
    # FULL syncs the WAL on every commit: durable through those too, slower.
    db.execute("PRAGMA synchronous=FULL" if sync == "full" else "PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={int(auto_checkpoint)}")
    return db


class SpoolStore:
    """A :class:`~lago_segment.forwarder._stores.Store` kept in a SQLite file.

    ``max_events`` bounds the rows in the file (as this process counts them).
    ``retry_wait`` is the first wait before resending a batch whose transient
    failure outlasted the client's retries; it doubles up to ``retry_wait_max``.
    ``sync`` is SQLite's ``synchronous`` setting (see :data:`SpoolSync`). A write
    that fails (disk full, I/O error, read-only file) raises
    :class:`~lago_segment.errors.SpoolError`, never a raw ``sqlite3`` error.

    Callers insert through one connection, the sender reads and deletes through
    another, so ``forward()`` never waits behind a read or a checkpoint; SQLite's
    WAL serializes the two writers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int,
        retry_wait: float = 1.0,
        retry_wait_max: float = 60.0,
        sync: SpoolSync = "normal",
    ) -> None:
        if sync not in ("normal", "full"):
            raise ConfigurationError("spool_sync", f"must be 'normal' or 'full', not {sync!r}")
        self.path = os.fspath(path)
        self._max = max_events
        self._retry_wait = retry_wait
        self._retry_wait_max = retry_wait_max
        self._sync: SpoolSync = sync
        try:
            _create_private(self.path)
            self._open()
            self._adopt()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(self.path, f"cannot be opened: {exc}") from exc

    def _open(self) -> None:
        self._token = secrets.token_hex(8)
        self._owner = f"{os.getpid()}:{self._token}"
        _LIVE_TOKENS.add(self._token)
        # WAL checkpoints run on the sender's side, outside the write lock (see
        # ack()); while the sender is stuck (Lago down) the callers still cap the WAL.
        self._send_db = _connect(self.path, auto_checkpoint=0, sync=self._sync)
        self._send_db.executescript(_SCHEMA)
        self._put_db = _connect(self.path, auto_checkpoint=25_000, sync=self._sync)
        self._set_aside: list[SetAside] = []
        self._acks = 0
        # SQLite lets one writer in at a time and makes the others sleep (1 ms and
        # up) in its busy handler; serializing our own two writers on a lock
        # turns that into a wait of one short transaction.
        self._write_lock = threading.Lock()  # guards _put_db and every write
        self._send_lock = threading.Lock()  # guards _send_db and the sender's cursor
        self._count_lock = threading.Lock()  # guards the counters below
        self._cursor = 0  # highest row id handed out by take()
        # Row ids in flight (several batches at once): a resend from an earlier row
        # on (retry_later) skips them, so no row is ever in two batches at once.
        self._flying: set[int] = set()
        self._mine = 0  # rows owned by this store, not yet acknowledged
        self._admitted = 0  # rows ever inserted or adopted by this store
        self._in_flight = 0
        self._resume_at = 0.0
        self._failures = 0
        self._total: int = self._send_db.execute("SELECT count(*) FROM events").fetchone()[0]

    def _adopt(self) -> None:
        db = self._send_db
        owners = [row[0] for row in db.execute("SELECT DISTINCT owner FROM events")]
        gone = [o for o in owners if o != self._owner and _owner_gone(o)]
        with self._write_lock, _transaction(db):
            for owner in gone:
                db.execute("UPDATE events SET owner = ? WHERE owner = ?", (self._owner, owner))
        self._mine = int(
            db.execute("SELECT count(*) FROM events WHERE owner = ?", (self._owner,)).fetchone()[0]
        )
        self._admitted = self._mine

    def put(self, items: Sequence[QueuedEvent]) -> bool:
        rows = [
            (self._owner, i.message_id, json.dumps(i.event.to_dict(), separators=(",", ":")))
            for i in items
        ]
        with self._count_lock:
            if self._total + len(rows) > self._max:
                return False
            self._total += len(rows)  # reserve the room before writing
        counted = False
        try:
            with self._write_lock, _transaction(self._put_db) as db:
                db.executemany(
                    "INSERT INTO events (owner, message_id, event) VALUES (?, ?, ?)", rows
                )
                # Counted before the commit: the sender may take the rows as soon
                # as they are committed, and flush() must already wait for them.
                with self._count_lock:
                    self._admitted += len(rows)
                counted = True
        except BaseException as exc:
            with self._count_lock:
                self._total -= len(rows)
                if counted:  # the commit failed: a flush() started meanwhile times out
                    self._admitted -= len(rows)
            if isinstance(exc, sqlite3.Error):
                # Disk full, I/O error, read-only file: on_full decides, with our error.
                raise SpoolError(
                    self.path, f"could not write {len(rows)} event(s): {exc}"
                ) from exc
            raise
        with self._count_lock:
            self._mine += len(rows)
        return True

    def take(self, n: int) -> list[QueuedEvent]:
        if time.monotonic() < self._resume_at:
            return []
        with self._send_lock:
            found = self._send_db.execute(
                "SELECT id, message_id, event FROM events WHERE owner = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (self._owner, self._cursor, n + len(self._flying)),
            ).fetchall()
            rows = []
            for row in found:
                if row[0] in self._flying:
                    continue
                rows.append(row)
                self._cursor = row[0]
                if len(rows) == n:
                    break
            self._flying.update(row[0] for row in rows)
        items: list[QueuedEvent] = []
        bad: list[tuple[int, str | None, Exception]] = []
        for row_id, message_id, event in rows:
            mid = message_id if isinstance(message_id, str) else None
            try:
                items.append(
                    QueuedEvent(LagoEvent.from_dict(json.loads(event)), mid, None, row_id)
                )
            except Exception as exc:  # any row content can be wrong: never block the rest
                bad.append((row_id, mid, exc))
        if bad:
            self._put_aside(bad)
        with self._count_lock:
            self._in_flight += len(items)
        return items

    def _put_aside(self, bad: list[tuple[int, str | None, Exception]]) -> None:
        """Move unreadable rows to the ``set_aside`` table (kept for inspection)."""
        with self._send_lock, self._write_lock, _transaction(self._send_db) as db:
            for row_id, _, exc in bad:
                reason = f"{type(exc).__name__}: {exc}"
                db.execute(
                    "INSERT OR REPLACE INTO set_aside (id, owner, message_id, event, error) "
                    "SELECT id, owner, message_id, event, ? FROM events WHERE id = ?",
                    (reason, row_id),
                )
                db.execute("DELETE FROM events WHERE id = ?", (row_id,))
            self._flying.difference_update(row_id for row_id, _, _ in bad)
        with self._count_lock:
            self._total -= len(bad)
            self._mine -= len(bad)
        self._set_aside.extend(
            SetAside(
                SpoolError(
                    self.path,
                    f"row {row_id} is not a valid Lago event and was set aside "
                    f"(table set_aside): {type(exc).__name__}: {exc}",
                ),
                message_id,
            )
            for row_id, message_id, exc in bad
        )

    def pop_set_aside(self) -> list[SetAside]:
        taken, self._set_aside = self._set_aside, []
        return taken

    def ack(self, items: Sequence[QueuedEvent]) -> None:
        if not items:
            return
        ids = [(i.row_id,) for i in items]
        with self._send_lock:
            with self._write_lock, _transaction(self._send_db) as db:
                db.executemany("DELETE FROM events WHERE id = ?", ids)
            self._flying.difference_update(i.row_id for i in items)
            self._acks += 1
            if self._acks % 20 == 0:
                # PASSIVE: copies what it can without blocking the callers' inserts.
                self._send_db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        with self._count_lock:
            self._total -= len(ids)
            self._mine -= len(ids)
            self._in_flight -= len(ids)
            if time.monotonic() >= self._resume_at:
                self._failures = 0

    def retry_later(self, items: Sequence[QueuedEvent]) -> bool:
        first = min(i.row_id or 0 for i in items)
        with self._send_lock:
            # Everything from the first failed row on is sent again, in order
            # (but for rows other batches have in flight).
            self._cursor = min(self._cursor, first - 1)
            self._flying.difference_update(i.row_id for i in items)
        with self._count_lock:
            self._in_flight -= len(items)
            self._failures += 1
            wait = min(self._retry_wait_max, self._retry_wait * 2 ** (self._failures - 1))
            self._resume_at = time.monotonic() + wait
        return True

    def retry_delay(self) -> float:
        return max(0.0, self._resume_at - time.monotonic())

    def ready(self) -> int:
        if time.monotonic() < self._resume_at:
            return 0
        return self._mine - self._in_flight

    def depth(self) -> int:
        return self._mine

    def admitted(self) -> int:
        return self._admitted

    def has_room(self, n: int) -> bool:
        return self._total + n <= self._max

    def after_fork(self) -> None:
        # SQLite connections must not cross a fork: open new ones, as a new owner.
        # The parent's rows stay the parent's (it is alive and sends them).
        _LIVE_TOKENS.discard(self._token)
        self._open()

    def release(self) -> None:
        """Let the next forwarder in this process adopt the rows left here.

        Called on close even when the sender is still stuck in a request: if it
        then delivers rows another forwarder also sends, Lago dedupes them.
        """
        _LIVE_TOKENS.discard(self._token)

    def close(self) -> None:
        self.release()
        with self._send_lock, self._write_lock:
            self._put_db.close()
            self._send_db.close()
