"""Test helpers for code that uses lago-segment (light imports; no pytest needed).

- :class:`FakeLago`: Lago's events endpoints in memory, with Lago's semantics,
  as an ``httpx.MockTransport`` or a loopback HTTP server, with fault injection.
- :class:`FakeLagoFixture`: a FakeLago with clients wired to it and assertions
  (the ``fake_lago`` pytest fixture).
- :class:`SegmentEventFactory` / :data:`segment_event`: valid Segment messages.
- :func:`set_testing`: make every client retry without waiting.

Importing this module costs nothing heavy: the names backed by httpx are
loaded on first use, so the pytest plugin (``lago_segment.testing._pytest_plugin``)
stays free in test suites that do not use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lago_segment._lazy import attach

from ._factory import SegmentEventFactory, segment_event

if TYPE_CHECKING:
    from lago_segment._retry import is_testing, set_testing

    from ._fake_lago import FakeLago, Fault
    from ._fixture import FakeLagoFixture

__all__ = [
    "FakeLago",
    "FakeLagoFixture",
    "Fault",
    "SegmentEventFactory",
    "is_testing",
    "segment_event",
    "set_testing",
]

_LAZY = {
    "FakeLago": "lago_segment.testing._fake_lago",
    "Fault": "lago_segment.testing._fake_lago",
    "FakeLagoFixture": "lago_segment.testing._fixture",
    "is_testing": "lago_segment._retry",
    "set_testing": "lago_segment._retry",
}


__getattr__, __dir__ = attach(__name__, _LAZY)
