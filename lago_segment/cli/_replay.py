"""The ``replay`` command's run: read, map, send in batches, keep the checkpoint.

:class:`Replay` drives one run; it records each batch's outcome inside
:meth:`Signals.deferred <lago_segment.cli._signals.Signals.deferred>`, so SIGINT
and SIGTERM stop it only between batches and the checkpoint and the
dead-letter file always agree with what Lago stored. The bookkeeping
(checkpoint, ledger, dead letters, progress line) is in
:mod:`lago_segment.cli._ledger`.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING

from lago_segment._types import US_API_URL
from lago_segment.cli._commands import map_item, summary
from lago_segment.cli._conventions import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    err,
    plural,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor
    from typing import TypeAlias

    from lago_segment.cli._input import InputRecord, Source
    from lago_segment.cli._ledger import Checkpoint, Mark
    from lago_segment.cli._signals import Signals
    from lago_segment.client import BatchResult, LagoClient
    from lago_segment.lago import LagoEvent
    from lago_segment.mapping import MappingSpec

    _Posted: TypeAlias = "tuple[BatchResult, float]"  # a batch's result, and its seconds


class _Stop(Exception):
    """Lago cannot take events now (bad key, wrong URL, unreachable): the run stops."""


def _display_url(url: str) -> str:
    """``url`` without any user:password part."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


class Replay:
    """One ``replay`` run: reads, maps, sends in batches, keeps the checkpoint."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        api_key: str,
        spec: MappingSpec | None,
        source: Source,
        checkpoint: Checkpoint | None,
        start: Mark | None,
        signals: Signals,
    ) -> None:
        from lago_segment.cli._ledger import DeadLetters, Ledger, Progress, Tally
        from lago_segment.client._redact import Redactor

        self.args = args
        self.spec = spec
        self.source = source
        self.checkpoint = checkpoint
        self.start = start
        self.signals = signals
        # The client's: the key as is, in a bytes repr, JSON-escaped or percent-encoded,
        # and the --api-url's user:password.
        self.redact = Redactor.for_client(api_key, args.api_url)
        self.tally = Tally()
        self.ledger = Ledger(start)
        self.pending: deque[tuple[InputRecord, LagoEvent]] = deque()
        # Batches posted and not yet recorded, oldest first (--max-in-flight).
        self.in_flight: deque[tuple[list[tuple[InputRecord, LagoEvent]], Future[_Posted]]] = (
            deque()
        )
        self.pool: ThreadPoolExecutor | None = None
        self.report_lock = threading.Lock()
        self.reached = False  # a batch was stored: the key and the URL are good
        self.saved = start
        self.lost_without_dead_letter = 0
        show = sys.stderr.isatty() if args.progress is None else args.progress
        self.progress = (
            Progress(sys.stderr, size=source.size, consumed=lambda: source.consumed)
            if show
            else None
        )
        self.url = _display_url(args.api_url)
        self.retrying = False
        self.elapsed = 0.0
        self.saved_at = float("-inf")
        try:
            self.client = self._client(api_key)
            try:
                self.dead = DeadLetters(args.dead_letter)
            except OSError as exc:
                self.client.close()
                what = f"cannot write the dead-letter file {args.dead_letter}"
                raise UsageError(f"{what}: {exc.strerror or exc}") from None
            if checkpoint is not None:
                self._check_writable(checkpoint, start)
        except BaseException:
            source.close()
            raise

    def _check_writable(self, checkpoint: Checkpoint, start: Mark | None) -> None:
        """Write the checkpoint once before anything is sent: a usage error if it cannot be."""
        try:
            checkpoint.save(start)
        except OSError as exc:
            self.client.close()
            self.dead.close()
            what = f"cannot write the checkpoint {checkpoint.path}"
            raise UsageError(f"{what}: {exc.strerror or exc} (see --checkpoint)") from None

    def report(self, message: str) -> None:
        text = self.redact(message)
        with self.report_lock:  # the senders' retry notice comes from their threads
            if self.progress is not None:
                self.progress.message(text)
            else:
                err(text)

    def _client(self, api_key: str) -> LagoClient:
        import time
        from urllib.parse import urlsplit

        from lago_segment.client import LagoClient, RetryPolicy
        from lago_segment.client._urls import _is_loopback
        from lago_segment.errors import ConfigurationError

        def sleep(seconds: float) -> None:
            if not self.retrying:
                self.retrying = True
                self.report(
                    f"Lago at {self.url} did not answer, or failed: retrying for up to "
                    f"{self.args.give_up_after:g} s (Ctrl-C stops, --resume continues)"
                )
            time.sleep(seconds)

        url = self.args.api_url
        try:
            client = LagoClient(
                api_key,
                api_url=url,
                timeout=self.args.timeout,
                retry=RetryPolicy(timeout=self.args.give_up_after, sleep=sleep),
                allow_insecure_http=self.args.allow_insecure_http,
            )
        except ConfigurationError as exc:
            if exc.option == "api_url" and url.lower().startswith("http://"):
                raise UsageError(
                    f"--api-url {self.url} is plain http to a host other than this machine: "
                    "the API key would travel in clear text. Use https, or add "
                    "--allow-insecure-http if the host is on a private network you trust "
                    "(e.g. http://lago-api:3000 in a Docker network)"
                ) from None
            raise UsageError(self.redact(str(exc))) from None
        parts = urlsplit(client.api_url)
        if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            err(
                f"warning: sending the API key in clear text to {self.url} "
                "(--allow-insecure-http): anyone on that network path can read it"
            )
        return client

    def run(self) -> int:
        from lago_segment.cli._input import InputError
        from lago_segment.cli._ledger import CheckpointError

        status = EXIT_OK
        # A pipe (size None) may block between lines: batches still in flight
        # would then wait unrecorded, so a pipe is sent one batch at a time.
        if self.args.max_in_flight > 1 and self.source.size is not None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.args.max_in_flight, "lago-segment-replay")
        try:
            with self.client, self.source:
                try:
                    self._read_and_send()
                finally:
                    self._abandon_in_flight()
        except KeyboardInterrupt:
            status = EXIT_TERMINATED if self._terminated() else EXIT_INTERRUPTED
        except _Stop as stop:
            self.report(str(stop))
            status = EXIT_STOPPED
        except CheckpointError as exc:
            self.report(f"lago-segment replay: error: {exc}")
            status = EXIT_USAGE
        except InputError as exc:
            self.report(str(exc))
            status = EXIT_USAGE
        finally:
            with self.signals.deferred():
                self._save()
                self.dead.close()
        return self._finish(status)

    def _terminated(self) -> bool:
        import signal

        return self.signals.received == signal.SIGTERM

    def _read_and_send(self) -> None:
        from lago_segment.cli._ledger import Mark

        args = self.args
        items = self.source.lago_events() if self.spec is None else self.source.segment_events()
        start = self.start
        for item in items:
            if start is not None:
                if item.position < start.position:
                    continue
                found = (
                    Mark(item.position, item.digest) if item.position == start.position else None
                )
                assert self.checkpoint is not None
                self.checkpoint.verify(start, found)
                start = None
                continue
            events = map_item(self.spec, item, self.tally, self.report)
            self.ledger.read(item, len(events))
            self.pending.extend((item, event) for event in events)
            while len(self.pending) >= args.batch_size:
                self._send(args.batch_size)
            if self.progress is not None and self.progress.live:
                with self.report_lock:
                    self.progress.update(self.tally)
            if args.max_events is not None and self.tally.read >= args.max_events:
                break
        else:
            if start is not None:  # the input ended before the checkpoint's position
                assert self.checkpoint is not None
                self.checkpoint.verify(start, None)
        while self.pending:
            self._send(args.batch_size)
        while self.in_flight:
            self._settle_oldest()

    def _send(self, count: int) -> None:
        batch = [self.pending.popleft() for _ in range(min(count, len(self.pending)))]
        if self.pool is None or not self.reached:
            # Until a batch is stored, one at a time: a wrong key or URL stops the
            # run after one request, not after --max-in-flight of them.
            while self.in_flight:
                self._settle_oldest()
            self._settle(batch, self._post(batch))
            return
        self.in_flight.append((batch, self.pool.submit(self._post, batch)))
        while len(self.in_flight) >= self.args.max_in_flight:
            self._settle_oldest()

    def _post(self, batch: list[tuple[InputRecord, LagoEvent]]) -> _Posted:
        import time

        started = time.monotonic()
        result = self.client.send_batch([event for _, event in batch])
        return result, time.monotonic() - started

    def _settle_oldest(self) -> None:
        """Record the oldest batch in flight (the ledger takes outcomes in any order)."""
        batch, future = self.in_flight.popleft()
        self._settle(batch, future.result())

    def _settle(self, batch: list[tuple[InputRecord, LagoEvent]], posted: _Posted) -> None:
        result, self.elapsed = posted
        with self.signals.deferred():
            self._record(batch, result)
        if self.progress is not None and not self.progress.live:
            with self.report_lock:
                self.progress.update(self.tally)  # off a terminal: one line per batch

    def _abandon_in_flight(self) -> None:
        """After a stop or an interruption: record what the batches still in flight got.

        Nothing is lost either way (the checkpoint never passes an unsettled
        event), but recording them keeps the summary and the checkpoint exact.
        Their own reasons to stop are not reported again.
        """
        pool, self.pool = self.pool, None
        if pool is None:
            return
        while self.in_flight:
            batch, future = self.in_flight.popleft()
            try:
                self._settle(batch, future.result())
            except _Stop:
                pass
            except KeyboardInterrupt:
                break  # a second Ctrl-C: leave the rest unrecorded (resent on --resume)
        pool.shutdown(wait=False, cancel_futures=True)

    def _record(self, batch: list[tuple[InputRecord, LagoEvent]], result: BatchResult) -> None:
        """Count a batch's outcome, keep its failures, and move the checkpoint."""
        from lago_segment.errors import LagoAPIError

        position = {id(event): item for item, event in batch}
        self.tally.add(result)
        for event in (*result.delivered, *result.duplicates):
            self.ledger.settle(position[id(event)].position)
        stop = None
        for failure in result.failed:
            item = position[id(failure.event)]
            error = failure.error
            status = error.status_code if isinstance(error, LagoAPIError) else None
            if status is None or status in (401, 403, 404, 408, 429) or status >= 500:
                stop = stop or error  # nothing about this event: later ones would fail too
                continue
            text = self.redact(str(error))
            kind = "permanent" if failure.permanent else "gave up retrying"
            self.report(f"{item.where}: not stored ({kind}): {text}")
            if self.dead.enabled:
                self.dead.write(failure.event, text, failure.permanent, item.where)
                self.ledger.settle(item.position)
            else:
                self.lost_without_dead_letter += 1
                self.ledger.lost(item.position)
        self._save(every=1.0)
        if stop is not None:
            raise _Stop(self._stop_message(stop, result.retries + 1))
        if result.delivered or result.duplicates:
            self.retrying = False
            self.reached = True

    def _stop_message(self, error: Exception, attempts: int) -> str:
        from lago_segment.errors import LagoAPIError

        tried = f"gave up after {plural(attempts, 'attempt')} in {self.elapsed:.0f} s"
        if not isinstance(error, LagoAPIError):
            return f"cannot reach Lago at {self.url}: {self.redact(str(error))} ({tried}). Stopped"
        said = self.redact(str(error))
        if error.status_code in (401, 403):
            return (
                f"Lago at {self.url} refused the API key: {said}. Check LAGO_API_KEY, and "
                "--api-url (US and EU keys differ). Stopped"
            )
        if error.status_code == 404:
            return (
                f"Lago at {self.url} has no events API ({self.url}/api/v1/events/batch: {said}): "
                f"check --api-url, the origin of your Lago API (e.g. {US_API_URL}). "
                "Stopped"
            )
        return f"Lago at {self.url} still answered {said} ({tried}). Stopped"

    def _save(self, every: float = 0.0) -> None:
        """Move the checkpoint to what settled (at most once per ``every`` seconds).

        The dead letters are made durable first: the checkpoint never passes
        an event that is neither in Lago nor on disk. Saving at most once a
        second costs little on resume (a few batches resent, as duplicates)
        and spares two fsyncs per batch, which dominated small batches.
        """
        import time

        if self.checkpoint is None or self.ledger.settled == self.saved:
            return
        now = time.monotonic()
        if now - self.saved_at < every:
            return
        self.dead.flush()
        self.checkpoint.save(self.ledger.settled)
        self.saved = self.ledger.settled
        self.saved_at = now

    def _finish(self, status: int) -> int:
        if self.progress is not None:
            complete = self.source.exhausted and not self.pending
            self.progress.update(self.tally, final=True, complete=complete)
        err(self.redact(summary(self.tally, sent=True)))
        settled = 0 if self.saved is None else self.saved.position
        if self.checkpoint is None:
            where = "no checkpoint (stdin without --checkpoint)"
        elif settled:
            where = (
                f"checkpoint: input up to position {settled} is settled; run again with "
                "--resume to continue after it"
            )
        else:
            where = "checkpoint: nothing settled yet; --resume starts from the beginning"
        if status in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            what = "interrupted" if status == EXIT_INTERRUPTED else "terminated (SIGTERM)"
            err(f"{what}; {where}")
        elif status == EXIT_STOPPED:
            err(where)
        elif self.lost_without_dead_letter:
            err(
                f"{plural(self.lost_without_dead_letter, 'Lago event')} not stored and not kept "
                f"(no --dead-letter file), so the checkpoint stays before them. {where} (what "
                "was stored since comes back as duplicates)"
            )
        if status == EXIT_OK and (self.tally.invalid or self.tally.failed):
            status = EXIT_FAILED
        return status
