"""pytest fixtures for code that uses lago-segment (the ``pytest11`` entry point).

Installed with the package, so any project that depends on lago-segment gets
them without configuration:

- ``segment_event``: a :class:`~lago_segment.testing.SegmentEventFactory`
  (seed 0, fresh per test) building valid Segment messages of every type.
- ``fake_lago``: a :class:`~lago_segment.testing.FakeLagoFixture`, a fresh
  in-memory Lago with clients wired to it and assertions on what it stored.
- ``lago_client``: a :class:`~lago_segment.LagoClient` sending to ``fake_lago``,
  retrying without waiting.

Nothing heavy is imported until a fixture is used, so the plugin costs nothing
in test suites that do not use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lago_segment.client import LagoClient

    from ._factory import SegmentEventFactory
    from ._fixture import FakeLagoFixture

__all__ = ["fake_lago", "lago_client", "segment_event"]


@pytest.fixture
def segment_event() -> SegmentEventFactory:
    """Build valid Segment messages (dicts): ``segment_event("track", event="API Call")``."""
    from ._factory import SegmentEventFactory

    return SegmentEventFactory(seed=0)


@pytest.fixture
def fake_lago() -> Iterator[FakeLagoFixture]:
    """A fresh in-memory Lago; ``fake_lago.assert_stored(transaction_ids=[...])`` checks it."""
    from ._fixture import FakeLagoFixture

    with FakeLagoFixture() as fixture:
        yield fixture


@pytest.fixture
def lago_client(fake_lago: FakeLagoFixture) -> LagoClient:
    """A :class:`~lago_segment.LagoClient` wired to ``fake_lago``; retries never wait."""
    return fake_lago.client()
