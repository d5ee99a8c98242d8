"""The object behind the ``fake_lago`` pytest fixture, usable without pytest too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lago_segment.client import AsyncLagoClient, LagoClient
    from lago_segment.forwarder import Forwarder

    from ._fake_lago import FakeLago

__all__ = ["FakeLagoFixture"]


def _no_wait(_seconds: float) -> None:
    """Retries still happen, in the same number, but never wait."""


class FakeLagoFixture:
    """A :class:`FakeLago` with clients wired to it and assertions on what it stored.

    Everything else (:meth:`~FakeLago.script`, :meth:`~FakeLago.fail_randomly`,
    :meth:`~FakeLago.serve`, :attr:`~FakeLago.request_count`, ...) is the
    :attr:`fake`'s own, reachable directly on this object. Clients and
    forwarders it made are closed by :meth:`close` (the fixture's teardown).

    >>> from lago_segment import LagoEvent
    >>> with FakeLagoFixture() as lago:
    ...     result = lago.client().send_batch(
    ...         [LagoEvent(transaction_id="t1", external_subscription_id="s1",
    ...                    code="api_calls", timestamp=1700000000)]
    ...     )
    ...     stored = lago.assert_stored(transaction_ids=["t1"])
    >>> [event["code"] for event in stored]
    ['api_calls']
    """

    api_key = "fake-lago-test-key"
    """The API key the fake accepts and the clients send."""

    def __init__(self, fake: FakeLago | None = None) -> None:
        from ._fake_lago import FakeLago

        self.fake: FakeLago = fake if fake is not None else FakeLago(api_key=self.api_key)
        """The underlying :class:`FakeLago`."""
        self._closers: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)

    def __repr__(self) -> str:
        return f"FakeLagoFixture({self.fake!r})"

    # -- wiring -----------------------------------------------------------------------

    def client(self, **options: Any) -> LagoClient:
        """A :class:`~lago_segment.LagoClient` talking to the fake in memory.

        Retries never wait (the policy's ``sleep`` is a no-op); ``options`` go
        to the client (e.g. ``retry=RetryPolicy(attempts=2)``, ``max_batch_size``).
        """
        import httpx

        from lago_segment.client import LagoClient

        options.setdefault("retry", self._retry())
        client = LagoClient(
            self.api_key,
            api_url=self.fake.url,
            http_client=httpx.Client(transport=self.fake.transport),
            **options,
        )
        self._closers.append(client)
        return client

    def async_client(self, **options: Any) -> AsyncLagoClient:
        """An :class:`~lago_segment.client.AsyncLagoClient` talking to the fake in memory.

        Not closed by :meth:`close` (that needs a running loop): use it in
        ``async with`` or ``await client.aclose()`` it.
        """
        import httpx

        from lago_segment.client import AsyncLagoClient

        options.setdefault("retry", self._retry())
        http = httpx.AsyncClient(transport=self.fake.transport)
        return AsyncLagoClient(self.api_key, api_url=self.fake.url, http_client=http, **options)

    def forwarder(self, spec: Any, **options: Any) -> Forwarder:
        """A :class:`~lago_segment.forwarder.Forwarder` mapping with ``spec`` into this fake.

        Closed (hence flushed) at teardown. ``spec`` is a ``MappingSpec``, or a
        path or dict it can be loaded from; ``options`` go to the forwarder
        (``client`` defaults to :meth:`client`).
        """
        from lago_segment.forwarder import Forwarder
        from lago_segment.mapping import MappingSpec

        if isinstance(spec, Mapping):
            spec = MappingSpec.from_dict(spec)
        elif not isinstance(spec, MappingSpec):
            spec = MappingSpec.load(spec)
        if "client" not in options:  # not setdefault: that would build an unused client
            options["client"] = self.client()
        forwarder = Forwarder(spec=spec, **options)
        self._closers.append(forwarder)
        return forwarder

    def _retry(self) -> Any:
        from lago_segment.client import RetryPolicy

        return RetryPolicy(sleep=_no_wait)

    # -- assertions -------------------------------------------------------------------

    def stored(self, **fields: Any) -> list[dict[str, Any]]:
        """The stored events (Lago's JSON form) whose top-level ``fields`` all equal these.

        >>> with FakeLagoFixture() as lago:
        ...     lago.stored(code="api_calls")
        []
        """
        return [e for e in self.fake.events if all(e.get(k) == v for k, v in fields.items())]

    def assert_stored(
        self,
        *,
        transaction_ids: Iterable[str] | None = None,
        count: int | None = None,
        **fields: Any,
    ) -> list[dict[str, Any]]:
        """Assert what the fake stored, and return those events.

        ``transaction_ids``: exactly these were stored (in any order, each
        once: a duplicate fails). ``count``: that many were stored. ``fields``
        (``code="api_calls"``, ``external_subscription_id=...``) narrow both
        checks to the matching events. With neither ``transaction_ids`` nor
        ``count``, at least one event must match.
        """
        __tracebackhide__ = True  # pytest shows the failing test's line, not this one
        events = self.stored(**fields)
        ids = [e["transaction_id"] for e in events]
        where = f" matching {fields}" if fields else ""
        if transaction_ids is not None:
            expected = sorted(transaction_ids)
            assert sorted(ids) == expected, (
                f"FakeLago stored transaction_ids{where} {sorted(ids)}, expected {expected}"
            )
        if count is not None:
            assert len(events) == count, (
                f"FakeLago stored {len(events)} events{where}, expected {count}: {ids}"
            )
        if transaction_ids is None and count is None:
            assert events, f"FakeLago stored no events{where} (it has {len(self.fake.events)})"
        return events

    def assert_nothing_stored(self) -> None:
        """Assert the fake stored no event at all."""
        __tracebackhide__ = True
        ids = self.fake.stored_transaction_ids()
        assert not ids, f"FakeLago stored {len(ids)} events: {ids}"

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Close (and so flush) the forwarders, then the clients made here."""
        while self._closers:
            self._closers.pop().close()

    def __enter__(self) -> FakeLagoFixture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
