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

from lago_segment._time import parse_iso
from lago_segment.errors import InvalidLagoEvent, MappingError, SpecError
from lago_segment.events import SegmentEvent, parse_event
from lago_segment.lago import LagoEvent

from ._directives import Compiler, Resolver, Unconvertible
from ._explain import Explanation, FieldExplanation, RuleExplanation
from ._fql import AmbiguousFQLWarning, Condition, FQLSyntaxError, parse_fql
from ._model import MappingDocument, RuleDocument
from ._paths import MISSING, show
from ._text import parse_location

__all__ = [
    "MAX_PROPERTIES",
    "MAX_RULES",
    "MappingDocument",
    "MappingSpec",
    "Rule",
    "RuleDocument",
]

#: The most rules one spec may hold.
MAX_RULES = 1000
#: The most properties one rule may map.
MAX_PROPERTIES = 200

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
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
        parsed = parse_iso(text)
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


def _decode(text: str | bytes, where: str) -> str:
    if isinstance(text, str):
        return text
    if not isinstance(text, (bytes, bytearray, memoryview)):
        raise SpecError(f"{where}: a spec is text or bytes, not {type(text).__name__}")
    try:
        return bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{where}: not UTF-8 text (byte {exc.start + 1})") from None


def _load_toml(text: str, where: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 has no tomllib
        try:
            import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise SpecError(
                f"{where}: reading TOML needs Python 3.11+ (tomllib) or the 'tomli' package "
                "on Python 3.10; install tomli or write the spec as JSON"
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # "... (at line 3, column 7)" -> "<where>:3:7: invalid TOML: ..."
        m = re.search(r"\(at line (\d+), column (\d+)\)$", str(exc))
        if m is None:
            raise SpecError(f"{where}: invalid TOML: {exc}") from None
        problem = str(exc)[: m.start()].rstrip()
        raise SpecError(f"{where}:{m[1]}:{m[2]}: invalid TOML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{where}: invalid TOML: nested too deeply") from None


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise SpecError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # pragma: no cover - json raises JSONDecodeError
        raise SpecError(f"{where}: invalid JSON: {exc}") from None


_Locate = Callable[[tuple["str | int", ...]], "tuple[int, int] | None"]


def _show_location(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
        return cls._load(data, source, None)

    @classmethod
    def from_document(cls, document: MappingDocument) -> MappingSpec:
        """Compile a spec built in Python from :class:`MappingDocument` and :class:`RuleDocument`.

        It is checked exactly as a loaded one (the same errors).

        >>> doc = MappingDocument(rules=[RuleDocument(
        ...     name="api_calls", when='type = "track"', code="api_calls",
        ...     external_subscription_id={"@path": "$.context.groupId"})])
        >>> MappingSpec.from_document(doc).to_dict()["rules"][0]["code"]
        'api_calls'
        """
        from ._convert import unstructure

        return cls._load(unstructure(document), "spec", None)

    @classmethod
    def _load(cls, data: Any, source: str, locate: _Locate | None) -> MappingSpec:
        if not isinstance(data, Mapping):
            raise SpecError(f'{source}: must be an object with a "rules" list')
        from ._convert import structure, unstructure

        document, problems = structure(data)
        if document is not None:
            raw_rules: list[Any] = unstructure(document)["rules"]
        else:
            raw = data.get("rules")
            raw_rules = raw if isinstance(raw, list) and len(raw) <= MAX_RULES else []
        # Every problem: (rule index or -1, path, problem), structural ones first per rule.
        found: list[tuple[int, tuple[str | int, ...], str]] = []
        for where, what in problems:
            path, problem = where, what
            if path == () and problem == 'missing required key "rules"':
                path, problem = ("rules",), "must be a non-empty list of rules"
            index = path[1] if len(path) > 1 and path[0] == "rules" else -1
            found.append((index if isinstance(index, int) else -1, path, problem))
        compiler = Compiler()
        names: set[str] = set()
        rule_names: dict[int, str] = {}
        rules: list[Rule] = []
        for i, raw_rule in enumerate(raw_rules):
            if not isinstance(raw_rule, Mapping):
                continue
            name = raw_rule.get("name")
            if isinstance(name, str) and _NAME.fullmatch(name):
                rule_names[i] = name
            before = len(compiler.errors)
            rule = _compile_rule(compiler, raw_rule, f"rules[{i}]", names)
            for error in compiler.errors[before:]:
                location, _, problem = error.partition(": ")
                found.append((i, parse_location(location), problem))
            if rule is not None:
                rules.append(rule)
        found.sort(key=lambda item: item[0])
        if found:
            raise SpecError(
                [_format(source, path, problem, rule_names, locate) for _, path, problem in found]
            )
        assert document is not None
        return cls._from_rules(rules, document)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "spec") -> MappingSpec:
        """Load a spec from JSON text (``str`` or UTF-8 ``bytes``).

        Errors give the line and column: ``spec.json:7:21: rules[0].when (rule
        "api"): ...``.
        """
        text = _decode(text, source)
        from ._text import locate_json

        data = _load_json(text, source)
        return cls._load(data, source, lambda path: locate_json(text, path))

    @classmethod
    def from_toml(cls, text: str | bytes, *, source: str = "spec") -> MappingSpec:
        """Load a spec from TOML text (``[[rules]]`` tables); errors give line and column.

        Uses :mod:`tomllib` (Python 3.11+), or the ``tomli`` package on 3.10.
        """
        text = _decode(text, source)
        from ._text import locate_toml

        data = _load_toml(text, source)
        return cls._load(data, source, lambda path: locate_toml(text, path))

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
        from ._convert import unstructure

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


def _compile_rule(
    compiler: Compiler, raw: Mapping[str, Any], loc: str, names: set[str]
) -> Rule | None:
    """Check and compile one rule's values (its shape was checked by the converter)."""
    errors = compiler.errors
    before = len(errors)
    name = raw.get("name")
    if isinstance(name, str):
        if not _NAME.fullmatch(name):
            errors.append(
                f"{loc}.name: must be 1-64 characters among letters, digits, '_', '.', '-'"
            )
        elif name in names:
            errors.append(f'{loc}.name: duplicate rule name "{name}"')
        else:
            names.add(name)
    when = raw.get("when")
    condition = _compile_when(when, f"{loc}.when", errors) if isinstance(when, str) else None
    fields = []
    for key in (
        "code",
        "external_subscription_id",
        "transaction_id",
        "timestamp",
        "precise_total_amount_cents",
    ):
        if raw.get(key) is not None or (
            key in ("code", "external_subscription_id") and key in raw
        ):
            fields.append(
                _Field(key, key, show(raw[key]), compiler.compile(raw[key], f"{loc}.{key}"))
            )
    properties: tuple[_Field, ...] | _Field = ()
    props = raw.get("properties")
    if isinstance(props, Mapping):
        ploc = f"{loc}.properties"
        if not any(str(k).startswith("@") for k in props):
            if len(props) > MAX_PROPERTIES:
                errors.append(f"{ploc}: more than {MAX_PROPERTIES} properties")
            for k in props:
                if not isinstance(k, str) or not k.strip():
                    errors.append(f"{ploc}: property names must be non-empty strings, not {k!r}")
            properties = tuple(
                _Field(f"properties.{k}", str(k), show(v), compiler.compile(v, f"{ploc}.{k}"))
                for k, v in props.items()
            )
        else:
            resolver = compiler.compile(props, ploc)
            properties = _Field("properties", "properties", show(props), resolver)
    description = raw.get("description")
    if (
        len(errors) > before
        or condition is None
        or not isinstance(name, str)
        or not isinstance(when, str)
        or not {"code", "external_subscription_id"} <= raw.keys()
    ):
        return None
    return Rule(
        name,
        when,
        description if isinstance(description, str) else None,
        raw,
        condition=condition,
        fields=tuple(fields),
        properties=properties,
        builder=_make_builder(fields, properties),
    )


def _format(
    source: str,
    path: tuple[str | int, ...],
    problem: str,
    rule_names: Mapping[int, str],
    locate: _Locate | None,
) -> str:
    """One load error: ``[file:line:col: ]rules[0].when (rule "api"): problem``."""
    where = _show_location(path)
    if len(path) > 1 and path[0] == "rules" and path[1] in rule_names:
        where += f' (rule "{rule_names[path[1]]}")'  # type: ignore[index]
    text = f"{where}: {problem}" if where else problem
    position = locate(path) if locate is not None else None
    if position is not None:
        return f"{source}:{position[0]}:{position[1]}: {text}"
    return f"{source}: {text}" if source != "spec" else text


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
        # stacklevel: _compile_when < _compile_rule < _load < from_dict < the caller.
        warnings.warn(f"{loc}: {message}", AmbiguousFQLWarning, stacklevel=5)
    return condition
