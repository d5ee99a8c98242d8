"""Forward what segment-analytics-python sends to Segment, to Lago as well.

:func:`instrument` hooks an analytics-python ``Client`` (or the
``segment.analytics`` module and its default client). Every ``track``,
``identify``, ``group``, ``page``, ``screen`` and ``alias`` call still goes to
Segment exactly as before, with the same arguments and the same ``(success,
msg)`` result; the message analytics-python built (with its ``messageId`` and
``timestamp``) is also given to your forwarder. Install the extra with
``pip install lago-segment[analytics]``.

Example::

    import segment.analytics as analytics
    from lago_segment.integrations.analytics import instrument

    with instrument(analytics, forwarder):
        analytics.track("user-1", "API Call", {"tokens": 12})
"""

from __future__ import annotations

import functools
import threading
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from lago_segment._reporting import error_reporter
from lago_segment._types import ErrorCallback, SupportsForward
from lago_segment.errors import InvalidEventPayload

__all__ = ["Instrumentation", "instrument"]

# The six message-building calls; flush/join/shutdown are left alone.
METHODS = ("track", "identify", "group", "page", "screen", "alias")

# Why the six public methods and not ``Client._enqueue``: hooking ``_enqueue``
# would catch every type in one place, but it is private API that can be
# renamed or re-signed in any release, and it cannot hook the module-level
# functions before the lazily created default client exists. The public methods
# (and the module's functions of the same names) are documented to return
# ``(success, msg)``, so wrapping them relies only on that contract, and the
# same code hooks both kinds of target: an instance attribute shadows the
# method on one client only (other clients are untouched); on the module, the
# function is replaced, which also catches calls routed to ``default_client``.

_lock = threading.Lock()
_hooks: weakref.WeakKeyDictionary[object, _Hook] = weakref.WeakKeyDictionary()
# While a hooked call runs on this thread: its msg and the forwarders it has
# reached. When the module and its default client are both instrumented, one
# call passes through two wrappers with the same msg; each forwarder gets it once.
_recent = threading.local()


class Instrumentation:
    """The handle :func:`instrument` returns: call :meth:`undo` (or use ``with``) to unhook.

    ``undo()`` is idempotent. When the last handle on a target is undone, the
    target's methods are exactly what they were before.
    """

    __slots__ = ("_hook", "_report", "forwarder", "target")

    def __init__(
        self, hook: _Hook, target: object, forwarder: SupportsForward, report: ErrorCallback
    ) -> None:
        self._hook: _Hook | None = hook
        self._report = report
        self.target = target
        """The client or module that was instrumented."""
        self.forwarder = forwarder
        """Where the messages go."""

    @property
    def active(self) -> bool:
        """True until :meth:`undo` is called."""
        return self._hook is not None

    def undo(self) -> None:
        """Stop forwarding this target's messages to this forwarder (idempotent)."""
        with _lock:
            hook, self._hook = self._hook, None
            if hook is not None:
                hook.remove(self)

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"<Instrumentation of {self.target!r} ({state})>"


class _Hook:
    """The wrappers installed on one target, shared by every handle on it."""

    def __init__(self, target: object) -> None:
        self.target = target
        self.handles: tuple[Instrumentation, ...] = ()
        self.saved: dict[str, tuple[bool, Any]] = {}
        self.wrappers: dict[str, Callable[..., Any]] = {}
        own = vars(target)
        for name in METHODS:
            original = getattr(target, name)
            self.saved[name] = (name in own, own.get(name))
            self.wrappers[name] = self._wrap(original)
            setattr(target, name, self.wrappers[name])

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def forwarding(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(_recent, "depth", 0)
            _recent.depth = depth + 1
            try:
                result = original(*args, **kwargs)
                self.dispatch(result)
            finally:
                _recent.depth = depth
                if depth == 0:
                    _recent.msg = _recent.forwarders = None
            return result

        return forwarding

    def dispatch(self, result: object) -> None:
        handles = self.handles
        if not handles:
            return
        msg = _message_of(result)
        if isinstance(msg, Exception):
            for handle in handles:
                handle._report(msg, {})
            return
        # Forwarders an inner wrapper (the default client's) already served.
        if getattr(_recent, "msg", None) is not msg:
            _recent.msg, _recent.forwarders = msg, set()
        done: set[int] = _recent.forwarders
        for handle in handles:
            if id(handle.forwarder) in done:
                continue
            done.add(id(handle.forwarder))
            try:
                handle.forwarder.forward(msg)
            except Exception as error:
                handle._report(error, msg)

    def remove(self, handle: Instrumentation) -> None:
        self.handles = tuple(h for h in self.handles if h is not handle)
        if self.handles:
            return
        own = vars(self.target)
        for name, (was_own, original) in self.saved.items():
            # Someone patched over our wrapper: leave theirs in place; ours,
            # now without handles, just passes calls through.
            if own.get(name) is not self.wrappers[name]:
                continue
            if was_own:
                setattr(self.target, name, original)
            else:
                delattr(self.target, name)
        del _hooks[self.target]


def _message_of(result: object) -> Mapping[str, Any] | InvalidEventPayload:
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping):
        return result[1]
    return InvalidEventPayload(
        f"analytics-python returned {type(result).__name__}, not (success, msg)"
    )


def instrument(
    target: object, forwarder: SupportsForward, *, on_error: ErrorCallback | None = None
) -> Instrumentation:
    """Also forward every message ``target`` sends to Segment; return a handle to undo it.

    ``target`` is a ``segment.analytics.client.Client``, or the
    ``segment.analytics`` module itself: its ``track(...)``-style functions are
    hooked, so every call made through the module (``analytics.track(...)``)
    is forwarded, whichever default client it creates. Functions imported
    before instrumenting (``from segment.analytics import track``) are not.

    The host's call is unchanged: same arguments, same ``(success, msg)``
    result, same exceptions from analytics-python. ``msg`` is then forwarded,
    even when ``success`` is False (analytics-python's queue was full): billing
    does not depend on Segment's delivery. Works with ``send=False`` and
    ``sync_mode=True``. A failure on our side never reaches the host's call:
    it goes to ``on_error(error, msg)``, else the forwarder's ``report``
    method if it has one, else the ``lago_segment`` logger.

    Instrumenting a target several times is allowed; each forwarder receives a
    message once, and the target is restored when every handle is undone.

    Raises ``ModuleNotFoundError`` when segment-analytics-python is missing, and
    ``TypeError`` for any other kind of target.
    """
    module, client_class = _import_analytics()
    if not (target is module or isinstance(target, client_class)):
        raise TypeError(
            "instrument() takes a segment.analytics Client or the segment.analytics module, "
            f"not {type(target).__name__}"
        )
    with _lock:
        hook = _hooks.get(target)
        if hook is None:
            hook = _hooks[target] = _Hook(target)
        handle = Instrumentation(hook, target, forwarder, error_reporter(forwarder, on_error))
        hook.handles = (*hook.handles, handle)
    return handle


def _import_analytics() -> tuple[types.ModuleType, type]:
    try:
        import segment.analytics as module  # type: ignore[import-untyped]
        from segment.analytics.client import Client  # type: ignore[import-untyped]
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "lago_segment.integrations.analytics needs segment-analytics-python: "
            "pip install 'lago-segment[analytics]'",
            name=exc.name,
        ) from exc
    return module, Client
