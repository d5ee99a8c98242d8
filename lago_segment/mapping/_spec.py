"""MappingSpec: load, validate (every error at once), compile, map, explain."""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from lago_segment._events import _parse_iso
from lago_segment.errors import InvalidLagoEvent, MappingError
from lago_segment.events import SegmentEvent, parse_event
from lago_segment.lago import LagoEvent

from ._directives import Compiler, Resolver, Unconvertible
from ._explain import Explanation, FieldExplanation, RuleExplanation
from ._fql import AmbiguousFQLWarning, Condition, FQLSyntaxError, parse_fql, suggest
from ._paths import MISSING, show

__all__ = ["MAX_PROPERTIES", "MAX_RULES", "MappingSpec", "Rule"]

#: The most rules one spec may hold.
MAX_RULES = 1000
#: The most properties one rule may map.
MAX_PROPERTIES = 200

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_REQUIRED = ("name", "when", "code", "external_subscription_id")
_OPTIONAL = (
    "description",
    "transaction_id",
    "timestamp",
    "properties",
    "precise_total_amount_cents",
)
_RULE_KEYS = _REQUIRED + _OPTIONAL
_SPEC_KEYS = ("rules", "version")
_SECONDS = re.compile(r"\d{1,12}(?:\.\d{1,9})?")


def _to_timestamp(value: Any) -> Any:
    """A mapped timestamp as LagoEvent takes it: aware datetime or Unix seconds."""
    if value is None:
        return MISSING
    if value is MISSING or isinstance(value, (datetime, Decimal)):
        return value
    cls = value.__class__
    if cls is int or cls is float:
        return value
    if cls is str:
        text = value.strip()
        if _SECONDS.fullmatch(text):
            return Decimal(text)
        # The same reading as the events' own timestamps (naive means UTC).
        parsed = _parse_iso(text)
        if parsed is not None:
            return parsed
    raise Unconvertible(f"{show(value)} is neither Unix seconds nor an ISO-8601 instant")


@attrs.frozen(slots=True, eq=False)
class _Field:
    name: str  # "code", "properties.<key>", ...
    key: str  # the key in the LagoEvent's arguments or properties
    source: str  # the spec value, as JSON, for messages
    resolve: Resolver


_Route = tuple[Callable[[Mapping[str, Any]], bool], "Rule"]
_Builder = Callable[
    ["Rule", Mapping[str, Any], "str | None", "datetime | None", "str | None"], LagoEvent
]


def _constant_missing(_payload: Mapping[str, Any]) -> Any:
    return MISSING


def _make_builder(fields: Sequence[_Field], properties: tuple[_Field, ...] | _Field) -> _Builder:
    """One closure per rule that resolves its fields in a fixed order and builds the event.

    Specialised once so the per-event path is straight-line code: no dict of
    fields, no lookups by name, no exceptions unless something is wrong.
    """
    by_name = {f.name: f.resolve for f in fields}
    code_fn = by_name["code"]
    sub_fn = by_name["external_subscription_id"]
    tid_fn = by_name.get("transaction_id")
    ts_fn = by_name.get("timestamp")
    amount_fn = by_name.get("precise_total_amount_cents")
    prop_items = (
        tuple((f.name, f.key, f.resolve) for f in properties)
        if isinstance(properties, tuple)
        else None
    )
    props_fn = properties.resolve if isinstance(properties, _Field) else _constant_missing

    def build(
        rule: Rule,
        payload: Mapping[str, Any],
        default_tid: str | None,
        default_ts: datetime | None,
        message_id: str | None,
    ) -> LagoEvent:
        field = "code"
        try:
            code = code_fn(payload)
            field = "external_subscription_id"
            sub = sub_fn(payload)
            if tid_fn is None:
                tid = default_tid
            else:
                field = "transaction_id"
                tid = tid_fn(payload)
                if tid is MISSING:
                    tid = default_tid
            field = "timestamp"
            if ts_fn is None:
                ts = default_ts
            else:
                ts = _to_timestamp(ts_fn(payload))
                if ts is MISSING:
                    ts = default_ts
            if amount_fn is None:
                amount = None
            else:
                field = "precise_total_amount_cents"
                amount = amount_fn(payload)
                if amount is MISSING:
                    amount = None
            if prop_items is not None:
                props = {}
                for field, key, fn in prop_items:  # noqa: B007 (read by the except)
                    value = fn(payload)
                    if value is not MISSING:
                        props[key] = value
            else:
                field = "properties"
                props = props_fn(payload)
                if props is MISSING:
                    props = {}
        except Unconvertible as exc:
            raise rule._fail(field, str(exc), message_id) from None
        if code is MISSING or sub is MISSING or tid is None or ts is None:
            for field, value in (
                ("code", code),
                ("external_subscription_id", sub),
                ("transaction_id", tid),
                ("timestamp", ts),
            ):
                if value is MISSING or value is None:
                    raise rule._missing(field, message_id)
            raise AssertionError("unreachable: one of the fields above is missing")
        try:
            return LagoEvent(tid, sub, code, ts, props, amount)
        except InvalidLagoEvent as exc:
            raise rule._fail(exc.field, exc.problem, message_id) from None

    return build


@attrs.frozen(slots=True, eq=False)
class Rule:
    """One compiled rule: a trigger and the Lago fields it builds.

    Built by :class:`MappingSpec` from the spec's ``rules`` list; ``source``
    is the rule as written.
    """

    name: str
    """Unique within the spec; the suffix of the transaction_id on multiple matches."""
    when: str
    """The FQL trigger."""
    description: str | None
    """Free text for humans."""
    source: Mapping[str, Any] = attrs.field(repr=False)
    """The rule as written in the spec."""
    _condition: Condition = attrs.field(repr=False, alias="condition")
    _fields: tuple[_Field, ...] = attrs.field(repr=False, alias="fields")
    _properties: tuple[_Field, ...] | _Field = attrs.field(repr=False, alias="properties")
    _builder: _Builder = attrs.field(repr=False, alias="builder")

    def matches(self, event: SegmentEvent | Mapping[str, Any]) -> bool:
        """Whether this rule's trigger matches ``event`` (a SegmentEvent or its wire dict)."""
        payload = event if isinstance(event, Mapping) else event.payload
        return self._condition.test(payload)

    def _fail(self, field: str, problem: str, message_id: str | None) -> MappingError:
        return MappingError(
            f'rule "{self.name}": {field}: {problem} (messageId {message_id!r})',
            rule=self.name,
            field=field,
            message_id=message_id,
        )

    def _build(
        self,
        payload: Mapping[str, Any],
        transaction_id: str | None,
        timestamp: datetime | None,
        message_id: str | None,
    ) -> LagoEvent:
        """Resolve every field and build the LagoEvent; errors name rule, field, messageId."""
        return self._builder(self, payload, transaction_id, timestamp, message_id)

    def _missing(self, field: str, message_id: str | None) -> MappingError:
        if field == "transaction_id":
            return self._fail(
                field, "the event has no messageId; map a transaction_id explicitly", message_id
            )
        if field == "timestamp":
            return self._fail(
                field,
                "the event has no timestamp, originalTimestamp, receivedAt or sentAt",
                message_id,
            )
        source = next(f.source for f in self._fields if f.name == field)
        return self._fail(field, f"{source} resolved to nothing", message_id)

    def _explain_fields(self, payload: Mapping[str, Any]) -> tuple[FieldExplanation, ...]:
        out = []
        fields = self._properties if isinstance(self._properties, tuple) else (self._properties,)
        for f in (*self._fields, *fields):
            try:
                value = f.resolve(payload)
            except Unconvertible as exc:
                out.append(FieldExplanation(f.name, f.source, False, reason=str(exc)))
                continue
            if value is MISSING:
                optional = f.name not in ("code", "external_subscription_id")
                reason = "omitted" if optional else "required, but resolved to nothing"
                out.append(FieldExplanation(f.name, f.source, False, reason=reason))
            else:
                out.append(FieldExplanation(f.name, f.source, True, value))
        return tuple(out)


def _load_toml(text: str, where: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 has no tomllib
        try:
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise MappingError(
                f"{where}: reading TOML needs Python 3.11+ (tomllib) or the 'tomli' package "
                "on Python 3.10; install tomli or write the spec as JSON"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{where}: invalid TOML: {exc}") from None


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MappingError(f"{where}: invalid JSON: {exc}") from None


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
    # Routing, computed once: rules whose trigger starts with `type = "x" and`
    # are only tested (on the rest of their trigger) for events of type "x".
    _routes: Mapping[str, tuple[_Route, ...]] = attrs.field(repr=False, alias="routes")
    _untyped: tuple[_Route, ...] = attrs.field(repr=False, alias="untyped")
    _all: tuple[_Route, ...] = attrs.field(repr=False, alias="all")

    @classmethod
    def _from_rules(cls, rules: Sequence[Rule]) -> MappingSpec:
        split = [(rule, *rule._condition.split_type()) for rule in rules]
        types = {kind for _, kind, _ in split if kind is not None}
        routes = {
            kind: tuple((rest, rule) for rule, k, rest in split if k in (kind, None))
            for kind in types
        }
        untyped = tuple((rest, rule) for rule, k, rest in split if k is None)
        everything = tuple((rule._condition.test, rule) for rule in rules)
        return cls(tuple(rules), routes=routes, untyped=untyped, all=everything)

    # --- loading --------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "spec") -> MappingSpec:
        """Validate and compile a spec given as a dict: ``{"rules": [...]}``.

        Raises :class:`~lago_segment.MappingError` listing every problem with its
        location (``rules[1].properties.gb: unknown directive "@pathh" (did you
        mean "@path"?)``). Warns :class:`AmbiguousFQLWarning` for a trigger
        mixing ``and``/``or`` without parentheses.
        """
        compiler = Compiler()
        errors = compiler.errors
        if not isinstance(data, Mapping):
            raise MappingError(f'{source}: must be an object with a "rules" list')
        for key in data:
            if key not in _SPEC_KEYS:
                errors.append(f"{key}: unknown key{suggest(str(key), _SPEC_KEYS)}")
        version = data.get("version", 1)
        if version != 1 or isinstance(version, bool):
            errors.append(f"version: unsupported version {version!r} (expected 1)")
        raw_rules = data.get("rules")
        rules: list[Rule] = []
        if not isinstance(raw_rules, list) or not raw_rules:
            errors.append("rules: must be a non-empty list of rules")
        elif len(raw_rules) > MAX_RULES:
            errors.append(f"rules: more than {MAX_RULES} rules")
        else:
            names: set[str] = set()
            for i, raw in enumerate(raw_rules):
                rule = _compile_rule(compiler, raw, f"rules[{i}]", names)
                if rule is not None:
                    rules.append(rule)
        if errors:
            raise MappingError([f"{source}: {e}" if source != "spec" else e for e in errors])
        return cls._from_rules(rules)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "spec") -> MappingSpec:
        """Load a spec from JSON text."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return cls.from_dict(_load_json(text, source), source=source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "spec") -> MappingSpec:
        """Load a spec from TOML text (``[[rules]]`` tables).

        Uses :mod:`tomllib` (Python 3.11+), or the ``tomli`` package on 3.10.
        """
        return cls.from_dict(_load_toml(text, source), source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MappingSpec:
        """Load a spec file, JSON or TOML by its suffix (``.json``, ``.toml``)."""
        file = Path(path)
        suffix = file.suffix.lower()
        if suffix not in (".json", ".toml"):
            raise MappingError(f"{file}: unknown spec format {suffix!r}; use .json or .toml")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"{file}: cannot read the spec: {exc}") from None
        if suffix == ".json":
            return cls.from_json(text, source=str(file))
        return cls.from_toml(text, source=str(file))

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


def _compile_rule(compiler: Compiler, raw: Any, loc: str, names: set[str]) -> Rule | None:
    errors = compiler.errors
    before = len(errors)
    if not isinstance(raw, Mapping):
        errors.append(f"{loc}: must be an object, not {type(raw).__name__}")
        return None
    for key in raw:
        if key not in _RULE_KEYS:
            errors.append(f"{loc}.{key}: unknown key{suggest(str(key), _RULE_KEYS)}")
    for key in _REQUIRED:
        if key not in raw:
            errors.append(f'{loc}: missing required key "{key}"')
    name = raw.get("name")
    if "name" in raw:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            errors.append(
                f"{loc}.name: must be 1-64 characters among letters, digits, '_', '.', '-'"
            )
        elif name in names:
            errors.append(f'{loc}.name: duplicate rule name "{name}"')
        else:
            names.add(name)
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        errors.append(f"{loc}.description: must be a string")
    condition = _compile_when(raw.get("when"), f"{loc}.when", errors) if "when" in raw else None
    fields = []
    for key in (
        "code",
        "external_subscription_id",
        "transaction_id",
        "timestamp",
        "precise_total_amount_cents",
    ):
        if key in raw:
            fields.append(
                _Field(key, key, show(raw[key]), compiler.compile(raw[key], f"{loc}.{key}"))
            )
    properties: tuple[_Field, ...] | _Field = ()
    if "properties" in raw:
        props = raw["properties"]
        ploc = f"{loc}.properties"
        if isinstance(props, Mapping) and not any(str(k).startswith("@") for k in props):
            if len(props) > MAX_PROPERTIES:
                errors.append(f"{ploc}: more than {MAX_PROPERTIES} properties")
            for k in props:
                if not isinstance(k, str) or not k.strip():
                    errors.append(f"{ploc}: property names must be non-empty strings, not {k!r}")
            properties = tuple(
                _Field(f"properties.{k}", str(k), show(v), compiler.compile(v, f"{ploc}.{k}"))
                for k, v in props.items()
            )
        elif isinstance(props, Mapping):
            resolver = compiler.compile(props, ploc)
            properties = _Field("properties", "properties", show(props), resolver)
        else:
            errors.append(f"{ploc}: must be an object of property values, or a directive")
    if len(errors) > before or condition is None or not isinstance(name, str):
        return None
    return Rule(
        name,
        raw["when"],
        description,
        raw,
        condition=condition,
        fields=tuple(fields),
        properties=properties,
        builder=_make_builder(fields, properties),
    )


def _compile_when(when: Any, loc: str, errors: list[str]) -> Condition | None:
    if not isinstance(when, str):
        errors.append(f"{loc}: must be an FQL string such as 'type = \"track\"'")
        return None
    try:
        condition, ambiguous = parse_fql(when)
    except FQLSyntaxError as exc:
        errors.append(f"{loc}: {exc} in {when!r}")
        return None
    for message in ambiguous:
        # stacklevel: _compile_when < _compile_rule < from_dict < the caller.
        warnings.warn(f"{loc}: {message}", AmbiguousFQLWarning, stacklevel=4)
    return condition
