"""How a CLI run stops: SIGINT and SIGTERM between batches, the library's logs kept quiet.

:class:`Signals` makes both signals stop a run like Ctrl-C, but never inside a
critical section (``replay`` recording a batch's outcome, so the checkpoint
and the dead-letter file always agree with what Lago stored);
``fake-lago`` uses it so SIGTERM stops it cleanly. :func:`quiet_library_logs`
keeps the library's warnings from repeating what the CLI reports itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["Signals", "quiet_library_logs"]


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """The CLI reports every outcome itself, once: without this, the library's
    warnings would repeat them (through logging's last-resort handler) on every batch."""
    import logging

    logger = logging.getLogger("lago_segment")
    quiet = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(quiet)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(quiet)
        logger.propagate = propagate


class Signals:
    """SIGINT and SIGTERM both stop a run like Ctrl-C, but never inside a critical section.

    A signal raises :class:`KeyboardInterrupt`; one that arrives while
    :meth:`deferred` is active (a batch's outcome being recorded) is raised
    when the section ends, so the dead-letter file and the checkpoint always
    agree with what Lago stored.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._depth = 0
        self._pending = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # e.g. SIGINT for a background job, or under nohup: keep ignoring
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is None:
            self.received = signum
        if self._depth:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold signals back until the block ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending:
                self._pending = False
                raise KeyboardInterrupt
