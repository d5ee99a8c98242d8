from __future__ import annotations

import pytest
from _fake_forwarder import RecordingForwarder


@pytest.fixture
def forwarder() -> RecordingForwarder:
    """A fake forwarder that records events (set ``.raises`` to make it fail)."""
    return RecordingForwarder()
