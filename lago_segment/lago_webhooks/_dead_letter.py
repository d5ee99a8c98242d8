"""The dead-letter callback: each :class:`RejectedEvent` appended to a JSON-lines file."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lago_segment._dead_letters import dead_letter_line, dead_letter_record, open_private
from lago_segment.lago_webhooks._rejected import RejectedEvent

if TYPE_CHECKING:
    from lago_segment.lago import LagoEvent

__all__ = ["DeadLetterFile"]


class DeadLetterFile:
    """An ``on_rejected`` callback appending each record to a JSON-lines file (mode 0600).

    A line has the shape of ``lago-segment replay``'s dead-letter records,
    ``{"lago_event": {...}, "error": ..., "permanent": true, "source": ...}``,
    plus ``reason``, ``transaction_id``, ``message_id``, ``rule`` and
    ``webhook_id``. Lago's webhook names transaction ids only: ``lago_event``
    is there when ``lookup`` (transaction_id -> the
    :class:`~lago_segment.LagoEvent` you sent, or None) finds it, so that
    ``lago-segment replay --lago-events FILE`` can send it once Lago is
    fixed; otherwise the line names the messageId to map again from your
    archive. A new file gets mode 0600 whatever the umask (the record and the
    file are :mod:`lago_segment._dead_letters`', shared with ``replay``). Each
    line is flushed when written. Thread-safe.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lookup: Callable[[str], LagoEvent | None] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._lookup = lookup
        self._lock = threading.Lock()
        self._file = open_private(self.path)

    def __repr__(self) -> str:
        return f"DeadLetterFile({self.path!r})"

    def __call__(self, record: RejectedEvent) -> None:
        """Append one record."""
        event = self._lookup(record.transaction_id) if self._lookup is not None else None
        line = dead_letter_record(
            None if event is None else event.to_dict(),
            f"Lago events.errors: {record.reason}",
            True,
            f"lago-webhook:{record.webhook_id or '-'}",
        )
        line.update(
            reason=record.reason,
            transaction_id=record.transaction_id,
            message_id=record.message_id,
            rule=record.rule,
            webhook_id=record.webhook_id,
        )
        text = dead_letter_line(line)
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()
