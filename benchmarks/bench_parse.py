"""How fast is parse_event on a realistic 1 KB track message, against json.loads?

The issue's target: parsing from bytes costs at most 3x ``json.loads`` of the
same bytes. Run: ``python -m benchmarks.bench_parse``.
"""

from __future__ import annotations

import json

from lago_segment.events import parse_event

from ._harness import Result, best_of, print_table

PAYLOAD: dict[str, object] = {
    "type": "track",
    "event": "Seat Added",
    "messageId": "ajs-next-1732500000000-5b0c2e6f-3c1a-4d2b-9f1e-7a8b9c0d1e2f",
    "userId": "user_8f14e45fceea167a",
    "anonymousId": "a3c1f2e4-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
    "timestamp": "2024-11-25T03:46:25.123Z",
    "originalTimestamp": "2024-11-25T03:46:24.987Z",
    "sentAt": "2024-11-25T03:46:25.001Z",
    "receivedAt": "2024-11-25T03:46:25.456Z",
    "channel": "server",
    "version": 2,
    "context": {
        "library": {"name": "analytics-node", "version": "6.2.0"},
        "ip": "203.0.113.42",
        "userAgent": (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36"
        ),
        "locale": "en-US",
        "page": {
            "path": "/settings/billing",
            "referrer": "https://app.example.com/dashboard",
            "title": "Billing - Example",
            "url": "https://app.example.com/settings/billing?tab=seats",
        },
    },
    "integrations": {"All": True, "Salesforce": False},
    "properties": {
        "plan": "startup_monthly",
        "seats": 12,
        "seat_price": 9.5,
        "currency": "EUR",
        "workspace_id": "ws_4f2a9c",
        "external_subscription_id": "sub_2024_000123",
        "added_by": "admin@example.com",
        "trial": False,
        "region": "eu-west-1",
        "source": "settings_page",
    },
}
DATA = json.dumps(PAYLOAD).encode()


def run() -> list[Result]:
    """Time ``parse_event(bytes)`` and ``json.loads(bytes)`` in the same run."""
    number = 20_000
    parse = best_of(lambda: parse_event(DATA), number=number)
    loads = best_of(lambda: json.loads(DATA), number=number)
    return [
        Result(
            name="parse_event(1 KB track bytes)",
            value=parse * 1e6,
            unit="µs",
            baseline_name="json.loads",
            baseline=loads * 1e6,
            target=3.0,
        )
    ]


if __name__ == "__main__":
    print(f"payload: {len(DATA)} bytes")
    print_table(run())
