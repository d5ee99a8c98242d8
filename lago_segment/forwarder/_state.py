"""Everything one forwarder knows, without sockets: :class:`ForwardingState`.

It holds the options, the handlers, the queue (a
:class:`~lago_segment.forwarder._stores.Store`), the counters and the senders'
bookkeeping, and the I/O-free steps over them, each in the module of its side:

- :mod:`~lago_segment.forwarder._intake`: a Segment event in, queued Lago events out;
- :mod:`~lago_segment.forwarder._sender_flow`: the senders' flow (:class:`Idle` /
  :class:`Send` steps), batches in flight, pausing on a 429;
- :mod:`~lago_segment.forwarder._outcomes`: what a batch's result means for each event;
- :mod:`~lago_segment.forwarder._records`: the counters and ``on_error`` reports.

The shells (:class:`~lago_segment.forwarder.Forwarder`, threads;
:class:`~lago_segment.forwarder.AsyncForwarder`, asyncio tasks) add only the
senders and the waiting.
"""

from __future__ import annotations

import threading

from lago_segment import _metrics
from lago_segment.forwarder._handlers import Handler
from lago_segment.forwarder._intake import Intake
from lago_segment.forwarder._options import ForwarderOptions
from lago_segment.forwarder._records import COUNTERS
from lago_segment.forwarder._sender_flow import Senders
from lago_segment.forwarder._stores import Store


class ForwardingState(Intake, Senders):
    """One forwarder's state and its I/O-free steps: mapping, senders' decisions,
    outcomes, counters.

    Built from validated :class:`~lago_segment.forwarder._options.ForwarderOptions`
    and the ``store`` they asked for; the options it reads on every event are
    copied onto it. The shells run :meth:`sender` flows, up to ``max_in_flight``
    of them, and :meth:`map_flow`; they only wait and post.
    """

    def __init__(self, options: ForwarderOptions, store: Store) -> None:
        self.options = options
        self.spec = options.spec
        self.settings = options.handler_settings
        self.callbacks = options.callbacks
        self.store = store
        self.batch_size = options.batch_size
        self.on_full = options.on_full
        self.raise_mapping_errors = options.mapping_errors == "raise"
        self.handler_retry = options.handler_retry
        self.sleep = options.sleep
        self.flush_interval = options.flush_interval
        self.max_in_flight = options.max_in_flight
        self.clock = options.clock
        self.handlers: dict[str, Handler] = {}
        self.closed = False
        self.pauses = True
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()
        self.metrics = _metrics.for_forwarder(self)
        self._reset_senders()

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks and counters, the parent's events forgotten."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self.store.after_fork()
        self._reset_senders()
