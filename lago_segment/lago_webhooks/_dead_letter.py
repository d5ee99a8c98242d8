"""The dead-letter callback: each :class:`RejectedEvent` appended to a JSON-lines file."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
    archive. Each line is flushed when written. Thread-safe.
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
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def __repr__(self) -> str:
        return f"DeadLetterFile({self.path!r})"

    def __call__(self, record: RejectedEvent) -> None:
        """Append one record."""
        line: dict[str, Any] = {}
        event = self._lookup(record.transaction_id) if self._lookup is not None else None
        if event is not None:
            line["lago_event"] = event.to_dict()
        line.update(
            error=f"Lago events.errors: {record.reason}",
            permanent=True,
            source=f"lago-webhook:{record.webhook_id or '-'}",
            reason=record.reason,
            transaction_id=record.transaction_id,
            message_id=record.message_id,
            rule=record.rule,
            webhook_id=record.webhook_id,
        )
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()
