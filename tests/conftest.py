"""Fixtures shared by the test modules; helper modules are named ``support_*.py``."""

from __future__ import annotations

import pytest
from support_forwarder import Driver, FakeSender
from support_integrations import RecordingForwarder

from lago_segment.forwarder._records import ForwardingFailure


@pytest.fixture
def forwarder() -> RecordingForwarder:
    """A fake forwarder that records events (set ``.raises`` to make it fail)."""
    return RecordingForwarder()


@pytest.fixture(params=["thread", "asyncio"])
def driver(request: pytest.FixtureRequest) -> Driver:
    """Runs a test against the thread forwarder, then the asyncio one."""
    return Driver(request.param)


@pytest.fixture
def sender(driver: Driver) -> FakeSender:
    """A fake client for the ``driver``'s forwarder, recording each batch."""
    return driver.sender()


@pytest.fixture
def errors() -> list[ForwardingFailure]:
    """Where a test's ``on_error`` callback collects the failures."""
    return []
