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

from lago_segment._lazy import attach_stub

__getattr__, __dir__, __all__ = attach_stub(__name__)
