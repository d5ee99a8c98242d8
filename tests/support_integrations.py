"""A recording stand-in for ``Forwarder`` / ``AsyncForwarder``, for the integration tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RecordingForwarder:
    """Records what ``forward`` receives; set :attr:`raises` to make it fail instead."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.raises: BaseException | None = None

    def forward(self, event: Any, /) -> None:
        if self.raises is not None:
            raise self.raises
        self.events.append(event)


class ReportingForwarder(RecordingForwarder):
    """A forwarder with its own public ``report`` error callback."""

    def __init__(self) -> None:
        super().__init__()
        self.reported: list[tuple[Exception, Mapping[str, Any]]] = []

    def report(self, error: Exception, event: Mapping[str, Any]) -> None:
        self.reported.append((error, event))
