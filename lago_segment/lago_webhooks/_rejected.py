"""What an ``events.errors`` webhook reports: one :class:`RejectedEvent` per transaction id.

Lago names the events it refused to bill by transaction id only; this module
turns its lists into records, each traced back to the Segment messageId and
the mapping rule it derives from (:func:`trace_transaction_id`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from lago_segment.mapping import MappingSpec

__all__ = [
    "REASONS",
    "RejectedCallback",
    "RejectedEvent",
    "rejected_events",
    "trace_transaction_id",
]

REASONS: tuple[str, ...] = (
    "invalid_code",
    "missing_aggregation_property",
    "missing_group_key",
    "invalid_filter_values",
)
"""The lists of an ``events.errors`` webhook, in the order they are reported.

``missing_group_key`` is a legacy list Lago sends as ``null``; should it ever
hold ids, they are reported with that reason too.
"""

_RULE_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


@attrs.frozen(slots=True)
class RejectedEvent:
    """One event Lago accepted, then refused to bill (from an ``events.errors`` webhook)."""

    reason: str
    """Lago's reason: ``invalid_code`` (no billable metric has the event's code),
    ``missing_aggregation_property`` (the metric's ``field_name`` is missing or not
    numeric) or ``invalid_filter_values`` (a filter key with a value the metric
    does not list)."""
    transaction_id: str
    """The event's transaction_id, as Lago reported it."""
    message_id: str | None = None
    """The Segment messageId it derives from (see :func:`trace_transaction_id`)."""
    rule: str | None = None
    """The mapping rule that produced it, when the transaction_id tells."""
    webhook_id: str | None = None
    """The webhook's ``X-Lago-Unique-Key``."""
    organization_id: str | None = None
    """The Lago organization the webhook came from."""


#: What receives each :class:`RejectedEvent` (it may raise: Lago then retries the webhook).
RejectedCallback = Callable[[RejectedEvent], None]


def trace_transaction_id(
    transaction_id: str, spec: MappingSpec | None = None
) -> tuple[str | None, str | None]:
    """The Segment messageId and the rule name a transaction_id was derived from.

    The mapping spec derives transaction ids this way (and must keep doing so:
    a new derivation would give a replayed event a new id, and Lago would bill
    it twice): the messageId when one rule matches an event, and
    ``"<messageId>:<rule name>"`` when several do. Rule names cannot hold a
    ``:``, so the last ``:`` splits the two.

    With the ``spec`` that produced the id, the split is made only when the
    suffix names one of its rules, and a spec of a single rule names it. A rule
    that sets ``transaction_id`` itself makes ids the library cannot trace:
    those come back as ``(None, None)`` when the spec has no rule left that
    uses the default. Without a spec, an id whose tail looks like a rule name is
    split, anything else is taken as a messageId (``rule`` None).

    >>> trace_transaction_id("ajs-1f2e")
    ('ajs-1f2e', None)
    >>> trace_transaction_id("ajs-1f2e:api-calls")
    ('ajs-1f2e', 'api-calls')
    """
    head, colon, tail = transaction_id.rpartition(":")
    if spec is None:
        if colon and head and tail and len(tail) <= 64 and set(tail) <= _RULE_NAME:
            return head, tail
        return transaction_id, None
    rules = spec.rules
    defaults = [r.name for r in rules if "transaction_id" not in r.source]
    if colon and head and tail in {r.name for r in rules}:
        return head, tail
    if not defaults:
        return None, None
    return transaction_id, (rules[0].name if len(rules) == 1 else None)


def rejected_events(
    data: Mapping[str, Any], unique: str | None, spec: MappingSpec | None
) -> tuple[RejectedEvent, ...]:
    """The records of an ``events.errors`` webhook's ``data``, in :data:`REASONS` order.

    ``unique`` is the webhook's ``X-Lago-Unique-Key``; a transaction id listed
    twice under one reason is reported once.
    """
    lists = data.get("events_errors")
    if not isinstance(lists, Mapping):
        return ()
    organization = data.get("organization_id")
    organization = organization if isinstance(organization, str) else None
    records = []
    for reason in (*REASONS, *sorted(k for k in lists if k not in REASONS)):
        ids = lists.get(reason)
        if not isinstance(ids, list):
            continue
        for tx in dict.fromkeys(i for i in ids if isinstance(i, str)):
            message_id, rule = trace_transaction_id(tx, spec)
            records.append(RejectedEvent(reason, tx, message_id, rule, unique, organization))
    return tuple(records)
