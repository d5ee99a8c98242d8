"""The ``lago-segment`` command line (also ``python -m lago_segment``).

Subcommands: ``check`` a mapping spec, ``map`` events as a dry run,
``explain`` how one event maps, ``replay`` an archive to Lago, and run a
``fake-lago`` server to try it all without a Lago account.

Conventions: data (JSON lines) on stdout, messages on stderr; exit code 0
when everything went through, 1 when a spec has errors or an event could not
be mapped or stored, 2 for usage errors (bad arguments, unreadable files,
missing ``LAGO_API_KEY``), 130 when interrupted with Ctrl-C.

Built on :mod:`argparse`, not click: the library's only runtime dependencies
are httpx and attrs, and a CLI is no reason to add one. Heavy modules
are imported by the subcommand that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from ._cli_input import Item, Source
    from ._cli_replay import Tally
    from .lago import LagoEvent
    from .mapping import MappingSpec

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_DEFAULT_API_URL = "https://api.getlago.com"


class _UsageError(Exception):
    """A problem with what was asked (exit 2), as opposed to with the data (exit 1)."""


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _emit(event: LagoEvent) -> None:
    sys.stdout.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")


def _load_spec(path: str) -> MappingSpec | None:
    """Load a spec, or print every error with its location and return None."""
    import warnings

    from .errors import MappingError
    from .mapping import MappingSpec

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = MappingSpec.load(path)
        for warning in caught:  # e.g. a trigger mixing and/or without parentheses
            _err(f"{path}: warning: {warning.message}")
        return spec
    except OSError as exc:
        raise _UsageError(f"cannot read spec {path}: {exc.strerror or exc}") from None
    except MappingError as exc:
        for error in exc.errors:  # each names its file and location
            _err(error)
        count = len(exc.errors)
        _err(f"{path}: {count} error{'s' if count != 1 else ''}")
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
    print(f"{args.spec}: ok ({_plural(len(spec.rules), 'rule')})")
    return EXIT_OK


def _cmd_map(args: argparse.Namespace) -> int:
    from ._cli_replay import Tally

    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    tally = Tally()
    with _open(args.events) as source:
        for item in source.segment_events():
            for event in _map_item(spec, item, tally):
                _emit(event)
    sys.stdout.flush()
    _err(_summary(tally, sent=False))
    return EXIT_FAILED if tally.invalid else EXIT_OK


def _cmd_explain(args: argparse.Namespace) -> int:
    from ._cli_input import read_event_argument
    from .errors import InvalidEventPayload, MappingError

    spec = _load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    try:
        event = read_event_argument(args.event)
    except OSError as exc:
        raise _UsageError(f"cannot read {args.event}: {exc.strerror or exc}") from None
    except InvalidEventPayload as exc:
        _err(f"{_problem(exc)}")
        return EXIT_FAILED
    try:
        print(spec.explain(event))
    except MappingError as exc:
        _err(f"mapping failed: {exc}")
        return EXIT_FAILED
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from ._cli_replay import Checkpoint, DeadLetters, Progress, Tally, settled_position
    from .errors import LagoSegmentError

    if args.lago_events is not None:
        if args.spec is not None or args.events is not None:
            raise _UsageError("give either SPEC EVENTS or --lago-events FILE, not both")
        spec, input_name = None, args.lago_events
    else:
        if args.spec is None or args.events is None:
            raise _UsageError("replay needs SPEC and EVENTS (or --lago-events FILE)")
        spec, input_name = args.spec, args.events
    api_key = os.environ.get("LAGO_API_KEY", "")
    if not api_key:
        raise _UsageError("set the LAGO_API_KEY environment variable to your Lago API key")
    checkpoint_path = args.checkpoint
    if checkpoint_path is None and input_name != "-":
        checkpoint_path = f"{input_name}.checkpoint"
    if args.resume and checkpoint_path is None:
        raise _UsageError("--resume with EVENTS from stdin needs --checkpoint FILE")
    checkpoint = None
    if checkpoint_path is not None:
        identity = "<stdin>" if input_name == "-" else os.path.abspath(input_name)
        checkpoint = Checkpoint(checkpoint_path, identity)
    try:
        start = checkpoint.load() if (args.resume and checkpoint is not None) else 0
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if start:
        _err(f"resuming after input position {start} (from {checkpoint_path})")

    loaded = _load_spec(spec) if spec is not None else None
    if spec is not None and loaded is None:
        return EXIT_FAILED
    from .client import LagoClient

    try:
        client = LagoClient(api_key, api_url=args.api_url, timeout=args.timeout)
    except LagoSegmentError as exc:
        raise _UsageError(str(exc)) from None

    tally = Tally()
    dead = DeadLetters(args.dead_letter)
    pending: deque[tuple[int, str, LagoEvent]] = deque()
    last_read = start
    source = _open(input_name)
    progress = (
        Progress(sys.stderr, size=source.size, consumed=lambda: source.consumed)
        if (sys.stderr.isatty() if args.progress is None else args.progress)
        else None
    )

    report = progress.message if progress is not None else _err

    def send(count: int) -> None:
        batch = [pending.popleft() for _ in range(min(count, len(pending)))]
        if not batch:
            return
        result = client.send_batch([event for _, _, event in batch])
        tally.add(result)
        where = {id(event): w for _, w, event in batch}
        for failure in result.failed:
            at = where.get(id(failure.event), input_name)
            kind = "permanent" if failure.permanent else "gave up retrying"
            report(f"{at}: not stored ({kind}): {failure.error}")
            dead.write(failure.event, str(failure.error), failure.permanent, at)
        dead.flush()
        if checkpoint is not None:
            checkpoint.save(settled_position(((p, e) for p, _, e in pending), last_read))

    interrupted = False
    try:
        with client, source:
            items = source.lago_events() if loaded is None else source.segment_events()
            for item in items:
                if item.position <= start:
                    continue
                for event in _map_item(loaded, item, tally, report):
                    pending.append((item.position, item.where, event))
                last_read = item.position
                while len(pending) >= args.batch_size:
                    send(args.batch_size)
                if progress is not None:
                    progress.update(tally)
                if args.max_events is not None and tally.read >= args.max_events:
                    break
            while pending:
                send(args.batch_size)
            if checkpoint is not None:
                checkpoint.save(last_read)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        dead.close()
    if progress is not None:
        progress.update(tally, final=True)
    _err(_summary(tally, sent=True))
    if interrupted:
        hint = " (run again with --resume to continue)" if checkpoint is not None else ""
        _err(f"interrupted after input position {last_read}{hint}")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if (tally.invalid or tally.failed) else EXIT_OK


def _cmd_fake_lago(args: argparse.Namespace) -> int:
    import secrets
    import threading

    from .testing import FakeLago

    # Never the LAGO_API_KEY from the environment: that may be a real key, and
    # this command prints its key.
    api_key = args.api_key or f"fake-{secrets.token_hex(8)}"
    fake = FakeLago(api_key=api_key)
    try:
        with fake.serve(port=args.port) as url:
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
exit codes: 0 ok, 1 spec errors or events not mapped/stored, 2 usage errors, 130 Ctrl-C.
Data goes to stdout as JSON lines; messages and progress go to stderr.

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

    check = commands.add_parser(
        "check",
        help="validate a mapping spec",
        description=_wrap("Validate a mapping spec and print every error with its location."),
        epilog="exit code 1 when the spec has errors.\n\nexample:\n"
        "  lago-segment check lago-mapping.toml",
        formatter_class=raw,
    )
    check.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    check.set_defaults(run=_cmd_check)

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

    replay = commands.add_parser(
        "replay",
        help="map events and send them to Lago, resumably",
        description=_wrap(
            "Map Segment events and send the Lago events to Lago, in batches, with "
            "retries. The API key comes from the LAGO_API_KEY environment variable only (a "
            "flag would land in your shell history). Events Lago does not store are written "
            "to the --dead-letter file, which `replay --lago-events` sends again. After every "
            "batch, a checkpoint records the last input line whose events all settled, so "
            "--resume continues an interrupted run where it stopped. Events in flight when "
            "it stopped are sent again; Lago keeps one event per transaction_id, so they come "
            "back as duplicates, never as double charges."
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
        help="where the checkpoint is kept (default: EVENTS.checkpoint; required for "
        "--resume on stdin)",
    )
    replay.add_argument(
        "--batch-size",
        type=_batch_size,
        metavar="N",
        default=100,
        help="Lago events per request, at most 100 (default: %(default)s)",
    )
    replay.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=10.0,
        help="seconds per HTTP request (default: %(default)s)",
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

    fake = commands.add_parser(
        "fake-lago",
        help="run an in-memory Lago on 127.0.0.1 to try things without an account",
        description=_wrap(
            "Serve FakeLago, an in-memory stand-in for Lago's events API, on "
            "127.0.0.1. Prints its URL and its API key (random unless --api-key gives one; "
            "never LAGO_API_KEY, which may hold a real key) as shell exports; runs until "
            "Ctrl-C (exit code 0)."
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
    fake.set_defaults(run=_cmd_fake_lago)

    from .kafka._cli import add_consume_parser  # light: confluent-kafka loads on run

    add_consume_parser(commands, _wrap, raw)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
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
