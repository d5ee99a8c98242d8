"""The ``lago-segment`` command line (also ``python -m lago_segment``).

Subcommands: ``check`` a mapping spec, ``map`` events as a dry run,
``explain`` how one event maps, ``replay`` an archive to Lago, and run a
``fake-lago`` server to try it all without a Lago account.

Conventions: data (JSON lines) on stdout, messages on stderr, one line per
problem (never a traceback for bad input). Exit codes, the same for every
command: 0 when everything went through; 1 when a spec has errors or an event
could not be mapped or stored; 2 for usage errors and unreadable input
(bad arguments, a missing, unreadable or corrupt file, a missing
``LAGO_API_KEY``); 3 when ``replay`` stopped because Lago cannot take events
(key refused, no events API at the URL, unreachable); 130 on Ctrl-C and 143
on SIGTERM (both: summary printed, checkpoint saved).

Each subcommand is one ``_cmd_*`` function registered in :func:`build_parser`.

Built on :mod:`argparse`, not click: the library's only runtime dependencies
are httpx and attrs, and a CLI is no reason to add one. Heavy modules
are imported by the subcommand that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import _cli_check_lago
from ._version import __version__

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor
    from typing import TypeAlias

    from ._cli_input import Item, Source
    from ._cli_replay import Checkpoint, Mark, Tally
    from .client import BatchResult, LagoClient
    from .lago import LagoEvent
    from .mapping import MappingSpec

    _Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
    _Posted: TypeAlias = "tuple[BatchResult, float]"  # a batch's result, and its seconds

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

_DEFAULT_API_URL = "https://api.getlago.com"


class _UsageError(Exception):
    """A problem with what was asked (exit 2), as opposed to with the data (exit 1)."""


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _render(event: LagoEvent) -> str:
    return json.dumps(event.to_dict(), ensure_ascii=False) + "\n"


def _load_spec(path: str) -> MappingSpec | None:
    """Load a spec, or print every error with its location and return None.

    A spec that is missing, unreadable or a directory is a usage error (exit 2).
    """
    import warnings

    from .errors import LagoSegmentError, MappingError
    from .mapping import MappingSpec

    if os.path.isdir(path):
        raise _UsageError(f"{path} is a directory: SPEC is a mapping spec file (.toml or .json)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _UsageError(f"cannot read spec {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = MappingSpec.load(path)
        for warning in caught:  # e.g. a trigger mixing and/or without parentheses
            _err(f"{path}: warning: {warning.message}")
        return spec
    except MappingError as exc:
        for error in exc.errors:  # each names its file and location
            _err(error)
        _err(f"{path}: {_plural(len(exc.errors), 'error')}")
        return None
    except LagoSegmentError as exc:
        _err(f"{path}: {exc}")
        return None


def _open(name: str) -> Source:
    from ._cli_input import open_source

    try:
        return open_source(name)
    except OSError as exc:
        raise _UsageError(f"cannot read {name}: {exc.strerror or exc}") from None


def _problem(error: Exception) -> str:
    from .errors import InvalidEventPayload, InvalidLagoEvent

    if isinstance(error, InvalidEventPayload):
        return f"invalid event: {error.problem} @ {error.path}"
    if isinstance(error, InvalidLagoEvent):
        return f"invalid Lago event: {error}"
    return str(error)


def _map_item(
    spec: MappingSpec | None, item: Item, tally: Tally, report: Callable[[str], None] = _err
) -> list[LagoEvent]:
    """Map one input record, counting and reporting what happened to it."""
    from .errors import InvalidLagoEvent, MappingError

    tally.read += 1
    if item.error is not None:
        tally.invalid += 1
        report(f"{item.where}: {_problem(item.error)}")
        return []
    if spec is None:  # already a Lago event
        tally.matched += 1
        tally.lago_events += 1
        return [item.value]
    try:
        events = spec.map(item.value)
    except (MappingError, InvalidLagoEvent) as exc:
        tally.invalid += 1
        report(f"{item.where}: mapping failed: {exc}")
        return []
    if events:
        tally.matched += 1
        tally.lago_events += len(events)
    else:
        tally.skipped += 1
    return events


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _summary(tally: Tally, *, sent: bool) -> str:
    text = (
        f"{_plural(tally.read, 'event')} read: {tally.matched} matched "
        f"({_plural(tally.lago_events, 'Lago event')}), {tally.skipped} skipped "
        f"(no rule matched), {tally.invalid} failed"
    )
    if sent:
        text += (
            f"; sent: {tally.delivered} stored, {_plural(tally.duplicates, 'duplicate')}, "
            f"{tally.failed} not stored"
        )
    return text


# -- commands -----------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    if getattr(args, "format", None) is not None:
        return _print_normalized(spec, args.format, args.spec)
    print(f"{args.spec}: ok ({_plural(len(spec.rules), 'rule')})")
    if args.against_lago:
        return _cli_check_lago.check_against_lago(spec, args)
    return EXIT_OK


def _print_normalized(spec: MappingSpec, fmt: str, path: str) -> int:
    """``check --format``: the normalized spec on stdout; it loads back to an equal spec."""
    from .errors import MappingError

    try:
        text = spec.to_toml() if fmt == "toml" else spec.to_json()
    except MappingError as exc:  # e.g. a null, which TOML cannot write
        _err(f"{path}: {exc}")
        return EXIT_FAILED
    sys.stdout.write(text)
    return EXIT_OK


def _cmd_map(args: argparse.Namespace) -> int:
    from ._cli_input import InputError
    from ._cli_replay import Tally

    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    tally = Tally()
    status = EXIT_OK
    with _open(args.events) as source:
        try:
            for item in source.segment_events():
                for event in _map_item(spec, item, tally):
                    try:
                        sys.stdout.write(_render(event))
                    except UnicodeEncodeError:
                        tally.invalid += 1
                        _err(f"{item.where}: cannot print {event.transaction_id!r}: not UTF-8")
        except InputError as exc:
            _err(str(exc))
            status = EXIT_USAGE
    sys.stdout.flush()
    _err(_summary(tally, sent=False))
    if status == EXIT_OK and tally.invalid:
        status = EXIT_FAILED
    return status


def _cmd_explain(args: argparse.Namespace) -> int:
    from ._cli_input import InputError, read_event_argument
    from .errors import InvalidEventPayload, MappingError

    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    try:
        event = read_event_argument(args.event)
    except OSError as exc:
        raise _UsageError(f"cannot read {args.event}: {exc.strerror or exc}") from None
    except InputError as exc:
        raise _UsageError(str(exc)) from None
    except InvalidEventPayload as exc:
        _err(f"{_problem(exc)}")
        return EXIT_FAILED
    try:
        explanation = spec.explain(event)
    except MappingError as exc:
        _err(f"mapping failed: {exc}")
        return EXIT_FAILED
    try:
        print(explanation)
    except UnicodeEncodeError:
        _err("cannot print the explanation: it holds text that is not valid Unicode")
        return EXIT_FAILED
    failing = [r.rule for r in explanation.rules if r.matched and r.error is not None]
    if failing:
        names = ", ".join(f'"{name}"' for name in failing)
        _err(f"the event matches {_plural(len(failing), 'rule')} that fail to map: {names}")
        return EXIT_FAILED
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from ._cli_replay import Checkpoint, CheckpointError, default_checkpoint_path

    if args.lago_events is not None:
        if args.spec is not None or args.events is not None:
            raise _UsageError("give either SPEC EVENTS or --lago-events FILE, not both")
        spec_path, input_name = None, args.lago_events
    else:
        if args.spec is None or args.events is None:
            raise _UsageError("replay needs SPEC and EVENTS (or --lago-events FILE)")
        spec_path, input_name = args.spec, args.events
    api_key = os.environ.get("LAGO_API_KEY", "")
    if not api_key:
        raise _UsageError("set the LAGO_API_KEY environment variable to your Lago API key")
    if api_key != api_key.strip() or not api_key.isascii() or not api_key.isprintable():
        raise _UsageError(
            "LAGO_API_KEY holds whitespace, control or non-ASCII characters (a trailing "
            "newline from a secrets file?): an API key is printable ASCII"
        )
    checkpoint_path = args.checkpoint
    if checkpoint_path is None and input_name != "-":
        checkpoint_path = default_checkpoint_path(input_name)
    if args.resume and checkpoint_path is None:
        raise _UsageError("--resume with EVENTS from stdin needs --checkpoint FILE")
    checkpoint = None
    if checkpoint_path is not None:
        identity = "<stdin>" if input_name == "-" else os.path.abspath(input_name)
        checkpoint = Checkpoint(checkpoint_path, identity)
    try:
        start = checkpoint.load() if (args.resume and checkpoint is not None) else None
    except CheckpointError as exc:
        raise _UsageError(str(exc)) from None
    if start is not None:
        _err(f"resuming after input position {start.position} (checkpoint {checkpoint_path})")
    elif args.resume:
        _err(f"no checkpoint at {checkpoint_path} yet: starting from the beginning")

    spec = _load_spec(spec_path) if spec_path is not None else None
    if spec_path is not None and spec is None:
        return EXIT_FAILED
    source = _open(input_name)
    with _quiet_library_logs(), _Signals() as signals:
        run = _Replay(
            args,
            api_key=api_key,
            spec=spec,
            source=source,
            checkpoint=checkpoint,
            start=start,
            signals=signals,
        )
        return run.run()


@contextlib.contextmanager
def _quiet_library_logs() -> Iterator[None]:
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


class _Signals:
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

    def __enter__(self) -> _Signals:
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


class _Stop(Exception):
    """Lago cannot take events now (bad key, wrong URL, unreachable): the run stops."""


def _display_url(url: str) -> str:
    """``url`` without any user:password part."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def scrubber(secret: str) -> Callable[[str], str]:
    """A function that replaces ``secret`` (as is, stripped, or escaped) in a text."""
    forms = {secret, secret.strip(), repr(secret)[1:-1]}
    forms.add(repr(secret.encode("utf-8", "surrogateescape"))[2:-1])
    # A form shorter than 8 characters is no real key, and would blank out words.
    ordered = sorted((f for f in forms if len(f) >= 8), key=len, reverse=True)

    def scrub(text: str) -> str:
        for form in ordered:
            text = text.replace(form, "[LAGO_API_KEY]")
        return text

    return scrub


class _Replay:
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
        signals: _Signals,
    ) -> None:
        from ._cli_replay import DeadLetters, Ledger, Progress, Tally

        self.args = args
        self.spec = spec
        self.source = source
        self.checkpoint = checkpoint
        self.start = start
        self.signals = signals
        self.scrub = scrubber(api_key)
        self.tally = Tally()
        self.ledger = Ledger(start)
        self.pending: deque[tuple[Item, LagoEvent]] = deque()
        # Batches posted and not yet recorded, oldest first (--max-in-flight).
        self.in_flight: deque[tuple[list[tuple[Item, LagoEvent]], Future[_Posted]]] = deque()
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
                raise _UsageError(f"{what}: {exc.strerror or exc}") from None
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
            raise _UsageError(f"{what}: {exc.strerror or exc} (see --checkpoint)") from None

    def report(self, message: str) -> None:
        text = self.scrub(message)
        with self.report_lock:  # the senders' retry notice comes from their threads
            if self.progress is not None:
                self.progress.message(text)
            else:
                _err(text)

    def _client(self, api_key: str) -> LagoClient:
        import time
        from urllib.parse import urlsplit

        from .client import LagoClient, RetryPolicy
        from .errors import ConfigurationError

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
                raise _UsageError(
                    f"--api-url {self.url} is plain http to a host other than this machine: "
                    "the API key would travel in clear text. Use https, or add "
                    "--allow-insecure-http if the host is on a private network you trust "
                    "(e.g. http://lago-api:3000 in a Docker network)"
                ) from None
            raise _UsageError(self.scrub(str(exc))) from None
        parts = urlsplit(client.api_url)
        if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            _err(
                f"warning: sending the API key in clear text to {self.url} "
                "(--allow-insecure-http): anyone on that network path can read it"
            )
        return client

    def run(self) -> int:
        from ._cli_input import InputError
        from ._cli_replay import CheckpointError

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
        from ._cli_replay import Mark

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
            events = _map_item(self.spec, item, self.tally, self.report)
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

    def _post(self, batch: list[tuple[Item, LagoEvent]]) -> _Posted:
        import time

        started = time.monotonic()
        result = self.client.send_batch([event for _, event in batch])
        return result, time.monotonic() - started

    def _settle_oldest(self) -> None:
        """Record the oldest batch in flight (the ledger takes outcomes in any order)."""
        batch, future = self.in_flight.popleft()
        self._settle(batch, future.result())

    def _settle(self, batch: list[tuple[Item, LagoEvent]], posted: _Posted) -> None:
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

    def _record(self, batch: list[tuple[Item, LagoEvent]], result: BatchResult) -> None:
        """Count a batch's outcome, keep its failures, and move the checkpoint."""
        from .errors import LagoAPIError

        position = {id(event): item for item, event in batch}
        self.tally.delivered += len(result.delivered)
        self.tally.duplicates += len(result.duplicates)
        for event in (*result.delivered, *result.duplicates):
            self.ledger.settle(position[id(event)].position)
        stop = None
        for failure in result.failed:
            item = position[id(failure.event)]
            error = failure.error
            status = error.status_code if isinstance(error, LagoAPIError) else None
            self.tally.failed += 1
            if status is None or status in (401, 403, 404, 408, 429) or status >= 500:
                stop = stop or error  # nothing about this event: later ones would fail too
                continue
            text = self.scrub(str(error))
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
        from .errors import LagoAPIError

        tried = f"gave up after {_plural(attempts, 'attempt')} in {self.elapsed:.0f} s"
        if not isinstance(error, LagoAPIError):
            return f"cannot reach Lago at {self.url}: {self.scrub(str(error))} ({tried}). Stopped"
        said = self.scrub(str(error))
        if error.status_code in (401, 403):
            return (
                f"Lago at {self.url} refused the API key: {said}. Check LAGO_API_KEY, and "
                "--api-url (US and EU keys differ). Stopped"
            )
        if error.status_code == 404:
            return (
                f"Lago at {self.url} has no events API ({self.url}/api/v1/events/batch: {said}): "
                "check --api-url, the origin of your Lago API (e.g. https://api.getlago.com). "
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
        _err(self.scrub(_summary(self.tally, sent=True)))
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
            _err(f"{what}; {where}")
        elif status == EXIT_STOPPED:
            _err(where)
        elif self.lost_without_dead_letter:
            _err(
                f"{_plural(self.lost_without_dead_letter, 'Lago event')} not stored and not kept "
                f"(no --dead-letter file), so the checkpoint stays before them. {where} (what "
                "was stored since comes back as duplicates)"
            )
        if status == EXIT_OK and (self.tally.invalid or self.tally.failed):
            status = EXIT_FAILED
        return status


def _cmd_fake_lago(args: argparse.Namespace) -> int:
    import secrets
    import threading

    from .testing import FakeLago

    # Never the LAGO_API_KEY from the environment: that may be a real key, and
    # this command prints its key.
    api_key = args.api_key or f"fake-{secrets.token_hex(8)}"
    fake = FakeLago(api_key=api_key)
    _cli_check_lago.configure_fake(fake, args)
    try:
        with _Signals(), fake.serve(port=args.port) as url:  # SIGTERM stops it like Ctrl-C
            print(f"FakeLago is listening on {url} (Ctrl-C to stop)")
            print(f"export LAGO_API_URL={url}")
            print(f"export LAGO_API_KEY={api_key}")
            sys.stdout.flush()
            threading.Event().wait()
    except KeyboardInterrupt:
        _err(f"stopped; FakeLago had stored {_plural(len(fake.events), 'event')}")
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------

_EPILOG = """\
exit codes: 0 ok; 1 spec errors, or events not mapped/stored; 2 usage errors and
unreadable input; 3 replay stopped by Lago (bad key, wrong URL, unreachable);
130 Ctrl-C; 143 SIGTERM. Data goes to stdout as JSON lines; messages and progress
go to stderr.

examples:
  lago-segment check lago-mapping.toml
  lago-segment map lago-mapping.toml segment-events.jsonl > lago-events.jsonl
  lago-segment explain lago-mapping.toml '{"type": "track", "event": "API Call", ...}'
  lago-segment replay lago-mapping.toml archive.jsonl.gz   # key from $LAGO_API_KEY
  lago-segment fake-lago --port 8765
"""


def _wrap(text: str) -> str:
    """Fill a description to the terminal's width; the epilogs keep their own layout."""
    import shutil
    import textwrap

    width = min(shutil.get_terminal_size().columns, 100) - 2
    return textwrap.fill(text, width)


def _events_help(what: str) -> str:
    return (
        f"{what}: a JSON-lines file (gzip when it ends in .gz), a Segment batch file "
        '({"batch": [...]} or a JSON array), or - for stdin'
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lago-segment`` (exposed for the docs and tests)."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="lago-segment",
        description=_wrap("Map Segment events to Lago usage events, and send them to Lago."),
        epilog=_EPILOG,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"lago-segment {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for register in _COMMANDS:
        register(commands)
    return parser


def _add_check(commands: _Commands) -> None:
    """Register ``check SPEC``."""
    raw = argparse.RawDescriptionHelpFormatter
    check = commands.add_parser(
        "check",
        help="validate a mapping spec",
        description=_wrap("Validate a mapping spec and print every error with its location."),
        epilog="exit code 1 when the spec has errors.\n\nexample:\n"
        "  lago-segment check lago-mapping.toml",
        formatter_class=raw,
    )
    check.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    check.add_argument(
        "--format",
        choices=("toml", "json"),
        help="print the normalized spec in this format instead (it loads back to an equal spec)",
    )
    _cli_check_lago.add_arguments(check)
    check.set_defaults(run=_cmd_check)


def _add_map(commands: _Commands) -> None:
    """Register ``map SPEC EVENTS``."""
    raw = argparse.RawDescriptionHelpFormatter
    map_ = commands.add_parser(
        "map",
        help="dry run: print the Lago events a file of Segment events maps to",
        description=_wrap(
            "Map Segment events without sending anything: the Lago events go to "
            "stdout as JSON lines, bad input and mapping failures to stderr (with their line), "
            "and a summary of matched / skipped / failed events ends the run."
        ),
        epilog="exit code 1 when any event was invalid or failed to map (the others are\n"
        "still printed).\n\nexamples:\n"
        "  lago-segment map lago-mapping.toml segment-events.jsonl\n"
        "  zcat archive.jsonl.gz | lago-segment map lago-mapping.toml - > lago-events.jsonl",
        formatter_class=raw,
    )
    map_.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    map_.add_argument("events", metavar="EVENTS", help=_events_help("the Segment events"))
    map_.set_defaults(run=_cmd_map)


def _add_explain(commands: _Commands) -> None:
    """Register ``explain SPEC EVENT``."""
    raw = argparse.RawDescriptionHelpFormatter
    explain = commands.add_parser(
        "explain",
        help="show rule by rule how one event maps",
        description=_wrap(
            "Explain, rule by rule, which rules match one Segment event and what "
            "each would send to Lago."
        ),
        epilog="examples:\n"
        "  lago-segment explain lago-mapping.toml event.json\n"
        "  lago-segment explain lago-mapping.toml "
        '\'{"type": "track", "event": "API Call", "userId": "u1"}\'\n'
        "  head -1 segment-events.jsonl | lago-segment explain lago-mapping.toml -",
        formatter_class=raw,
    )
    explain.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    explain.add_argument(
        "event",
        metavar="EVENT",
        help="one Segment event: inline JSON, a file holding it, or - for stdin",
    )
    explain.set_defaults(run=_cmd_explain)


def _add_replay(commands: _Commands) -> None:
    """Register ``replay SPEC EVENTS``."""
    raw = argparse.RawDescriptionHelpFormatter
    replay = commands.add_parser(
        "replay",
        help="map events and send them to Lago, resumably",
        description=_wrap(
            "Map Segment events and send the Lago events to Lago, in batches, with "
            "retries. The API key comes from the LAGO_API_KEY environment variable only (a "
            "flag would land in your shell history). Events Lago refuses are written "
            "to the --dead-letter file, which `replay --lago-events` sends again. A bad key "
            "(401/403), a wrong URL (404) or Lago out of reach stop the run at once (exit "
            "code 3). After every batch, a checkpoint records the last input record whose "
            "events all settled (stored, already stored, dead-lettered, or deliberately "
            "skipped), so --resume continues where the run stopped and never skips an event "
            "that was not stored. Events in flight when it stopped are sent again; Lago keeps "
            "one event per transaction_id, so they come back as duplicates, never as double "
            "charges."
        ),
        epilog="examples:\n"
        "  read -rs LAGO_API_KEY && export LAGO_API_KEY   # typed, not in shell history\n"
        "  lago-segment replay lago-mapping.toml archive.jsonl.gz "
        "--dead-letter failed.jsonl\n"
        "  lago-segment replay lago-mapping.toml archive.jsonl.gz --resume   # after Ctrl-C\n"
        "  lago-segment replay --lago-events failed.jsonl   # retry the dead letters\n"
        "  lago-segment map spec.toml events.jsonl | lago-segment replay --lago-events - \\\n"
        "      --api-url https://api.eu.getlago.com",
        formatter_class=raw,
    )
    replay.add_argument(
        "spec", metavar="SPEC", nargs="?", help="the mapping spec (.toml or .json)"
    )
    replay.add_argument(
        "events", metavar="EVENTS", nargs="?", help=_events_help("the Segment events")
    )
    replay.add_argument(
        "--lago-events",
        metavar="FILE",
        help="send Lago events instead of mapping Segment events: JSON lines as printed by "
        "`map`, or a --dead-letter file; - for stdin",
    )
    replay.add_argument(
        "--api-url",
        metavar="URL",
        default=os.environ.get("LAGO_API_URL", _DEFAULT_API_URL),
        help="Lago's origin (default: $LAGO_API_URL, else %(default)s); EU: "
        "https://api.eu.getlago.com",
    )
    replay.add_argument(
        "--dead-letter",
        metavar="FILE",
        help="append the Lago events that were not stored, with their error, as JSON lines",
    )
    replay.add_argument(
        "--resume",
        action="store_true",
        help="skip the input up to the checkpoint of an earlier, interrupted run",
    )
    replay.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="where the checkpoint is kept (default: "
        "$XDG_STATE_HOME/lago-segment/checkpoints/NAME-HASH.json, XDG_STATE_HOME being "
        "~/.local/state when unset; required for --resume on stdin)",
    )
    replay.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// --api-url to a host other than this machine (a "
        "self-hosted Lago on a private network): the API key travels in clear text",
    )
    replay.add_argument(
        "--give-up-after",
        type=_positive_float,
        metavar="SECONDS",
        default=60.0,
        help="how long to keep retrying a batch while Lago is unreachable or failing, "
        "before the run stops (default: %(default)g)",
    )
    replay.add_argument(
        "--batch-size",
        type=_batch_size,
        metavar="N",
        default=100,
        help="Lago events per request, at most 100 (default: %(default)s)",
    )
    replay.add_argument(
        "--max-in-flight",
        type=_positive_int,
        metavar="N",
        default=4,
        help="batches sent at once from a file (default: %(default)s: about 200 requests/s at "
        "a 20 ms round trip, under half of Lago Cloud's 500 event requests/s per "
        "organization); stdin and pipes are sent one batch at a time",
    )
    replay.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        default=10.0,
        help="seconds per HTTP request (default: %(default)g)",
    )
    replay.add_argument(
        "--max-events",
        type=_positive_int,
        metavar="N",
        help="stop after N input events (a sample run; --resume continues after it)",
    )
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: only when stderr is a terminal)",
    )
    replay.set_defaults(run=_cmd_replay)


def _add_fake_lago(commands: _Commands) -> None:
    """Register ``fake-lago``."""
    raw = argparse.RawDescriptionHelpFormatter
    fake = commands.add_parser(
        "fake-lago",
        help="run an in-memory Lago on 127.0.0.1 to try things without an account",
        description=_wrap(
            "Serve FakeLago, an in-memory stand-in for Lago's events API, on "
            "127.0.0.1. Prints its URL and its API key (random unless --api-key gives one; "
            "never LAGO_API_KEY, which may hold a real key) as shell exports; runs until "
            "Ctrl-C or SIGTERM (exit code 0)."
        ),
        epilog="example:\n"
        "  lago-segment fake-lago --port 8765\n"
        "  # in another shell, paste the two export lines it printed, then:\n"
        "  lago-segment replay examples/lago-mapping.toml examples/segment-events.jsonl",
        formatter_class=raw,
    )
    fake.add_argument(
        "--port", type=int, metavar="PORT", default=0, help="port (default: a free one)"
    )
    fake.add_argument(
        "--api-key",
        metavar="KEY",
        help="the key the fake accepts (default: a random one; never use a real key here)",
    )
    _cli_check_lago.add_fake_arguments(fake)
    fake.set_defaults(run=_cmd_fake_lago)


def _add_consume(commands: _Commands) -> None:
    """Register ``consume SPEC`` (Kafka; confluent-kafka is imported only when it runs)."""
    from .kafka._cli import add_consume_parser

    add_consume_parser(commands, _wrap, argparse.RawDescriptionHelpFormatter)


_COMMANDS: list[Callable[[_Commands], None]] = [  # one register function per subcommand
    _add_check,
    _add_map,
    _add_explain,
    _add_replay,
    _add_fake_lago,
    _add_consume,
]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _batch_size(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"Lago takes at most 100 events per batch, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    >>> main(["--version"])  # doctest: +SKIP
    lago-segment 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except _UsageError as exc:
        parser.exit(EXIT_USAGE, f"lago-segment {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout was closed early (``| head``): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
