"""What every subcommand shares: the exit codes, :class:`UsageError`, messages on stderr.

Light on purpose (nothing beyond the standard library): the parser, each
command and Kafka's ``consume`` import it, and ``--help`` must stay instant.
"""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "UsageError",
    "err",
    "plural",
]

EXIT_OK = 0
"""Everything went through."""
EXIT_FAILED = 1
"""A spec has errors, or an event could not be mapped or stored."""
EXIT_USAGE = 2
"""Bad arguments, unreadable input, a missing ``LAGO_API_KEY``."""
EXIT_STOPPED = 3
"""``replay`` stopped because Lago cannot take events (bad key, wrong URL, unreachable)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT)."""
EXIT_TERMINATED = 143
"""SIGTERM."""


class UsageError(Exception):
    """A problem with what was asked (exit 2), as opposed to with the data (exit 1)."""


def err(message: str) -> None:
    """Print a message line on stderr (data goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def plural(count: int, word: str) -> str:
    """``1 event``, ``2 events``: a count with its noun."""
    return f"{count} {word}{'' if count == 1 else 's'}"
