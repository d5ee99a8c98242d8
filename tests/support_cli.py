"""Running the ``lago-segment`` command line as users run it, for the CLI tests.

The bundled example spec and events, the API key the tests give ``replay``, and helpers that
run the CLI as a subprocess (``run``, ``popen``) with a clean environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from lago_segment.errors import LagoSegmentError
from lago_segment.events import parse_event
from lago_segment.mapping import MappingSpec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "lago-mapping.toml"
EVENTS = ROOT / "examples" / "segment-events.jsonl"
UNMAPPABLE = ROOT / "examples" / "segment-events-unmappable.jsonl"
KEY = "cli-test-key"


def cli_env(**extra: str) -> dict[str, str]:
    """This environment minus ``LAGO_*`` variables, this checkout importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAGO_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run(
    *args: str | Path, stdin: str | bytes | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``lago-segment *args`` to the end; ``env`` adds environment variables."""
    data = stdin.decode() if isinstance(stdin, bytes) else stdin
    return subprocess.run(
        [sys.executable, "-m", "lago_segment", *map(str, args)],
        input=data,
        capture_output=True,
        text=True,
        env=cli_env(**env),
        timeout=60,
        check=False,
    )


def popen(*args: str | Path, **options: Any) -> subprocess.Popen[str]:
    """Start ``lago-segment *args`` with the test key, SIGINT on; ``options`` go to ``Popen``."""
    # A shell without job control starts background jobs with SIGINT ignored,
    # children inherit that, and the CLI keeps an ignored signal ignored: the
    # tests that send SIGINT need it on (a handler, unlike SIG_IGN, is not inherited).
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "lago_segment", *map(str, args)],
            text=True,
            env=cli_env(LAGO_API_KEY=KEY),
            **options,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def example_lines() -> list[str]:
    """The bundled events: those that map, then those that cannot."""
    return [
        *EVENTS.read_text(encoding="utf-8").splitlines(),
        *UNMAPPABLE.read_text(encoding="utf-8").splitlines(),
    ]


def mappable_lines() -> list[str]:
    """The example events every rule maps without an error."""
    spec = MappingSpec.load(SPEC)
    good = []
    for line in example_lines():
        try:
            spec.map(parse_event(line))
        except LagoSegmentError:
            continue
        good.append(line)
    return good


def expected_transaction_ids(lines: list[str]) -> list[str]:
    """The sorted transaction ids the example spec maps these event lines to."""
    spec = MappingSpec.load(SPEC)
    return sorted(e.transaction_id for line in lines for e in spec.map(parse_event(line)))
