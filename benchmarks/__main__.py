"""Run every benchmark module (``benchmarks/bench_*.py``) and print one table.

Usage: ``python -m benchmarks [NAME ...]`` where NAME filters by module name
(e.g. ``parse``). Each module exposes ``run() -> list[Result]``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks

from ._harness import Result, print_table


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    results: list[Result] = []
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        if wanted and not any(w in info.name for w in wanted):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        print(f"running {info.name} ...", file=sys.stderr, flush=True)
        results.extend(module.run())
    print_table(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
