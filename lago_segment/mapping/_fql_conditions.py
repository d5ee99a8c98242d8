"""The compiled trigger: the :class:`Condition` tree and the typed predicates at its leaves.

Each leaf is a plain closure ``(payload) -> bool``, typed exactly as Segment's
trigger evaluator types a comparison (which literal compares with which
field, as text or as a number); ``and``/``or`` chain closures. Comparisons
Segment would read differently from how they are written are refused here,
at compile time, with the column of the literal.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._fql_lexer import FQLSyntaxError, Token, describe
from ._javascript import js_string
from ._paths import MISSING, getter, lookup, show

__all__ = [
    "Condition",
    "Predicate",
    "always",
    "check_glob",
    "comparison",
    "fold",
    "function",
    "negate",
]

Predicate = Callable[[Mapping[str, Any]], bool]


@attrs.frozen(slots=True)
class Condition:
    """A compiled trigger node: its source text, its closure, its children."""

    text: str
    kind: str  # "and" | "or" | "not" | "leaf"
    test: Predicate
    children: tuple[Condition, ...] = ()
    field: tuple[str, ...] = ()
    equals: str | None = None  # for `field = "text"` leaves: the text

    def split_type(self) -> tuple[str | None, Predicate]:
        """``("track", rest)`` when this trigger starts with ``type = "track" and``.

        Lets a spec route an event by its type with one dict look-up and test
        only the rest of each trigger (Segment events always carry a string type).
        """
        if self.kind == "leaf" and self.field == ("type",) and self.equals is not None:
            return self.equals, always
        first = self.children[0] if self.kind == "and" else None
        if first is not None and first.field == ("type",) and first.equals is not None:
            rest = [c.test for c in self.children[1:]]
            return first.equals, fold(rest, conjunction=True)
        return None, self.test

    def first_failure(self, payload: Mapping[str, Any]) -> str | None:
        """The text of the condition that makes this node false (None if true)."""
        if self.test(payload):
            return None
        if self.kind == "and":
            for child in self.children:
                failure = child.first_failure(payload)
                if failure is not None:
                    return failure
        if self.kind == "leaf" and self.field:
            actual = lookup(payload, self.field)
            shown = "absent" if actual is MISSING else show(actual, 60)
            return f"{self.text}  ({'.'.join(self.field)} is {shown})"
        if self.kind == "not":
            return f"{self.text}  (the negated condition is true)"
        return self.text


# How Segment's trigger parser (destination-subscriptions parse-fql.ts) reads
# `field = value` depends on the field: for `type` and `event` every value is
# compared as text; `name` also knows `= null`; `userId` also `= true|false`;
# paths under properties/traits/context also compare numbers as numbers.
_TEXT_FIELDS = frozenset({"type", "event"})
_NAME_FIELDS = frozenset({"name"})
_ID_FIELDS = frozenset({"userId", "anonymousId", "groupId", "messageId"})


def _refuse(token: Token, field: str, op: str, literal: str, why: str) -> FQLSyntaxError:
    return FQLSyntaxError(token.column, f"{field} {op} {literal} is refused: {why}")


def comparison(path: tuple[str, ...], op: str, kind: str, value: Any, token: Token) -> Predicate:
    """One comparison, typed exactly as Segment's trigger evaluator (validate.ts) types it."""
    get = getter(path)
    field = ".".join(path)
    root = path[0]
    nested = len(path) > 1 or root not in (_TEXT_FIELDS | _NAME_FIELDS | _ID_FIELDS)
    # `type` is always a string in a Segment event, so "absent or null" and
    # Segment's "the text null" give the same answers for it.
    if kind == "null" and root != "event":
        if op == "=":  # not_exists
            return lambda p: get(p) in (MISSING, None)
        if op == "!=":  # exists
            return lambda p: get(p) not in (MISSING, None)
        raise FQLSyntaxError(token.column, f"null can only be compared with = or !=, not {op}")
    if kind == "null" or (kind == "bool" and root in _TEXT_FIELDS | _NAME_FIELDS):
        raise _refuse(
            token,
            field,
            op,
            token.value,
            f'Segment compares {field} with the text "{token.value}" here, '
            f"not with {'absence' if kind == 'null' else 'a boolean'}",
        )
    if kind == "bool":
        if op == "!=":
            raise _refuse(
                token,
                field,
                op,
                token.value,
                f'Segment compares the field with the text "{token.value}" here, so the '
                f"boolean {token.value} itself would match; write {field} = "
                f"{'false' if value else 'true'} to test for the other boolean",
            )
        if op != "=":
            raise FQLSyntaxError(token.column, f"{op} compares numbers; found {describe(token)}")
        # is_true / is_false: only a JSON boolean (never the text "true").
        return lambda p: get(p) is value
    if op in ("=", "!="):
        if kind == "number" and nested:
            # number_equals / number_not_equals: only a JSON number compares, so
            # `!= 5` is false when the field is absent or a string.
            def number_equals(p: Mapping[str, Any]) -> bool:
                actual = get(p)
                return actual.__class__ in _NUMBER_TYPES and actual == value

            def number_not_equals(p: Mapping[str, Any]) -> bool:
                actual = get(p)
                return actual.__class__ in _NUMBER_TYPES and actual != value

            return number_equals if op == "=" else number_not_equals
        # `actual === String(expected)`: only a string equal to the text compares.
        expected = value if kind == "string" else js_string(value)
        if len(path) == 1:
            # The usual `type = "track"`: one dict look-up, no extra call.
            (key,) = path
            if op == "=":
                return lambda p: p.get(key, MISSING) == expected
            return lambda p: p.get(key, MISSING) != expected
        if op == "=":
            return lambda p: get(p) == expected
        return lambda p: get(p) != expected
    if kind != "number":
        raise FQLSyntaxError(token.column, f"{op} compares numbers; found {describe(token)}")
    compare = {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]

    # Only a JSON number compares: "5" (a string) and true never do.
    def numeric(p: Mapping[str, Any]) -> bool:
        actual = get(p)
        cls = actual.__class__
        return (cls is int or cls is float) and compare(actual, value)

    return numeric


_NUMBER_TYPES = (int, float)


def always(_payload: Mapping[str, Any]) -> bool:
    """The predicate that is always true (a trigger that is only ``type = "x"``)."""
    return True


def negate(test: Predicate) -> Predicate:
    """``!condition``."""
    return lambda p: not test(p)


def fold(tests: list[Predicate], *, conjunction: bool) -> Predicate:
    """Chain predicates into nested two-way closures (cheaper than all()/any())."""
    test = tests[-1]
    for earlier in reversed(tests[:-1]):
        test = _both(earlier, test) if conjunction else _either(earlier, test)
    return test


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda p: a(p) and b(p)


def _either(a: Predicate, b: Predicate) -> Predicate:
    return lambda p: a(p) or b(p)


def check_glob(token: Token) -> None:
    """Refuse the FQL reference's ``?``, ``[...]`` and ``\\x`` in a match() pattern.

    Segment's trigger evaluator implements only ``*``; matching these as literal
    characters would silently differ from the documented meaning, and
    implementing them would differ from what Segment actually sends.
    """
    raw = token.value[1:-1]
    for offset, ch in enumerate(raw):
        if ch in "?[\\":
            what = {"?": "'?'", "[": "'[...]'", "\\": "a backslash escape"}[ch]
            raise FQLSyntaxError(
                token.column + 1 + offset,
                f"match() supports only '*' (any run of characters), as Segment's trigger "
                f"evaluator does; {what} is documented in the FQL reference but Segment "
                "does not evaluate it, so it is refused rather than read literally "
                "(use contains() for literal text)",
            )


def _glob(pattern: str) -> Callable[[str], bool]:
    """A ``*`` wildcard matcher in linear time (no regex, so no backtracking)."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return lambda s: s == pattern
    head, *middle, tail = parts
    min_len = len(head) + len(tail)

    def match(s: str) -> bool:
        if len(s) < min_len or not s.startswith(head) or not s.endswith(tail):
            return False
        pos, stop = len(head), len(s) - len(tail)
        for piece in middle:
            found = s.find(piece, pos, stop)
            if found < 0:
                return False
            pos = found + len(piece)
        return True

    return match


def function(name: str, path: tuple[str, ...], needle: str) -> Predicate:
    """``contains(field, "text")`` or ``match(field, "glob*")``: only a string field matches."""
    get = getter(path)
    if name == "contains":

        def contains(p: Mapping[str, Any]) -> bool:
            actual = get(p)
            return actual.__class__ is str and needle in actual

        return contains
    glob = _glob(needle)

    def match(p: Mapping[str, Any]) -> bool:
        actual = get(p)
        return actual.__class__ is str and glob(actual)

    return match
