"""What a batch's outcome means for each queued event, I/O-free: :class:`Outcomes`.

Delivered and duplicate events are acknowledged; permanent failures are
reported and acknowledged; transient ones are kept for another try when the
store can (a spool), else reported. Also the events ``close()`` gives up on.
"""

from __future__ import annotations

from collections.abc import Sequence

from lago_segment.client._results import BatchResult
from lago_segment.forwarder._records import Bookkeeping, ForwardingFailure
from lago_segment.forwarder._stores import QueuedEvent
from lago_segment.lago import LagoEvent


class Outcomes(Bookkeeping):
    """Settling batches and reporting what was not delivered; a part of
    :class:`~lago_segment.forwarder._state.ForwardingState`."""

    def settle(self, items: Sequence[QueuedEvent], result: BatchResult | Exception) -> int:
        """Apply what Lago said about a batch; return how many events are settled.

        Delivered and duplicate events are acknowledged; permanent failures are
        reported and acknowledged; transient ones (the client's retries ran out)
        are kept for another try when the store can (a spool), else reported.
        """
        if not isinstance(result, Exception) and result.failed:
            # Only failures need their items back (for the report); the client's
            # contract puts every other event in delivered or duplicates.
            try:
                matched = _match_failures(items, result)
            except (KeyError, StopIteration):
                result = RuntimeError("the client reported failures for events not in the batch")
        if isinstance(result, Exception):
            # The client contract says send_batch never raises; a custom or broken
            # client might. Treat it as a transient failure of the whole batch.
            failures: list[tuple[QueuedEvent, BaseException, bool]] = [
                (i, result, False) for i in items
            ]
            delivered = duplicates = retries = 0
        else:
            failures = matched if result.failed else []
            duplicates = len(result.duplicates)
            delivered = len(result.delivered) + duplicates
            retries = result.retries
        transient = [i for i, _, permanent in failures if not permanent]
        kept = bool(transient) and self.store.retry_later(transient)
        kept_ids = {id(i) for i in transient} if kept else set()
        done = [i for i in items if id(i) not in kept_ids]
        self.store.ack(done)
        self.count(
            delivered=delivered,
            duplicates=duplicates,
            failed=len(failures) - len(kept_ids),
            retried=retries + (1 if kept else 0),
        )
        self.metrics.settled(None if isinstance(result, Exception) else result, failures, kept_ids)
        for item, error, _permanent in failures:
            self.report(
                ForwardingFailure(
                    error,
                    "delivery",
                    item.message_id,
                    item.event,
                    item.source,
                    permanent=id(item) not in kept_ids,
                )
            )
        return len(done)

    def report_unsent(self, items: Sequence[QueuedEvent], error: Exception) -> None:
        """Events close() gives up on (memory mode): counted failed, reported once each."""
        if not items:
            return
        self.store.ack(items)
        self.count(failed=len(items))
        self.metrics.items("failed", items, error)
        for item in items:
            self.report(
                ForwardingFailure(error, "delivery", item.message_id, item.event, item.source)
            )


def _match_failures(
    items: Sequence[QueuedEvent], result: BatchResult
) -> list[tuple[QueuedEvent, BaseException, bool]]:
    """Pair each failure of a :class:`BatchResult` with the queued item it came from."""
    by_id: dict[int, QueuedEvent] = {id(i.event): i for i in items}
    by_key: dict[tuple[str, str], list[QueuedEvent]] = {}
    for i in items:
        by_key.setdefault((i.event.transaction_id, i.event.external_subscription_id), []).append(i)
    seen: set[int] = set()

    def find(event: LagoEvent) -> QueuedEvent:
        item = by_id.get(id(event))
        if item is None or id(item) in seen:
            # The client gave back an equal event, not ours: match on the idempotency key.
            key = (event.transaction_id, event.external_subscription_id)
            item = next(i for i in by_key[key] if id(i) not in seen)
        seen.add(id(item))
        return item

    return [(find(f.event), f.error, f.permanent) for f in result.failed]
