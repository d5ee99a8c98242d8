"""LagoClient.send_batch throughput against a fast local endpoint, with its baselines.

The benchmark starts its own endpoint (see :mod:`benchmarks._endpoint`): nginx
from Debian's packages (``apt-get install -y nginx-light``), run in the
foreground (``daemon off``) with a generated config in a temporary directory,
listening on 127.0.0.1 and answering every POST ``200 {"events":[]}``; it is
stopped at the end. Without nginx it falls back to a Python ``http.server``
and says so in its output.

Measured in one run, all as events/s:

- ``send_batch``: 20,000 prebuilt ``LagoEvent`` through ``LagoClient.send_batch``.
- raw floor: the same events as pre-serialized 100-event bodies posted over one
  keep-alive ``httpx.Client`` (only HTTP costs).
- lago-python-client ``events.batch_create`` in chunks of 100 (prebuilt
  ``BatchEvent`` models), and ``events.create`` per event on a 1,000-event
  sample, extrapolated.

Run: ``python -m benchmarks.bench_client``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from lago_segment import LagoEvent
from lago_segment.client import LagoClient

from ._endpoint import endpoint_kind, local_endpoint, raw_floor_events_per_s, sample_event
from ._harness import Result, print_table

N_EVENTS = 20_000
N_SINGLE = 1_000
REPEAT = 3


def _best_rate(n: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def send_batch_vs_floor(url: str, n: int = N_EVENTS, rounds: int = 5) -> tuple[float, float]:
    """Best events/s of ``LagoClient.send_batch`` and of the raw floor, runs interleaved.

    Interleaving keeps a noisy neighbour from favouring one side.
    """
    events = [LagoEvent(**sample_event(i)) for i in range(n)]
    ours = floor = 0.0
    with LagoClient("bench-key", api_url=url) as client:
        client.send_batch(events[:100])  # warm up the connection
        for _ in range(rounds):
            start = time.perf_counter()
            result = client.send_batch(events)
            ours = max(ours, n / (time.perf_counter() - start))
            assert len(result.delivered) == n, result.failed[:1]
            floor = max(floor, raw_floor_events_per_s(url, n, repeat=1))
    return ours, floor


def lago_python_client_rates(url: str) -> tuple[float, float]:
    """(batch_create, create) events/s of lago-python-client against ``url``."""
    from lago_python_client.client import Client
    from lago_python_client.models.event import BatchEvent, Event

    # Client joins "api/v1/" onto api_url with urljoin, so the origin needs a trailing "/".
    client = Client(api_key="bench-key", api_url=url + "/")
    events = [Event(**sample_event(i)) for i in range(N_EVENTS)]
    batches = [BatchEvent(events=events[i : i + 100]) for i in range(0, N_EVENTS, 100)]

    def batch_create() -> None:
        for batch in batches:
            client.events.batch_create(batch)

    def create() -> None:
        for event in events[:N_SINGLE]:
            client.events.create(event)

    return _best_rate(N_EVENTS, batch_create), _best_rate(N_SINGLE, create)


def run() -> list[Result]:
    """Measure send_batch against the raw floor and against lago-python-client."""
    kind = endpoint_kind()
    print(f"bench_client: local endpoint = {kind}", file=sys.stderr)
    with local_endpoint() as url:
        ours, floor = send_batch_vs_floor(url)
        lago_batch, lago_single = lago_python_client_rates(url)
    tag = "" if kind == "nginx" else " [python endpoint]"
    return [
        Result(f"send_batch 20k events{tag}", ours, "ev/s", "raw floor httpx", floor, 0.6, True),
        Result(
            f"send_batch vs lago batch_create{tag}",
            ours,
            "ev/s",
            "lago batch_create",
            lago_batch,
            20,
            True,
        ),
        Result(
            f"send_batch vs lago create/event{tag}",
            ours,
            "ev/s",
            "lago create",
            lago_single,
            None,
            True,
        ),
    ]


if __name__ == "__main__":
    print_table(run())
