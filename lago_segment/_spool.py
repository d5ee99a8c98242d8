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
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence

from ._forwarding import Item
from .lago import LagoEvent

__all__ = ["SpoolStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    message_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_owner ON events (owner, id);
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


class SpoolStore:
    """A :class:`~lago_segment._forwarding.Store` kept in a SQLite file.

    ``max_events`` bounds the rows in the file (as this process counts them).
    ``retry_wait`` is the first wait before resending a batch whose transient
    failure outlasted the client's retries; it doubles up to ``retry_wait_max``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int,
        retry_wait: float = 1.0,
        retry_wait_max: float = 60.0,
    ) -> None:
        self.path = os.fspath(path)
        self._max = max_events
        self._retry_wait = retry_wait
        self._retry_wait_max = retry_wait_max
        self._open()
        with self._lock:
            self._adopt()

    def _open(self) -> None:
        self._token = secrets.token_hex(8)
        self._owner = f"{os.getpid()}:{self._token}"
        _LIVE_TOKENS.add(self._token)
        self._lock = threading.Lock()
        # One connection shared by the caller threads and the sender, used under
        # self._lock; autocommit mode with explicit transactions.
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed row survives the process being killed
        # (SIGKILL); only an OS crash or power loss can lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._cursor = 0  # highest row id handed out by take()
        self._mine = 0  # rows owned by this store, not yet acknowledged
        self._in_flight = 0
        self._resume_at = 0.0
        self._failures = 0
        self._total: int = self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    def _adopt(self) -> None:
        owners = [row[0] for row in self._db.execute("SELECT DISTINCT owner FROM events")]
        gone = [o for o in owners if o != self._owner and _owner_gone(o)]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for owner in gone:
                self._db.execute(
                    "UPDATE events SET owner = ? WHERE owner = ?", (self._owner, owner)
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._mine = int(
            self._db.execute(
                "SELECT count(*) FROM events WHERE owner = ?", (self._owner,)
            ).fetchone()[0]
        )

    def put(self, items: Sequence[Item]) -> bool:
        rows = [
            (self._owner, i.message_id, json.dumps(i.event.to_dict(), separators=(",", ":")))
            for i in items
        ]
        with self._lock:
            if self._total + len(rows) > self._max:
                return False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO events (owner, message_id, event) VALUES (?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._total += len(rows)
            self._mine += len(rows)
            return True

    def take(self, n: int) -> list[Item]:
        with self._lock:
            if time.monotonic() < self._resume_at:
                return []
            rows = self._db.execute(
                "SELECT id, message_id, event FROM events WHERE owner = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (self._owner, self._cursor, n),
            ).fetchall()
            if rows:
                self._cursor = rows[-1][0]
            self._in_flight += len(rows)
        return [
            Item(LagoEvent.from_dict(json.loads(event)), message_id, None, row_id)
            for row_id, message_id, event in rows
        ]

    def ack(self, items: Sequence[Item]) -> None:
        if not items:
            return
        ids = [(i.row_id,) for i in items]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM events WHERE id = ?", ids)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._total -= len(ids)
            self._mine -= len(ids)
            self._in_flight -= len(ids)
            if time.monotonic() >= self._resume_at:
                self._failures = 0

    def retry_later(self, items: Sequence[Item]) -> bool:
        with self._lock:
            first = min(i.row_id or 0 for i in items)
            # Everything from the first failed row on is sent again, in order.
            self._cursor = min(self._cursor, first - 1)
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

    def has_room(self, n: int) -> bool:
        return self._total + n <= self._max

    def after_fork(self) -> None:
        # SQLite connections must not cross a fork: open a new one, as a new owner.
        # The parent's rows stay the parent's (it is alive and sends them).
        _LIVE_TOKENS.discard(self._token)
        self._open()
        self._mine = 0

    def close(self) -> None:
        with self._lock:
            _LIVE_TOKENS.discard(self._token)
            self._db.close()
