"""Dead-letter records on disk: the one JSON-lines record and the private file it goes to.

``lago-segment replay`` (:class:`lago_segment.cli._ledger.DeadLetters`) and the
Lago webhook receiver (:class:`lago_segment.lago_webhooks.DeadLetterFile`)
write the same record, ``{"lago_event": {...}, "error": ..., "permanent": ...,
"source": ...}``, which ``lago-segment replay --lago-events FILE`` reads back,
to a file only its owner can read (it holds billing data). Standard library
only: the CLI's light commands import it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import IO, Any

__all__ = ["dead_letter_line", "dead_letter_record", "open_private"]


def dead_letter_record(
    lago_event: Mapping[str, Any] | None, error: str, permanent: bool, source: str
) -> dict[str, Any]:
    """One dead-letter record; ``lago_event`` (``LagoEvent.to_dict()``) is left out when None."""
    record: dict[str, Any] = {} if lago_event is None else {"lago_event": lago_event}
    record.update(error=error, permanent=permanent, source=source)
    return record


def dead_letter_line(record: Mapping[str, Any]) -> str:
    """``record`` as one JSON line, non-ASCII text as is (the file is UTF-8).

    Write it to a file from :func:`open_private`: a lone surrogate (from a
    file name or an error text) is written as its ``\\uXXXX`` escape there.
    """
    return json.dumps(record, ensure_ascii=False) + "\n"


def open_private(path: str) -> IO[str]:
    """Open ``path`` for appending UTF-8 text; a file it creates gets mode 0600 whatever the umask.

    Characters UTF-8 cannot hold (lone surrogates, only ever inside JSON
    strings here) are written as ``\\uXXXX``: the JSON escape of the same
    character, so a line stays valid JSON and a write never fails on them.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = os.open(path, flags, 0o600)
    else:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")
