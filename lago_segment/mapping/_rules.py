"""Compiled rules: :class:`Rule`, and how one rule of a checked document compiles into it.

A rule compiles to its trigger (an FQL :class:`Condition`), one resolver per
Lago field, and a builder: one closure per rule that resolves the fields in a
fixed order and builds the :class:`~lago_segment.lago.LagoEvent`, so the
per-event path is straight-line code.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from lago_segment._time import parse_iso
from lago_segment.errors import InvalidLagoEvent, MappingError
from lago_segment.events import SegmentEvent
from lago_segment.lago import LagoEvent

from ._conversions import Unconvertible
from ._directives import Compiler, Resolver
from ._explain import FieldExplanation
from ._fql import AmbiguousFQLWarning, Condition, FQLSyntaxError, parse_fql
from ._paths import MISSING, show

__all__ = ["MAX_PROPERTIES", "RULE_NAME", "Rule", "compile_rule"]

#: The most properties one rule may map.
MAX_PROPERTIES = 200

#: What a rule name may be.
RULE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
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


def compile_rule(
    compiler: Compiler, raw: Mapping[str, Any], loc: str, names: set[str]
) -> Rule | None:
    """Check and compile one rule's values (its shape was checked by the converter)."""
    errors = compiler.errors
    before = len(errors)
    name = raw.get("name")
    if isinstance(name, str):
        if not RULE_NAME.fullmatch(name):
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
        # stacklevel: _compile_when < compile_rule < check_spec < from_dict < the caller.
        warnings.warn(f"{loc}: {message}", AmbiguousFQLWarning, stacklevel=5)
    return condition
