"""OpenTelemetry metrics, recorded only when ``opentelemetry-api`` is installed.

The forwarders and clients call into this module at a few points (an event
enqueued, a batch settled, a request answered). Without the ``otel`` extra
every call lands on a recorder that does nothing, and ``opentelemetry`` is
never imported. With it, the instruments live on the meter ``lago_segment`` of
the global meter provider (or of the one given to :func:`use_meter_provider`).

Cost on ``forward()``: one increment of a per-thread list per Lago event, no
lock and no OpenTelemetry call; the SDK reads the sums through an observable
counter when it collects. Only requests (one per batch) record histograms.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation

    from lago_segment.client._results import BatchResult
    from lago_segment.lago import LagoEvent

__all__ = [
    "ForwarderMetrics",
    "batch_sent",
    "enabled",
    "for_forwarder",
    "request_finished",
    "request_started",
    "retried",
    "use_meter_provider",
]

from lago_segment import _metric_names as names

_Key = tuple[str, str, str | None, str | None, str | None]  # forwarder, outcome, code, error, lago


class _State:
    """Process-wide: the cumulative counts and the instruments (created on first use)."""

    def __init__(self) -> None:
        # Reentrant: a thread-end finalizer may run while this thread holds it.
        self.lock = threading.RLock()
        # Each distinct key has a slot; each thread adds to its own list of
        # values, without a lock, and collection sums them. Measured on
        # forward(): a lock and 5-tuple keys cost more than the rest of the
        # recording together (see docs/production.md).
        self.slots: dict[_Key, int] = {}
        self.threads: list[list[int]] = []  # the lists of live threads
        self.retired: list[int] = []  # what finished threads counted
        self.local = threading.local()
        self.live: weakref.WeakSet[ForwarderMetrics] = weakref.WeakSet()
        self.available: bool | None = None  # None: not looked yet
        self.provider: MeterProvider | None = None
        self.duration: Histogram | None = None
        self.batch_size: Histogram | None = None
        # The histograms made on each provider (None: the global one): instruments
        # are created once per provider, whatever use_meter_provider is called with.
        self.made: dict[MeterProvider | None, tuple[Histogram, Histogram]] = {}


_state = _State()


def _slot(key: _Key) -> int:
    """The slot of ``key``, made on first use (call under the lock)."""
    slot = _state.slots.get(key)
    if slot is None:
        slot = _state.slots[key] = len(_state.slots)
    return slot


class _ThreadCounts:
    """Owns one thread's list; when the thread ends, its counts move to ``retired``."""

    __slots__ = ("__weakref__", "values")

    def __init__(self) -> None:
        self.values: list[int] = []
        with _state.lock:
            _state.threads.append(self.values)
        weakref.finalize(self, _retire, self.values)


def _retire(values: list[int]) -> None:
    with _state.lock:
        _add_into(_state.retired, values)
        _state.threads = [v for v in _state.threads if v is not values]


def _add_into(total: list[int], values: list[int]) -> None:
    if len(total) < len(values):
        total.extend([0] * (len(values) - len(total)))
    for slot, value in enumerate(values):
        total[slot] += value


def _values() -> list[int]:
    """This thread's counts (only this thread writes to them)."""
    try:
        counts: _ThreadCounts = _state.local.counts
    except AttributeError:
        counts = _state.local.counts = _ThreadCounts()
    return counts.values


def _bump(values: list[int], slot: int, n: int) -> None:
    try:
        values[slot] += n
    except IndexError:
        values.extend([0] * (slot + 1 - len(values)))
        values[slot] += n


def enabled() -> bool:
    """True when ``opentelemetry-api`` can be imported (looked once, then remembered)."""
    if _state.available is None:
        try:
            import opentelemetry.metrics  # noqa: F401
        except ImportError:
            _state.available = False
        else:
            _state.available = True
            _create_instruments()
    return _state.available


def use_meter_provider(provider: MeterProvider | None) -> None:
    """Record through ``provider`` from now on (None: the global one again).

    Counts already recorded are kept: a new provider sees the running totals.
    """
    if not enabled():
        from lago_segment.errors import ConfigurationError

        raise ConfigurationError(
            "meter_provider", "opentelemetry-api is not installed: pip install lago-segment[otel]"
        )
    _state.provider = provider
    _create_instruments()


def _create_instruments() -> None:
    from opentelemetry import metrics

    from lago_segment._version import __version__

    made = _state.made.get(_state.provider)
    if made is not None:
        _state.duration, _state.batch_size = made
        return
    if _state.provider is None:
        meter = metrics.get_meter(names.METER_NAME, __version__)
    else:
        meter = _state.provider.get_meter(names.METER_NAME, __version__)

    def about(name: str) -> tuple[str, str]:
        """The instrument's unit and description."""
        _, unit, description = names.INSTRUMENTS[name]
        return unit, description

    meter.create_observable_counter(names.EVENTS, [_observe_events], *about(names.EVENTS))
    for name, callback in (
        (names.QUEUE_DEPTH, _observe_queue),
        (names.SPOOL_DEPTH, _observe_spool),
        (names.IN_FLIGHT, _observe_in_flight),
    ):
        meter.create_observable_gauge(name, [callback], *about(name))
    _state.duration = meter.create_histogram(
        names.REQUEST_DURATION, *about(names.REQUEST_DURATION)
    )
    _state.batch_size = meter.create_histogram(names.BATCH_SIZE, *about(names.BATCH_SIZE))
    _state.made[_state.provider] = (_state.duration, _state.batch_size)


def _attributes(key: _Key) -> dict[str, str]:
    forwarder, outcome, code, error, lago_code = key
    attributes = {names.OUTCOME: outcome}
    if forwarder:
        attributes[names.FORWARDER] = forwarder
    for name, value in (
        (names.CODE, code),
        (names.ERROR_TYPE, error),
        (names.LAGO_ERROR_CODE, lago_code),
    ):
        if value is not None:
            attributes[name] = value
    return attributes


def _observe_events(_options: CallbackOptions) -> Iterator[Observation]:
    from opentelemetry.metrics import Observation

    with _state.lock:
        total = list(_state.retired)
        for values in _state.threads:
            _add_into(total, values)
        keys = list(_state.slots.items())
    counts = {key: total[slot] for key, slot in keys if slot < len(total)}
    # mapped == enqueued + dropped, always: derived here, so forward() adds one count, not two.
    for (forwarder, outcome, code, _, _), value in list(counts.items()):
        if outcome in ("enqueued", "dropped"):
            mapped: _Key = (forwarder, "mapped", code, None, None)
            counts[mapped] = counts.get(mapped, 0) + value
    for key, value in counts.items():
        yield Observation(value, _attributes(key))


class _Store(Protocol):
    def depth(self) -> int: ...
    def ready(self) -> int: ...


class _ForwarderState(Protocol):
    store: _Store


def _by_forwarder(read: Any) -> Iterator[Observation]:
    from opentelemetry.metrics import Observation

    totals: dict[str, int] = {}
    for recorder in list(_state.live):
        state = recorder.state()
        if state is None:
            continue
        value = read(state)
        if value is not None:
            totals[recorder.name] = totals.get(recorder.name, 0) + value
    for name, value in totals.items():
        yield Observation(value, {names.FORWARDER: name})


def _is_spool(state: _ForwarderState) -> bool:
    return type(state.store).__name__ == "SpoolStore"


def _observe_queue(_options: CallbackOptions) -> Iterator[Observation]:
    return _by_forwarder(lambda state: None if _is_spool(state) else state.store.depth())


def _observe_spool(_options: CallbackOptions) -> Iterator[Observation]:
    return _by_forwarder(lambda state: state.store.depth() if _is_spool(state) else None)


def _in_flight(state: _ForwarderState) -> int:
    # The forwarder's own figure when it keeps one; else one sender sends one
    # batch at a time, so events taken but not settled mean one batch.
    given = getattr(state, "batches_in_flight", None)
    if isinstance(given, int):
        return given
    return 1 if state.store.depth() > state.store.ready() else 0


def _observe_in_flight(_options: CallbackOptions) -> Iterator[Observation]:
    return _by_forwarder(_in_flight)


def _error_codes(error: BaseException) -> tuple[str, str | None]:
    """The error class and, when Lago explained it, Lago's most specific code."""
    details = getattr(error, "error_details", None)
    lago_code: str | None = None
    if isinstance(details, Mapping):
        for reasons in details.values():
            if isinstance(reasons, (list, tuple)) and reasons and isinstance(reasons[0], str):
                lago_code = reasons[0]
                break
    if lago_code is None:
        code = getattr(error, "code", None)
        lago_code = code if isinstance(code, str) else None
    return type(error).__name__, lago_code


class _Queued(Protocol):
    @property
    def event(self) -> LagoEvent: ...


_PLAIN = frozenset(("skipped", "discarded", "rejected"))


class ForwarderMetrics:
    """One forwarder's recorder: adds outcomes to the process-wide counts."""

    __slots__ = ("__weakref__", "_keys", "_name", "state")

    def __init__(self, state: object, name: str = "default") -> None:
        self.state = weakref.ref(state)
        self._name = name
        # (outcome, code) -> the count keys to add 1 to: forward() builds no tuple
        # once a code has been seen (measured: see docs/production.md).
        self._keys: dict[tuple[str, str], tuple[int, ...]] = {}
        _state.live.add(self)

    @property
    def name(self) -> str:
        """The value of ``lago_segment.forwarder.name`` on what it records."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value
        self._keys = {}

    def _add(self, pairs: Iterable[tuple[_Key, int]]) -> None:
        values = _values()
        with _state.lock:
            slots = [(_slot(key), n) for key, n in pairs]
        for slot, n in slots:
            _bump(values, slot, n)

    def counted(self, deltas: Mapping[str, int]) -> None:
        """The forwarder's code-less counters: skipped, discarded and rejected Segment events."""
        if _PLAIN.isdisjoint(deltas):  # the usual case on forward(): received, mapped...
            return
        for outcome in _PLAIN:
            n = deltas.get(outcome)
            if n:
                self._add((((self._name, outcome, None, None, None), n),))

    def _keys_for(self, outcome: str, code: str) -> tuple[int, ...]:
        """The slots of ``outcome`` for ``code``, remembered."""
        keys: list[_Key] = [(self._name, outcome, code, None, None)]
        with _state.lock:
            slots = tuple(_slot(key) for key in keys)
        self._keys[(outcome, code)] = slots
        return slots

    def items(
        self, outcome: str, items: Sequence[_Queued], error: BaseException | None = None
    ) -> None:
        """``items`` ended as ``outcome`` (enqueued and dropped ones are mapped, too)."""
        if error is not None:
            error_type, lago_code = _error_codes(error)
            name = self._name
            pairs: list[tuple[_Key, int]] = [
                ((name, outcome, i.event.code, error_type, lago_code), 1) for i in items
            ]
            self._add(pairs)
            return
        cache = self._keys
        values = _values()
        for item in items:
            code = item.event.code
            for slot in cache.get((outcome, code)) or self._keys_for(outcome, code):
                try:
                    values[slot] += 1
                except IndexError:
                    _bump(values, slot, 1)

    def settled(
        self,
        result: BatchResult | None,
        failures: Sequence[tuple[_Queued, BaseException, bool]],
        kept: Collection[int],
    ) -> None:
        """A batch settled: what Lago stored, what failed, what is kept to retry.

        ``kept`` holds the ``id()`` of the failed items a spool keeps for another try.
        """
        name = self._name
        pairs: list[tuple[_Key, int]] = []
        if result is not None:
            for outcome, events in (
                ("delivered", result.delivered),
                ("duplicate", result.duplicates),
            ):
                by_code = collections.Counter(e.code for e in events)
                pairs += [((name, outcome, c, None, None), n) for c, n in by_code.items()]
        for item, error, _ in failures:
            outcome = "retried" if id(item) in kept else "failed"
            pairs.append(((name, outcome, item.event.code, *_error_codes(error)), 1))
        self._add(pairs)


class _NoMetrics:
    """What the forwarders call when the ``otel`` extra is not installed."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = "default"

    def counted(self, deltas: Mapping[str, int]) -> None:
        pass

    def items(
        self, outcome: str, items: Sequence[Any], error: BaseException | None = None
    ) -> None:
        pass

    def settled(self, result: Any, failures: Sequence[Any], kept: Collection[int]) -> None:
        pass


def for_forwarder(state: object) -> ForwarderMetrics | _NoMetrics:
    """The recorder of a forwarder's state (one that does nothing without the extra)."""
    return ForwarderMetrics(state) if enabled() else _NoMetrics()


def request_started() -> float | None:
    """Call before a request; give what it returns to :func:`request_finished`."""
    return time.perf_counter() if enabled() and _state.duration is not None else None


def request_finished(started: float | None, path: str, reply: object) -> None:
    """Record one request's duration (``reply``: the response or the transport error)."""
    if started is None or _state.duration is None:
        return
    attributes: dict[str, str | int] = {names.PATH: path}
    status = getattr(reply, "status_code", None)
    if isinstance(status, int):
        attributes[names.STATUS] = status
        if status >= 400:
            attributes[names.ERROR_TYPE] = str(status)
    elif reply is not None:
        attributes[names.ERROR_TYPE] = type(reply).__name__
    _state.duration.record(time.perf_counter() - started, attributes)


def batch_sent(path: str, size: int) -> None:
    """Record the size of one batch request (once per request, retries excluded)."""
    if enabled() and _state.batch_size is not None:
        _state.batch_size.record(size, {names.PATH: path})


def retried(events: Sequence[LagoEvent], tries: int) -> None:
    """The client sent a request again ``tries`` times: its events count as retried."""
    if not tries or not enabled():
        return
    values = _values()
    with _state.lock:
        slots = [_slot(("", "retried", event.code, None, None)) for event in events]
    for slot in slots:
        _bump(values, slot, tries)


def _reset_in_child() -> None:
    # A forked child starts from zero: its exporter reports a new process.
    _state.lock = threading.RLock()
    _state.threads = []
    _state.retired = []
    _state.local = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
