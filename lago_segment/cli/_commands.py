"""What each subcommand does: ``check``, ``map``, ``explain``, ``replay``, ``fake-lago``.

One ``cmd_*`` function per subcommand takes the parsed arguments and returns
the exit code (the parser is :mod:`lago_segment.cli._parser`). ``map`` and
``replay`` share :func:`load_spec`, :func:`map_item` and :func:`summary`;
``replay``'s run itself is :class:`lago_segment.cli._replay.Replay`.
Heavy modules are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from lago_segment.cli import _check_lago
from lago_segment.cli._conventions import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    err,
    plural,
)

if TYPE_CHECKING:
    from lago_segment.cli._input import InputRecord, Source
    from lago_segment.cli._ledger import Tally
    from lago_segment.lago import LagoEvent
    from lago_segment.mapping import MappingSpec

__all__ = [
    "cmd_check",
    "cmd_explain",
    "cmd_fake_lago",
    "cmd_map",
    "cmd_replay",
    "load_spec",
    "map_item",
    "summary",
]


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
    spec: MappingSpec | None, item: InputRecord, tally: Tally, report: Callable[[str], None] = err
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
    """The run's last line: events read, matched, skipped, failed (and, ``sent``, stored)."""
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


def cmd_check(args: argparse.Namespace) -> int:
    """``check SPEC``: validate a spec (``--format``: print it normalized; ``--against-lago``:
    compare it with the billable metrics in Lago)."""
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


def cmd_map(args: argparse.Namespace) -> int:
    """``map SPEC EVENTS``: print the Lago events the input maps to; problems on stderr."""
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


def cmd_explain(args: argparse.Namespace) -> int:
    """``explain SPEC EVENT``: print, rule by rule, how one event maps."""
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


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay``: check the arguments, the key and the checkpoint, then run a :class:`Replay`."""
    from lago_segment.cli._ledger import Checkpoint, CheckpointError, default_checkpoint_path
    from lago_segment.cli._replay import Replay
    from lago_segment.cli._signals import Signals, quiet_library_logs

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


def cmd_fake_lago(args: argparse.Namespace) -> int:
    """``fake-lago``: serve a :class:`~lago_segment.testing.FakeLago` until Ctrl-C or SIGTERM."""
    import secrets

    from lago_segment.testing import FakeLago

    # Never the LAGO_API_KEY from the environment: that may be a real key, and
    # this command prints its key.
    api_key = args.api_key or f"fake-{secrets.token_hex(8)}"
    fake = FakeLago(api_key=api_key)
    _check_lago.configure_fake(fake, args)
    try:
        from lago_segment.cli._signals import Signals

        with Signals(), fake.serve(port=args.port) as url:  # SIGTERM stops it like Ctrl-C
            print(f"FakeLago is listening on {url} (Ctrl-C to stop)")
            print(f"export LAGO_API_URL={url}")
            print(f"export LAGO_API_KEY={api_key}")
            sys.stdout.flush()
            threading.Event().wait()
    except KeyboardInterrupt:
        err(f"stopped; FakeLago had stored {plural(len(fake.events), 'event')}")
    return EXIT_OK
