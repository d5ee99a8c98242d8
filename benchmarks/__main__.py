"""Run every benchmark module (``benchmarks/bench_*.py``) and print one table.

Usage: ``python -m benchmarks [--quick] [--chart] [NAME ...]`` where NAME
filters by module name (e.g. ``parse``). Each module exposes
``run() -> list[Result]`` and reads :data:`benchmarks._harness.OPTIONS`:

- ``--quick``: a quarter of the events and fewer repeats (a smoke run).
- ``--chart``: also sweep round-trip times (0, 5, 20, 50 ms) against
  ``max_in_flight`` 1, 4, 16 and write ``docs/_static/throughput-vs-rtt.svg``
  (needs matplotlib: ``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import benchmarks

from ._harness import OPTIONS, Result, print_table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events: a smoke run")
    parser.add_argument("--chart", action="store_true", help="write the throughput/RTT chart")
    parser.add_argument("names", nargs="*", help="only modules whose name contains one of these")
    args = parser.parse_args(argv[1:])
    OPTIONS.quick = args.quick
    OPTIONS.chart = args.chart
    results: list[Result] = []
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        if args.names and not any(w in info.name for w in args.names):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        print(f"running {info.name} ...", file=sys.stderr, flush=True)
        results.extend(module.run())
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
