"""The subcommands and their parser (see :mod:`lago_segment.cli`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lago_segment._types import EU_API_URL, US_API_URL
from lago_segment._version import __version__
from lago_segment.cli import _check_lago
from lago_segment.cli._ledger import plural

if TYPE_CHECKING:
    from typing import TypeAlias

    from lago_segment.cli._input import Item, Source
    from lago_segment.cli._ledger import Tally
    from lago_segment.lago import LagoEvent
    from lago_segment.mapping import MappingSpec

    _Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class UsageError(Exception):
    """A problem with what was asked (exit 2), as opposed to with the data (exit 1)."""


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _render(event: LagoEvent) -> str:
    return json.dumps(event.to_dict(), ensure_ascii=False) + "\n"


def load_spec(path: str) -> MappingSpec | None:
    """Load a spec, or print every error with its location and return None.

    A spec that is missing, unreadable or a directory is a usage error (exit 2).
    """
    import warnings

    from lago_segment.errors import LagoSegmentError, MappingError
    from lago_segment.mapping import MappingSpec

    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory: SPEC is a mapping spec file (.toml or .json)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read spec {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec = MappingSpec.load(path)
        for warning in caught:  # e.g. a trigger mixing and/or without parentheses
            err(f"{path}: warning: {warning.message}")
        return spec
    except MappingError as exc:
        for error in exc.errors:  # each names its file and location
            err(error)
        err(f"{path}: {plural(len(exc.errors), 'error')}")
        return None
    except LagoSegmentError as exc:
        err(f"{path}: {exc}")
        return None


def _open(name: str) -> Source:
    from lago_segment.cli._input import open_source

    try:
        return open_source(name)
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None


def _problem(error: Exception) -> str:
    from lago_segment.errors import InvalidEventPayload, InvalidLagoEvent

    if isinstance(error, InvalidEventPayload):
        return f"invalid event: {error.problem} @ {error.path}"
    if isinstance(error, InvalidLagoEvent):
        return f"invalid Lago event: {error}"
    return str(error)


def map_item(
    spec: MappingSpec | None, item: Item, tally: Tally, report: Callable[[str], None] = err
) -> list[LagoEvent]:
    """Map one input record, counting and reporting what happened to it."""
    from lago_segment.errors import InvalidLagoEvent, MappingError

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


def summary(tally: Tally, *, sent: bool) -> str:
    text = (
        f"{plural(tally.read, 'event')} read: {tally.matched} matched "
        f"({plural(tally.lago_events, 'Lago event')}), {tally.skipped} skipped "
        f"(no rule matched), {tally.invalid} failed"
    )
    if sent:
        text += (
            f"; sent: {tally.delivered} stored, {plural(tally.duplicates, 'duplicate')}, "
            f"{tally.failed} not stored"
        )
    return text


# -- commands -----------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    if getattr(args, "format", None) is not None:
        return _print_normalized(spec, args.format, args.spec)
    print(f"{args.spec}: ok ({plural(len(spec.rules), 'rule')})")
    if args.against_lago:
        return _check_lago.check_against_lago(spec, args)
    return EXIT_OK


def _print_normalized(spec: MappingSpec, fmt: str, path: str) -> int:
    """``check --format``: the normalized spec on stdout; it loads back to an equal spec."""
    from lago_segment.errors import MappingError

    try:
        text = spec.to_toml() if fmt == "toml" else spec.to_json()
    except MappingError as exc:  # e.g. a null, which TOML cannot write
        err(f"{path}: {exc}")
        return EXIT_FAILED
    sys.stdout.write(text)
    return EXIT_OK


def _cmd_map(args: argparse.Namespace) -> int:
    from lago_segment.cli._input import InputError
    from lago_segment.cli._ledger import Tally

    spec = load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    tally = Tally()
    status = EXIT_OK
    with _open(args.events) as source:
        try:
            for item in source.segment_events():
                for event in map_item(spec, item, tally):
                    try:
                        sys.stdout.write(_render(event))
                    except UnicodeEncodeError:
                        tally.invalid += 1
                        err(f"{item.where}: cannot print {event.transaction_id!r}: not UTF-8")
        except InputError as exc:
            err(str(exc))
            status = EXIT_USAGE
    sys.stdout.flush()
    err(summary(tally, sent=False))
    if status == EXIT_OK and tally.invalid:
        status = EXIT_FAILED
    return status


def _cmd_explain(args: argparse.Namespace) -> int:
    from lago_segment.cli._input import InputError, read_event_argument
    from lago_segment.errors import InvalidEventPayload, MappingError

    spec = load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    try:
        event = read_event_argument(args.event)
    except OSError as exc:
        raise UsageError(f"cannot read {args.event}: {exc.strerror or exc}") from None
    except InputError as exc:
        raise UsageError(str(exc)) from None
    except InvalidEventPayload as exc:
        err(f"{_problem(exc)}")
        return EXIT_FAILED
    try:
        explanation = spec.explain(event)
    except MappingError as exc:
        err(f"mapping failed: {exc}")
        return EXIT_FAILED
    try:
        print(explanation)
    except UnicodeEncodeError:
        err("cannot print the explanation: it holds text that is not valid Unicode")
        return EXIT_FAILED
    failing = [r.rule for r in explanation.rules if r.matched and r.error is not None]
    if failing:
        names = ", ".join(f'"{name}"' for name in failing)
        err(f"the event matches {plural(len(failing), 'rule')} that fail to map: {names}")
        return EXIT_FAILED
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from lago_segment.cli._ledger import Checkpoint, CheckpointError, default_checkpoint_path
    from lago_segment.cli._replay import Replay, Signals, quiet_library_logs

    if args.lago_events is not None:
        if args.spec is not None or args.events is not None:
            raise UsageError("give either SPEC EVENTS or --lago-events FILE, not both")
        spec_path, input_name = None, args.lago_events
    else:
        if args.spec is None or args.events is None:
            raise UsageError("replay needs SPEC and EVENTS (or --lago-events FILE)")
        spec_path, input_name = args.spec, args.events
    api_key = os.environ.get("LAGO_API_KEY", "")
    if not api_key:
        raise UsageError("set the LAGO_API_KEY environment variable to your Lago API key")
    if api_key != api_key.strip() or not api_key.isascii() or not api_key.isprintable():
        raise UsageError(
            "LAGO_API_KEY holds whitespace, control or non-ASCII characters (a trailing "
            "newline from a secrets file?): an API key is printable ASCII"
        )
    checkpoint_path = args.checkpoint
    if checkpoint_path is None and input_name != "-":
        checkpoint_path = default_checkpoint_path(input_name)
    if args.resume and checkpoint_path is None:
        raise UsageError("--resume with EVENTS from stdin needs --checkpoint FILE")
    checkpoint = None
    if checkpoint_path is not None:
        identity = "<stdin>" if input_name == "-" else os.path.abspath(input_name)
        checkpoint = Checkpoint(checkpoint_path, identity)
    try:
        start = checkpoint.load() if (args.resume and checkpoint is not None) else None
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    if start is not None:
        err(f"resuming after input position {start.position} (checkpoint {checkpoint_path})")
    elif args.resume:
        err(f"no checkpoint at {checkpoint_path} yet: starting from the beginning")

    spec = load_spec(spec_path) if spec_path is not None else None
    if spec_path is not None and spec is None:
        return EXIT_FAILED
    source = _open(input_name)
    with quiet_library_logs(), Signals() as signals:
        run = Replay(
            args,
            api_key=api_key,
            spec=spec,
            source=source,
            checkpoint=checkpoint,
            start=start,
            signals=signals,
        )
        return run.run()


def _cmd_fake_lago(args: argparse.Namespace) -> int:
    import secrets

    from lago_segment.testing import FakeLago

    # Never the LAGO_API_KEY from the environment: that may be a real key, and
    # this command prints its key.
    api_key = args.api_key or f"fake-{secrets.token_hex(8)}"
    fake = FakeLago(api_key=api_key)
    _check_lago.configure_fake(fake, args)
    try:
        from lago_segment.cli._replay import Signals

        with Signals(), fake.serve(port=args.port) as url:  # SIGTERM stops it like Ctrl-C
            print(f"FakeLago is listening on {url} (Ctrl-C to stop)")
            print(f"export LAGO_API_URL={url}")
            print(f"export LAGO_API_KEY={api_key}")
            sys.stdout.flush()
            threading.Event().wait()
    except KeyboardInterrupt:
        err(f"stopped; FakeLago had stored {plural(len(fake.events), 'event')}")
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
    _check_lago.add_arguments(check)
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
        default=os.environ.get("LAGO_API_URL", US_API_URL),
        help=f"Lago's origin (default: $LAGO_API_URL, else %(default)s); EU: {EU_API_URL}",
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
    _check_lago.add_fake_arguments(fake)
    fake.set_defaults(run=_cmd_fake_lago)


def _add_consume(commands: _Commands) -> None:
    """Register ``consume SPEC`` (Kafka; confluent-kafka is imported only when it runs)."""
    from lago_segment.kafka._cli import add_consume_parser

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
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"lago-segment {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout was closed early (``| head``): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
