"""Fixtures shared by the test modules; helper modules are named ``support_*.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support_cli import KEY
from support_forwarder import Driver, FakeSender
from support_integrations import RecordingForwarder

from lago_segment.forwarder._records import ForwardingFailure

if TYPE_CHECKING:
    from lago_segment.testing import FakeLago


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


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Checkpoints go to the user's state directory: a temporary one here.

    The CLI test modules use it for every test (``pytest.mark.usefixtures("state_home")``).
    """
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture
def fake() -> Iterator[tuple[FakeLago, str]]:
    """A ``FakeLago`` that takes the CLI tests' key, served on loopback: ``(lago, url)``.

    Modules that need another Lago (other metrics, another key, not served) define their own.
    """
    from lago_segment.testing import FakeLago

    lago = FakeLago(api_key=KEY)
    with lago.serve() as url:
        yield lago, url
