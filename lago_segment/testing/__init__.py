"""Test helpers for code that uses lago-segment (light imports; no pytest needed).

- :class:`FakeLago`: Lago's events endpoints in memory, with Lago's semantics,
  as an ``httpx.MockTransport`` or a loopback HTTP server, with fault injection.
- :func:`set_testing`: make every client retry without waiting.

>>> import httpx
>>> from lago_segment.client import LagoClient
>>> from lago_segment.testing import FakeLago
>>> fake = FakeLago(api_key="test-key")
>>> client = LagoClient(
...     "test-key", api_url=fake.url, http_client=httpx.Client(transport=fake.transport)
... )
"""

from __future__ import annotations

from lago_segment._core import is_testing, set_testing

from ._fake_lago import FakeLago, Fault

__all__ = ["FakeLago", "Fault", "is_testing", "set_testing"]
