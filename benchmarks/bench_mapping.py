"""How fast is ``parse_event`` + ``spec.map`` on the example events, against json.loads?

The issue's targets, with ``examples/lago-mapping.toml`` over the lines of
``examples/segment-events.jsonl`` (bytes, as a webhook receives them):

- parse + map costs at most 4x ``json.loads`` of the same bytes;
- at least 100,000 events/s on one core.

Events a rule matches but cannot map (the examples hold a few) raise
MappingError, caught here as a forwarder would. Run:
``python -m benchmarks.bench_mapping``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lago_segment.errors import MappingError
from lago_segment.events import parse_event
from lago_segment.mapping import MappingSpec

from ._harness import Result, best_of, print_table

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPEC = MappingSpec.load(EXAMPLES / "lago-mapping.toml")
LINES = (EXAMPLES / "segment-events.jsonl").read_bytes().splitlines()
EVENTS = [parse_event(line) for line in LINES]


def _loads_all() -> None:
    for line in LINES:
        json.loads(line)


def _parse_all() -> None:
    for line in LINES:
        parse_event(line)


def _parse_and_map_all() -> None:
    for line in LINES:
        try:  # noqa: SIM105 - contextlib.suppress would add its own cost to the figure
            SPEC.map(parse_event(line))
        except MappingError:
            pass


def _map_all() -> None:
    for event in EVENTS:
        try:  # noqa: SIM105 - as above
            SPEC.map(event)
        except MappingError:
            pass


def run() -> list[Result]:
    """Time each stage over the example lines, best of 5, in the same run."""
    number = 400
    n = len(LINES)
    loads = best_of(_loads_all, number=number) / n
    parse = best_of(_parse_all, number=number) / n
    both = best_of(_parse_and_map_all, number=number) / n
    mapping = best_of(_map_all, number=number) / n
    return [
        Result(
            name=f"parse_event + spec.map ({n} example events)",
            value=both * 1e6,
            unit="µs",
            baseline_name="json.loads",
            baseline=loads * 1e6,
            target=4.0,
        ),
        Result(
            name="parse_event + spec.map, events/s (1 core)",
            value=1 / both,
            unit="/s",
            baseline_name="target events/s",
            baseline=100_000,
            target=1.0,
            higher_is_better=True,
        ),
        Result(
            name="spec.map alone (pre-parsed events)",
            value=mapping * 1e6,
            unit="µs",
            baseline_name="json.loads",
            baseline=loads * 1e6,
        ),
        Result(
            name="parse_event alone",
            value=parse * 1e6,
            unit="µs",
            baseline_name="json.loads",
            baseline=loads * 1e6,
        ),
    ]


if __name__ == "__main__":
    print(f"{len(LINES)} events, {sum(map(len, LINES)) / len(LINES):.0f} bytes on average")
    print_table(run())
