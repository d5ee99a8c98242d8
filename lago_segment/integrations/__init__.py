"""Hooks into the places Segment events already flow through in a host application.

- :mod:`lago_segment.integrations.analytics`: forward every message the
  segment-analytics-python SDK sends (``pip install lago-segment[analytics]``).

The webhook receiver for Segment's Webhooks destination lives in
:mod:`lago_segment.webhook`.
"""

from __future__ import annotations

__all__: list[str] = []
