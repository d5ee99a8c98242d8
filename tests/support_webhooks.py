"""Segment webhook requests for the webhook tests: track calls, bodies as Segment writes them."""

from __future__ import annotations

import json
from typing import Any


def track(n: int = 1, **extra: Any) -> dict[str, Any]:
    """A Segment track call from user ``u<n>`` whose messageId is ``m<n>``."""
    return {"type": "track", "event": "API Call", "userId": f"u{n}", "messageId": f"m{n}", **extra}


def stringify(value: object) -> bytes:
    """The body as Segment (JavaScript's JSON.stringify) writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
