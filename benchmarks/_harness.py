"""Shared timing helpers and the result row every benchmark returns."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Options:
    """Command-line switches every benchmark module may read (``benchmarks/run --help``)."""

    quick: bool = False
    """Fewer events and repeats: a smoke run of a minute or so, noisier figures."""
    chart: bool = False
    """Also measure the round-trip-time sweep and write the chart."""


#: The options of this run, set by ``python -m benchmarks``.
OPTIONS = Options()


def scaled(n: int) -> int:
    """``n`` events, or a quarter of them (at least 1,000) with ``--quick``."""
    return max(n // 4, 1_000) if OPTIONS.quick else n


@dataclass(frozen=True)
class Result:
    """One benchmark figure, compared with its same-run baseline.

    ``ratio`` is ``value / baseline`` (for costs: lower is better) and
    ``target`` is the bound the issue set, with ``higher_is_better`` saying
    which side of it passes.
    """

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target


def best_of(fn: Callable[[], object], *, number: int, repeat: int = 5) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` runs of ``number`` calls."""
    gc.collect()
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        timings.append((time.perf_counter() - start) / number)
    return min(timings)


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``samples``."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(samples: list[float]) -> float:
    """The median of ``samples``."""
    return statistics.median(samples)


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"
    )


def print_table(results: list[Result]) -> None:
    """Print results as one aligned table of ratios against their baselines."""
    print(f"machine: {machine()}")
    header = f"{'benchmark':<44} {'value':>14} {'baseline':>34} {'ratio':>8} {'target':>9}  ok"
    print(header)
    print("-" * len(header))
    for r in results:
        target = "" if r.target is None else ("≥" if r.higher_is_better else "≤") + f"{r.target:g}"
        ok = {None: "", True: "yes", False: "NO"}[r.passed]
        print(
            f"{r.name:<44} {r.value:>10.4g} {r.unit:<3} "
            f"{r.baseline_name[:22]:>22} {r.baseline:>10.4g} {r.ratio:>8.3f} {target:>9}  {ok}"
            + (f"  ({r.note})" if r.note else "")
        )
