"""Delivery against a server tens of milliseconds away: batches in flight, the spool's cost.

The benchmark starts its own endpoints on loopback (see
:mod:`benchmarks._endpoint`): nginx answering at once, and nginx answering
after 20 ms with its echo module (``echo_sleep 0.02``); without nginx (or its
echo module) Python endpoints stand in, and the output says so.

Each figure is delivered Lago events per second: the bundled examples' raw
Segment dicts given to ``Forwarder.forward()`` (mapping on the caller's
thread), through ``LagoClient`` to the endpoint, timed from the first
``forward()`` until ``close()`` has delivered the last event.

- ``max_in_flight=16`` at 20 ms / the same at 0 ms (target >= 0.8: 16 batches
  of 100 per 20 ms is more than the CPU maps), and the same ratio with the
  forwarder's default ``max_in_flight``.
- A spool with ``spool_sync="full"`` / ``"normal"``, at 0 ms.
- With ``--chart``: events/s against round-trip time (0, 5, 20, 50 ms) for
  ``max_in_flight`` 1, 4 and 16, written to ``docs/_static/throughput-vs-rtt.svg``.

Keywords the forwarder does not take (yet) are not passed: the output then
says "max_in_flight unsupported" or "spool_sync unsupported" and measures the
forwarder as it is.

Run: ``python -m benchmarks network`` (``--quick``, ``--chart``).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lago_segment.client import LagoClient
from lago_segment.forwarder import Forwarder, ForwardingFailure, Mapper

from ._endpoint import endpoint_kind, local_endpoints
from ._harness import OPTIONS, Result, print_table, scaled
from .bench_forwarder import load_spec_and_events, with_ids

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "docs" / "_static" / "throughput-vs-rtt.svg"
RTT = 0.02
ROUND_TRIPS = (0.0, 0.005, 0.02, 0.05)
IN_FLIGHT = (1, 4, 16)
EVENTS = 20_000
SPOOL_EVENTS = 10_000


def _parameters() -> Mapping[str, inspect.Parameter]:
    return inspect.signature(Forwarder).parameters


def supports(keyword: str) -> bool:
    """Whether this version's ``Forwarder`` takes ``keyword``."""
    return keyword in _parameters()


def default_in_flight() -> int:
    """The forwarder's default ``max_in_flight`` (1 before it had one: one batch at a time)."""
    parameter = _parameters().get("max_in_flight")
    if parameter is None or not isinstance(parameter.default, int):
        return 1
    return parameter.default


def delivered_per_s(
    url: str,
    spec: Mapper,
    events: list[dict[str, Any]],
    *,
    spool: bool = False,
    **options: Any,
) -> float:
    """Delivered Lago events/s of one run; only the options the forwarder takes are passed."""
    accepted = {k: v for k, v in options.items() if v is not None and supports(k)}
    failures: list[ForwardingFailure] = []
    with (
        tempfile.TemporaryDirectory(prefix="lago-bench-spool-") as tmp,
        LagoClient(api_key="bench", api_url=url) as client,
    ):
        forwarder = Forwarder(
            client,
            spec=spec,
            max_queue_size=len(events) * 3,
            spool=Path(tmp) / "spool.db" if spool else None,
            max_spool_events=len(events) * 3,
            on_error=failures.append,
            flush_at_exit=False,
            **accepted,
        )
        start = time.perf_counter()
        for event in events:
            forwarder.forward(event)
        forwarder.close(timeout=None)
        elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} events failed: {failures[0].error}")
    return forwarder.stats.delivered / elapsed


def _in_flight_note(value: int | None) -> str:
    if value is not None and not supports("max_in_flight"):
        return "max_in_flight unsupported: one batch at a time"
    return ""


def bench_in_flight(urls: Mapping[float, str], spec: Mapper, events: list[Any]) -> list[Result]:
    rows = []
    default = default_in_flight()
    for value, label in ((16, "max_in_flight=16"), (None, f"default max_in_flight={default}")):
        # Interleaved, best of each: a noisy neighbour does not favour one side.
        at_rtt = at_once = 0.0
        for _ in range(1 if OPTIONS.quick else 3):
            at_rtt = max(at_rtt, delivered_per_s(urls[RTT], spec, events, max_in_flight=value))
            at_once = max(at_once, delivered_per_s(urls[0.0], spec, events, max_in_flight=value))
        rows.append(
            Result(
                f"forwarder {RTT * 1000:g} ms / 0 ms, {label}",
                at_rtt,
                "ev/s",
                "same at 0 ms",
                at_once,
                0.8 if value == 16 else None,
                True,
                _in_flight_note(value),
            )
        )
    return rows


def bench_spool_sync(url: str, spec: Mapper, events: list[Any]) -> list[Result]:
    repeats = 1 if OPTIONS.quick else 3
    if not supports("spool_sync"):
        normal = max(delivered_per_s(url, spec, events, spool=True) for _ in range(repeats))
        print("spool_sync unsupported: the spool as it is (synchronous=NORMAL)", file=sys.stderr)
        return [
            Result(
                "spool, default sync, 0 ms",
                normal,
                "ev/s",
                "same",
                normal,
                note="spool_sync unsupported",
            )
        ]
    full = normal = 0.0
    for _ in range(repeats):
        full = max(full, delivered_per_s(url, spec, events, spool=True, spool_sync="full"))
        normal = max(normal, delivered_per_s(url, spec, events, spool=True, spool_sync="normal"))
    return [Result('spool, spool_sync="full", 0 ms', full, "ev/s", '"normal"', normal)]


def sweep(
    urls: Mapping[float, str], spec: Mapper, events: list[Any]
) -> dict[int | None, dict[float, float]]:
    """Delivered events/s per ``max_in_flight`` (None: unsupported) and round-trip time."""
    values: list[int | None] = list(IN_FLIGHT) if supports("max_in_flight") else [None]
    rates = {value: dict.fromkeys(ROUND_TRIPS, 0.0) for value in values}
    # Every point once per round, best of the rounds: a busy moment of the
    # machine lowers one sample of each point, not a whole curve.
    for round_ in range(1 if OPTIONS.quick else 3):
        for value in values:
            for rtt in ROUND_TRIPS:
                rate = delivered_per_s(urls[rtt], spec, events, max_in_flight=value)
                rates[value][rtt] = max(rates[value][rtt], rate)
                print(
                    f"  chart round {round_ + 1}: max_in_flight={value or 'unsupported'} "
                    f"rtt={rtt * 1000:g} ms: {rate:,.0f} ev/s",
                    file=sys.stderr,
                )
    return rates


def write_chart(rates: dict[int | None, dict[float, float]], path: Path = CHART) -> None:
    """Plot ``rates`` (from :func:`sweep`) as an SVG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "lago-segment"  # stable ids: a diffable file
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for value, by_rtt in rates.items():
        label = f"max_in_flight={value}" if value else "one batch at a time"
        ax.plot(
            [rtt * 1000 for rtt in by_rtt],
            list(by_rtt.values()),
            marker="o",
            label=label,
        )
    ax.set_xlabel("round-trip time to the Lago endpoint (ms)")
    ax.set_ylabel("delivered Lago events/s")
    ax.set_xticks([rtt * 1000 for rtt in ROUND_TRIPS])
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("Forwarder throughput against round-trip time")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def run() -> list[Result]:
    """The in-flight and spool figures, and with ``--chart`` the sweep and its SVG."""
    kind = endpoint_kind(delayed=True)
    print(f"bench_network: local endpoints = {kind}", file=sys.stderr)
    if not supports("max_in_flight"):
        print("max_in_flight unsupported: measuring one batch at a time", file=sys.stderr)
    spec, events, _ = load_spec_and_events()
    delays = ROUND_TRIPS if OPTIONS.chart else (0.0, RTT)
    tag = "" if kind == "nginx" else " [python endpoint]"
    with local_endpoints(delays) as urls:
        rows = bench_in_flight(urls, spec, with_ids(events, scaled(EVENTS)))
        rows += bench_spool_sync(urls[0.0], spec, with_ids(events, scaled(SPOOL_EVENTS)))
        if OPTIONS.chart:
            rates = sweep(urls, spec, with_ids(events, scaled(EVENTS // 2)))
            write_chart(rates)
            print(f"wrote {CHART.relative_to(ROOT)}", file=sys.stderr)
            for value, by_rtt in rates.items():
                for rtt, rate in by_rtt.items():
                    rows.append(
                        Result(
                            f"chart: {rtt * 1000:g} ms, max_in_flight={value or 'unsupported'}",
                            rate,
                            "ev/s",
                            "same at 0 ms",
                            by_rtt[0.0],
                        )
                    )
    return [dataclasses.replace(r, name=r.name + tag) for r in rows]


if __name__ == "__main__":
    print_table(run())
