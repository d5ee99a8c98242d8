"""What ``MappingSpec.explain`` returns: per rule, did it match, and why each field is so."""

from __future__ import annotations

from typing import Any

import attrs

from lago_segment.lago import LagoEvent

from ._paths import show

__all__ = ["Explanation", "FieldExplanation", "RuleExplanation"]


@attrs.frozen(slots=True)
class FieldExplanation:
    """One Lago field of one rule: its value, or why it has none.

    ``value`` is what the mapping produced (``None`` when ``resolved`` is
    false); ``reason`` says why the field is unresolved or invalid, or how a
    default was applied.
    """

    name: str
    """The Lago field, ``properties.<name>`` for a property."""
    source: str
    """The spec value, as JSON (``"(default)"`` for a default)."""
    resolved: bool
    """Whether the value resolved (an unresolved optional field is omitted)."""
    value: Any = None
    """The resolved value."""
    reason: str | None = None
    """Why the field is unresolved, invalid or defaulted."""

    def __str__(self) -> str:
        shown = show(self.value) if self.resolved else "(unresolved)"
        text = f"{self.name} = {shown}"
        if self.source:
            text += f"    <- {self.source}"
        if self.reason:
            text += f"    [{self.reason}]"
        return text


@attrs.frozen(slots=True)
class RuleExplanation:
    """One rule against one event."""

    rule: str
    """The rule's name."""
    when: str
    """The rule's trigger."""
    matched: bool
    """Whether the trigger matched."""
    failed_condition: str | None
    """When it did not match: the condition that failed, with the value it saw."""
    fields: tuple[FieldExplanation, ...]
    """Each Lago field (evaluated even when the trigger failed, to help write the rule)."""
    event: LagoEvent | None
    """The Lago event the rule produced (only when it matched and mapped)."""
    error: str | None
    """Why a matching rule could not build a Lago event (``map`` raises it)."""

    def __str__(self) -> str:
        if self.matched:
            status = "MATCHED" if self.error is None else "MATCHED, but FAILS"
            head = f'rule "{self.rule}": {status}  (when {self.when})'
        else:
            head = f'rule "{self.rule}": no match  (when {self.when})'
        lines = [head]
        if self.failed_condition is not None:
            lines.append(f"    failed: {self.failed_condition}")
        if self.error is not None:
            lines.append(f"    error: {self.error}")
        lines.extend(f"    {f}" for f in self.fields)
        return "\n".join(lines)


@attrs.frozen(slots=True)
class Explanation:
    """Why an event did (or did not) become Lago events; ``str()`` renders a report.

    >>> print(spec.explain(event))  # doctest: +SKIP
    event msg-1 (track "API Call"): 1 of 3 rules matched, 1 Lago event
    rule "api_calls": MATCHED  (when type = "track" and event = "API Call")
        code = "api_calls"    <- "api_calls"
        ...
    """

    message_id: str | None
    """The Segment messageId."""
    summary: str
    """The event's type (and event name, for a track)."""
    rules: tuple[RuleExplanation, ...]
    """One explanation per rule, in spec order."""

    @property
    def events(self) -> list[LagoEvent]:
        """The Lago events ``map`` returns for this event (when it raises nothing)."""
        return [r.event for r in self.rules if r.event is not None]

    @property
    def matched(self) -> list[str]:
        """The names of the rules whose trigger matched."""
        return [r.rule for r in self.rules if r.matched]

    def __str__(self) -> str:
        n = len(self.matched)
        events = len(self.events)
        head = (
            f"event {self.message_id} ({self.summary}): {n} of {len(self.rules)} "
            f"rule{'s' if len(self.rules) != 1 else ''} matched, "
            f"{events} Lago event{'s' if events != 1 else ''}"
        )
        return "\n".join([head, *(str(r) for r in self.rules)])
