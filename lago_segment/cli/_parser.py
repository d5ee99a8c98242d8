"""The argument parser of ``lago-segment`` and :func:`main`, which runs the chosen command.

One register function per subcommand (``_add_check``, ``_add_map``, ...) adds
its arguments and points ``run`` at the command's body in
:mod:`lago_segment.cli._commands`; :func:`main` parses, runs, and turns a
:class:`~lago_segment.cli._conventions.UsageError`, Ctrl-C or a closed stdout
into its exit code. Nothing heavy is imported here, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lago_segment._types import EU_API_URL, US_API_URL
from lago_segment._version import __version__
from lago_segment.cli._commands import (
    cmd_check,
    cmd_explain,
    cmd_fake_lago,
    cmd_map,
    cmd_replay,
)
from lago_segment.cli._conventions import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    err,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    _Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

__all__ = ["build_parser", "main"]

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


def _subcommand(
    commands: _Commands, name: str, *, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """Add the parser of one subcommand: its description filled, its epilog as written."""
    return commands.add_parser(
        name,
        help=help,
        description=_wrap(description),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_api_url(parser: argparse.ArgumentParser, help: str) -> None:
    """Add ``--api-url``: Lago's origin, ``$LAGO_API_URL`` unless given, else Lago Cloud (US)."""
    parser.add_argument(
        "--api-url",
        metavar="URL",
        default=os.environ.get("LAGO_API_URL", US_API_URL),
        help=help,
    )


def _add_check(commands: _Commands) -> None:
    """Register ``check SPEC``."""
    check = _subcommand(
        commands,
        "check",
        help="validate a mapping spec",
        description="Validate a mapping spec and print every error with its location.",
        epilog="exit code 1 when the spec has errors.\n\nexample:\n"
        "  lago-segment check lago-mapping.toml",
    )
    check.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    check.add_argument(
        "--format",
        choices=("toml", "json"),
        help="print the normalized spec in this format instead (it loads back to an equal spec)",
    )
    check.add_argument(
        "--against-lago",
        action="store_true",
        help="also compare the spec with the billable metrics in Lago (key from LAGO_API_KEY): "
        "unknown codes, missing aggregation properties, filter values Lago does not accept",
    )
    _add_api_url(
        check, "Lago's origin for --against-lago (default: $LAGO_API_URL, else %(default)s)"
    )
    check.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=10.0,
        help="seconds per HTTP request for --against-lago (default: %(default)s)",
    )
    check.set_defaults(run=cmd_check)


def _add_map(commands: _Commands) -> None:
    """Register ``map SPEC EVENTS``."""
    map_ = _subcommand(
        commands,
        "map",
        help="dry run: print the Lago events a file of Segment events maps to",
        description=(
            "Map Segment events without sending anything: the Lago events go to "
            "stdout as JSON lines, bad input and mapping failures to stderr (with their line), "
            "and a summary of matched / skipped / failed events ends the run."
        ),
        epilog="exit code 1 when any event was invalid or failed to map (the others are\n"
        "still printed).\n\nexamples:\n"
        "  lago-segment map lago-mapping.toml segment-events.jsonl\n"
        "  zcat archive.jsonl.gz | lago-segment map lago-mapping.toml - > lago-events.jsonl",
    )
    map_.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    map_.add_argument("events", metavar="EVENTS", help=_events_help("the Segment events"))
    map_.set_defaults(run=cmd_map)


def _add_explain(commands: _Commands) -> None:
    """Register ``explain SPEC EVENT``."""
    explain = _subcommand(
        commands,
        "explain",
        help="show rule by rule how one event maps",
        description=(
            "Explain, rule by rule, which rules match one Segment event and what "
            "each would send to Lago."
        ),
        epilog="examples:\n"
        "  lago-segment explain lago-mapping.toml event.json\n"
        "  lago-segment explain lago-mapping.toml "
        '\'{"type": "track", "event": "API Call", "userId": "u1"}\'\n'
        "  head -1 segment-events.jsonl | lago-segment explain lago-mapping.toml -",
    )
    explain.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    explain.add_argument(
        "event",
        metavar="EVENT",
        help="one Segment event: inline JSON, a file holding it, or - for stdin",
    )
    explain.set_defaults(run=cmd_explain)


def _add_replay(commands: _Commands) -> None:
    """Register ``replay SPEC EVENTS``."""
    replay = _subcommand(
        commands,
        "replay",
        help="map events and send them to Lago, resumably",
        description=(
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
    _add_api_url(
        replay, f"Lago's origin (default: $LAGO_API_URL, else %(default)s); EU: {EU_API_URL}"
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
    replay.set_defaults(run=cmd_replay)


def _add_fake_lago(commands: _Commands) -> None:
    """Register ``fake-lago``."""
    fake = _subcommand(
        commands,
        "fake-lago",
        help="run an in-memory Lago on 127.0.0.1 to try things without an account",
        description=(
            "Serve FakeLago, an in-memory stand-in for Lago's events API, on "
            "127.0.0.1. Prints its URL and its API key (random unless --api-key gives one; "
            "never LAGO_API_KEY, which may hold a real key) as shell exports; runs until "
            "Ctrl-C or SIGTERM (exit code 0)."
        ),
        epilog="example:\n"
        "  lago-segment fake-lago --port 8765\n"
        "  # in another shell, paste the two export lines it printed, then:\n"
        "  lago-segment replay examples/lago-mapping.toml examples/segment-events.jsonl",
    )
    fake.add_argument(
        "--port", type=int, metavar="PORT", default=0, help="port (default: a free one)"
    )
    fake.add_argument(
        "--api-key",
        metavar="KEY",
        help="the key the fake accepts (default: a random one; never use a real key here)",
    )
    fake.add_argument(
        "--billable-metrics",
        metavar="FILE",
        help="a JSON file of billable metrics the fake serves and validates events against "
        '(a list of Lago metrics, or {"billable_metrics": [...]})',
    )
    fake.set_defaults(run=cmd_fake_lago)


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
