"""MappingSpec: a compiled spec, routing each event to its rules and mapping or explaining it.

Loading (text, parsing, checking every problem at once) is in :mod:`._load`;
compiling one rule into a :class:`Rule` is in :mod:`._rules`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from lago_segment.errors import MappingError, SpecError
from lago_segment.events import SegmentEvent, parse_event
from lago_segment.lago import LagoEvent

from ._explain import Explanation, RuleExplanation
from ._load import check_spec, decode_text, parse_json, parse_toml
from ._model import MappingDocument
from ._rules import Rule

__all__ = ["MappingSpec"]

_Route = tuple[Callable[[Mapping[str, Any]], bool], Rule]


@attrs.frozen(slots=True, eq=False)
class MappingSpec:
    """A declarative mapping from Segment events to Lago events.

    A spec is a list of named rules; each has a trigger (``when``, in FQL) and
    the Lago fields as mapping-kit values. Load it with :meth:`from_dict`,
    :meth:`from_json`, :meth:`from_toml` or :meth:`load`; every problem in the
    spec is reported at once in one :class:`~lago_segment.MappingError`.

    >>> spec = MappingSpec.from_dict({"rules": [{
    ...     "name": "api_calls",
    ...     "when": 'type = "track" and event = "API Call"',
    ...     "code": "api_calls",
    ...     "external_subscription_id": {"@path": "$.context.groupId"},
    ... }]})
    >>> [e.code for e in spec.map({
    ...     "type": "track", "event": "API Call", "userId": "u1", "messageId": "m1",
    ...     "timestamp": "2024-05-01T12:00:00Z", "context": {"groupId": "sub_1"},
    ... })]
    ['api_calls']
    """

    rules: tuple[Rule, ...]
    """The compiled rules, in spec order."""
    document: MappingDocument = attrs.field(repr=False)
    """The spec as typed data (:class:`MappingDocument`), as loaded or built."""
    # Routing, computed once: rules whose trigger starts with `type = "x" and`
    # are only tested (on the rest of their trigger) for events of type "x".
    _routes: Mapping[str, tuple[_Route, ...]] = attrs.field(repr=False, alias="routes")
    _untyped: tuple[_Route, ...] = attrs.field(repr=False, alias="untyped")
    _all: tuple[_Route, ...] = attrs.field(repr=False, alias="all")

    @classmethod
    def _from_rules(cls, rules: Sequence[Rule], document: MappingDocument) -> MappingSpec:
        split = [(rule, *rule._condition.split_type()) for rule in rules]
        types = {kind for _, kind, _ in split if kind is not None}
        routes = {
            kind: tuple((rest, rule) for rule, k, rest in split if k in (kind, None))
            for kind in types
        }
        untyped = tuple((rest, rule) for rule, k, rest in split if k is None)
        everything = tuple((rule._condition.test, rule) for rule in rules)
        return cls(tuple(rules), document, routes=routes, untyped=untyped, all=everything)

    # --- loading --------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "spec") -> MappingSpec:
        """Validate and compile a spec given as a dict: ``{"rules": [...]}``.

        Raises :class:`~lago_segment.errors.SpecError` (a
        :class:`~lago_segment.MappingError`) listing every problem with its
        location and the rule's name (``rules[1].properties.gb (rule "api"):
        unknown directive "@pathh" (did you mean "@path"?)``). Warns
        :class:`AmbiguousFQLWarning` for a trigger mixing ``and``/``or``
        without parentheses.
        """
        return cls._from_rules(*check_spec(data, source, None))

    @classmethod
    def from_document(cls, document: MappingDocument) -> MappingSpec:
        """Compile a spec built in Python from :class:`MappingDocument` and :class:`RuleDocument`.

        It is checked exactly as a loaded one (the same errors).

        >>> from lago_segment.mapping import MappingDocument, RuleDocument
        >>> doc = MappingDocument(rules=[RuleDocument(
        ...     name="api_calls", when='type = "track"', code="api_calls",
        ...     external_subscription_id={"@path": "$.context.groupId"})])
        >>> MappingSpec.from_document(doc).to_dict()["rules"][0]["code"]
        'api_calls'
        """
        from ._structure import unstructure

        return cls._from_rules(*check_spec(unstructure(document), "spec", None))

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "spec") -> MappingSpec:
        """Load a spec from JSON text (``str`` or UTF-8 ``bytes``).

        Errors give the line and column: ``spec.json:7:21: rules[0].when (rule
        "api"): ...``.
        """
        text = decode_text(text, source)
        from ._text import locate_json

        data = parse_json(text, source)
        return cls._from_rules(*check_spec(data, source, lambda path: locate_json(text, path)))

    @classmethod
    def from_toml(cls, text: str | bytes, *, source: str = "spec") -> MappingSpec:
        """Load a spec from TOML text (``[[rules]]`` tables); errors give line and column.

        Uses :mod:`tomllib` (Python 3.11+), or the ``tomli`` package on 3.10.
        """
        text = decode_text(text, source)
        from ._text import locate_toml

        data = parse_toml(text, source)
        return cls._from_rules(*check_spec(data, source, lambda path: locate_toml(text, path)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MappingSpec:
        """Load a spec file, JSON or TOML by its suffix (``.json``, ``.toml``)."""
        file = Path(path)
        suffix = file.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise SpecError(f"{file}: unknown spec format {suffix!r}; use .json or .toml")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{file}: cannot read the spec: {exc}") from None
        if suffix == ".json":
            return cls.from_json(text, source=str(file))
        return cls.from_toml(text, source=str(file))

    # --- the document -----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The normalized spec document: ``{"version": 1, "rules": [...]}``.

        Optional fields that are unset are left out; :meth:`from_dict` of the
        result gives an equal spec.
        """
        from ._structure import unstructure

        return unstructure(self.document)

    def to_json(self) -> str:
        """The normalized spec as JSON text (what ``lago-segment check --format json`` prints)."""
        data = self.to_dict()
        try:
            text = json.dumps(data, indent=2, ensure_ascii=False)
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: keep it escaped
            text = json.dumps(data, indent=2)
        return text + "\n"

    def to_toml(self) -> str:
        """The normalized spec as TOML text (``lago-segment check --format toml``).

        Raises :class:`~lago_segment.errors.SpecError` when the spec holds a
        value TOML cannot write (``null``, a lone surrogate): use JSON then.
        """
        from ._text import NotTOML, toml_document

        try:
            return toml_document(self.to_dict())
        except NotTOML as exc:
            raise SpecError(f"{exc}; write the spec as JSON instead") from None

    def __eq__(self, other: object) -> bool:
        """Two specs are equal when their documents are."""
        if not isinstance(other, MappingSpec):
            return NotImplemented
        return self.document == other.document

    __hash__ = None  # type: ignore[assignment]

    # --- mapping --------------------------------------------------------

    def map(self, event: SegmentEvent | Mapping[str, Any] | str | bytes) -> list[LagoEvent]:
        """The Lago events for one Segment event (empty when no rule matches).

        ``event`` is a :class:`~lago_segment.events.SegmentEvent` or a raw
        Segment message (parsed with :func:`~lago_segment.events.parse_event`,
        so a malformed one raises :class:`~lago_segment.InvalidEventPayload`).

        Defaults: ``transaction_id`` is the messageId, ``timestamp`` the
        event's effective timestamp. When several rules match, a rule without
        an explicit ``transaction_id`` gets ``"<messageId>:<rule name>"``.
        A matching rule that cannot build a valid Lago event raises
        :class:`~lago_segment.MappingError` naming the rule, field and messageId;
        then none of the event's Lago events is returned (all or nothing, so a
        replay after the fix yields the same ids for every rule).
        """
        parsed = event if isinstance(event, SegmentEvent) else parse_event(event)
        payload = parsed.payload
        kind = payload.get("type")
        routes = self._routes.get(kind, self._untyped) if kind.__class__ is str else self._all
        matched = [rule for test, rule in routes if test(payload)]
        if not matched:
            return []
        message_id = parsed.message_id
        timestamp = parsed.effective_timestamp
        if len(matched) == 1:
            rule = matched[0]
            return [rule._builder(rule, payload, message_id, timestamp, message_id)]
        events = [
            rule._builder(rule, payload, _multi_tid(message_id, rule), timestamp, message_id)
            for rule in matched
        ]
        if len({(e.transaction_id, e.external_subscription_id) for e in events}) < len(events):
            _check_distinct(matched, events, message_id)
        return events

    def explain(self, event: SegmentEvent | Mapping[str, Any] | str | bytes) -> Explanation:
        """Why ``event`` maps (or not): per rule, the failed condition and each field.

        A matching rule that cannot build a Lago event does not raise here: its
        error is in the explanation (``RuleExplanation.error``). ``str()`` of
        the result is a readable report.
        """
        parsed = _parse(event)
        payload = parsed.payload
        message_id = parsed.message_id
        timestamp = parsed.effective_timestamp
        matched = [rule for test, rule in self._all if test(payload)]
        many = len(matched) > 1
        events: dict[str, LagoEvent] = {}
        errors: dict[str, str] = {}
        for rule in matched:
            tid = _multi_tid(message_id, rule) if many else message_id
            try:
                events[rule.name] = rule._build(payload, tid, timestamp, message_id)
            except MappingError as exc:
                errors[rule.name] = str(exc)
        if many and not errors:
            try:
                _check_distinct(matched, [events[r.name] for r in matched], message_id)
            except MappingError as exc:
                failed = str(exc.rule)
                errors[failed] = str(exc)
                del events[failed]
        rules = tuple(
            RuleExplanation(
                rule=rule.name,
                when=rule.when,
                matched=rule.name in events or rule.name in errors,
                failed_condition=rule._condition.first_failure(payload),
                fields=rule._explain_fields(payload),
                event=events.get(rule.name),
                error=errors.get(rule.name),
            )
            for rule in self.rules
        )
        summary = str(payload.get("type"))
        if payload.get("type") == "track":
            summary += f" {json.dumps(payload.get('event'), ensure_ascii=False)}"
        return Explanation(message_id, summary, rules)


def _multi_tid(message_id: str | None, rule: Rule) -> str | None:
    """The default transaction_id of a rule when several rules match one event."""
    return None if message_id is None else f"{message_id}:{rule.name}"


def _check_distinct(
    rules: Sequence[Rule], events: Sequence[LagoEvent], message_id: str | None
) -> None:
    # Lago keeps one event per (transaction_id, subscription): a clash would
    # silently lose one of them.
    seen: dict[tuple[str, str], str] = {}
    for rule, event in zip(rules, events, strict=True):
        key = (event.transaction_id, event.external_subscription_id)
        if key in seen:
            raise rule._fail(
                "transaction_id",
                f"{event.transaction_id!r} is also the transaction_id of rule "
                f'"{seen[key]}" for the same subscription; Lago would keep only one',
                message_id,
            )
        seen[key] = rule.name


def _parse(event: Any) -> SegmentEvent:
    return event if isinstance(event, SegmentEvent) else parse_event(event)
