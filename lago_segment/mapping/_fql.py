"""FQL, the trigger language of Segment subscriptions: tokenizer, parser, compiler.

``compile_fql(text)`` returns a :class:`Condition` tree whose ``test`` is a
plain closure ``(payload) -> bool``; the tree itself is kept only so that
``explain`` can say which condition failed. Nothing here evaluates code: the
only operations are dict/list look-ups and string/number comparisons.

Precedence: ``!`` binds tightest, then ``and``, then ``or`` (as in SQL and
Python). Segment instead applies the *last* ``and``/``or`` it saw to a whole
level; to keep a spec readable either way, mixing both at one level without
parentheses emits :class:`AmbiguousFQLWarning`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._javascript import js_string
from ._paths import MISSING, getter, lookup, show
from ._text import suggest

__all__ = [
    "FIELD_ROOTS",
    "MAX_FQL_DEPTH",
    "MAX_FQL_LENGTH",
    "AmbiguousFQLWarning",
    "Condition",
    "FQLSyntaxError",
    "compile_fql",
    "parse_fql",
]

#: The longest trigger accepted, in characters.
MAX_FQL_LENGTH = 2000
#: The deepest nesting of parentheses and ``!`` accepted.
MAX_FQL_DEPTH = 32

#: The fields a trigger may test; the ones ending in "." take a sub-path.
FIELD_ROOTS = {
    "type": False,
    "event": False,
    "name": False,
    "userId": False,
    "anonymousId": False,
    "groupId": False,
    "messageId": False,
    "properties": True,
    "traits": True,
    "context": True,
}

Predicate = Callable[[Mapping[str, Any]], bool]


class AmbiguousFQLWarning(UserWarning):
    """A trigger mixes ``and`` and ``or`` at one level without parentheses.

    lago-segment reads ``a and b or c`` as ``(a and b) or c``; Segment's own
    parser would apply the last operator to the whole level (``a or b or c``).
    Add parentheses to say which one you mean.
    """


class FQLSyntaxError(Exception):
    """Internal: a trigger does not parse; ``column`` is 1-based."""

    def __init__(self, column: int, problem: str) -> None:
        self.column = column
        self.problem = problem
        super().__init__(f"column {column}: {problem}")


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
            return self.equals, _always
        first = self.children[0] if self.kind == "and" else None
        if first is not None and first.field == ("type",) and first.equals is not None:
            rest = [c.test for c in self.children[1:]]
            return first.equals, _fold(rest, conjunction=True)
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


# --- tokenizer -------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<bang>!)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_$\-]*(?:\.[A-Za-z0-9_$\-]+)*)
    """,
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)")


@attrs.frozen(slots=True)
class _Token:
    kind: str
    value: str
    column: int
    end: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "\"'":
                raise FQLSyntaxError(pos + 1, "unterminated string")
            raise FQLSyntaxError(pos + 1, f"unexpected character {ch!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(_Token(kind, m.group(), pos + 1, m.end()))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1, len(text)))
    return tokens


# --- parser ----------------------------------------------------------------


def _describe(token: _Token) -> str:
    return "end of input" if token.kind == "end" else repr(token.value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0
        self.grouped: set[int] = set()
        self.ambiguous: list[str] = []

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind != "end":
            self.pos += 1
        return token

    def expect(self, kind: str, what: str) -> _Token:
        token = self.take()
        if token.kind != kind:
            raise FQLSyntaxError(token.column, f"expected {what}, found {_describe(token)}")
        return token

    def source(self, start: int, end: int) -> str:
        return self.text[start:end].strip()

    def parse(self) -> Condition:
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise FQLSyntaxError(
                token.column, f"expected 'and', 'or' or end of input, found {_describe(token)}"
            )
        return node

    def _is_word(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "ident" and token.value == word

    def parse_or(self) -> Condition:
        start = self.peek().column - 1
        first = self.parse_and()
        if not self._is_word("or"):
            return first
        children = [first]
        while self._is_word("or"):
            self.take()
            children.append(self.parse_and())
        if any(c.kind == "and" and id(c) not in self.grouped for c in children):
            self.ambiguous.append(
                f"FQL {self.text!r} mixes 'and' and 'or' without parentheses; it is read "
                "as '(... and ...) or ...' ('and' binds tighter), unlike Segment, which "
                "applies the last operator to the whole level. Add parentheses."
            )
        return Condition(
            self.source(start, self.tokens[self.pos - 1].end),
            "or",
            _fold([c.test for c in children], conjunction=False),
            tuple(children),
        )

    def parse_and(self) -> Condition:
        start = self.peek().column - 1
        first = self.parse_unary()
        if not self._is_word("and"):
            return first
        children = [first]
        while self._is_word("and"):
            self.take()
            children.append(self.parse_unary())
        test = _fold([c.test for c in children], conjunction=True)
        return Condition(
            self.source(start, self.tokens[self.pos - 1].end), "and", test, tuple(children)
        )

    def _enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_FQL_DEPTH:
            raise FQLSyntaxError(token.column, f"nested deeper than {MAX_FQL_DEPTH} levels")

    def parse_unary(self) -> Condition:
        token = self.peek()
        if token.kind == "bang":
            self.take()
            self._enter(token)
            inner = self.parse_unary()
            self.depth -= 1
            inner_test = inner.test
            return Condition(
                self.source(token.column - 1, self.tokens[self.pos - 1].end),
                "not",
                lambda p: not inner_test(p),
                (inner,),
            )
        if token.kind == "lparen":
            self.take()
            self._enter(token)
            inner = self.parse_or()
            self.expect("rparen", "')'")
            self.depth -= 1
            text = self.source(token.column - 1, self.tokens[self.pos - 1].end)
            node = attrs.evolve(inner, text=text)
            self.grouped.add(id(node))
            return node
        if token.kind == "ident" and token.value in ("contains", "match"):
            return self.parse_function()
        return self.parse_comparison()

    def parse_field(self) -> tuple[str, ...]:
        token = self.take()
        if token.kind != "ident" or token.value in ("and", "or", "true", "false", "null"):
            raise FQLSyntaxError(token.column, f"expected a field, found {_describe(token)}")
        path = tuple(token.value.split("."))
        root = path[0]
        if root not in FIELD_ROOTS:
            raise FQLSyntaxError(
                token.column,
                f"unknown field {root!r}{suggest(root, FIELD_ROOTS)}; triggers may test "
                + ", ".join(f"{k}.*" if v else k for k, v in FIELD_ROOTS.items()),
            )
        if not FIELD_ROOTS[root] and len(path) > 1:
            raise FQLSyntaxError(token.column, f"field {root!r} has no sub-fields")
        return path

    def parse_value(self) -> tuple[str, Any, _Token]:
        token = self.take()
        if token.kind == "string":
            return "string", _ESCAPE.sub(r"\1", token.value[1:-1]), token
        if token.kind == "number":
            number = float(token.value)
            if not math.isfinite(number):
                raise FQLSyntaxError(token.column, f"number out of range: {token.value}")
            is_int = re.fullmatch(r"-?\d+", token.value) is not None
            return "number", int(token.value) if is_int else number, token
        if token.kind == "ident" and token.value in ("true", "false"):
            return "bool", token.value == "true", token
        if token.kind == "ident" and token.value == "null":
            return "null", None, token
        raise FQLSyntaxError(
            token.column,
            f"expected a value (a quoted string, a number, true, false or null), "
            f"found {_describe(token)}",
        )

    def parse_comparison(self) -> Condition:
        start = self.peek()
        path = self.parse_field()
        op_token = self.take()
        if op_token.kind != "op":
            raise FQLSyntaxError(
                op_token.column,
                f"expected an operator (=, !=, <, <=, >, >=), found {_describe(op_token)}",
            )
        kind, value, value_token = self.parse_value()
        test = _comparison(path, op_token.value, kind, value, value_token)
        text = self.source(start.column - 1, value_token.end)
        equals = value if op_token.value == "=" and kind == "string" else None
        return Condition(text, "leaf", test, field=path, equals=equals)

    def parse_function(self) -> Condition:
        name = self.take()
        self.expect("lparen", f"'(' after {name.value}")
        path = self.parse_field()
        self.expect("comma", "','")
        pattern = self.take()
        if pattern.kind != "string":
            raise FQLSyntaxError(
                pattern.column,
                f"{name.value}() takes a quoted string, found {_describe(pattern)}",
            )
        if name.value == "match":
            _check_glob(pattern)
        needle = _ESCAPE.sub(r"\1", pattern.value[1:-1])
        close = self.expect("rparen", "')'")
        get = getter(path)
        if name.value == "contains":

            def test(p: Mapping[str, Any]) -> bool:
                actual = get(p)
                return actual.__class__ is str and needle in actual
        else:
            glob = _glob(needle)

            def test(p: Mapping[str, Any]) -> bool:
                actual = get(p)
                return actual.__class__ is str and glob(actual)

        return Condition(self.source(name.column - 1, close.end), "leaf", test, field=path)


# How Segment's trigger parser (destination-subscriptions parse-fql.ts) reads
# `field = value` depends on the field: for `type` and `event` every value is
# compared as text; `name` also knows `= null`; `userId` also `= true|false`;
# paths under properties/traits/context also compare numbers as numbers.
_TEXT_FIELDS = frozenset({"type", "event"})
_NAME_FIELDS = frozenset({"name"})
_ID_FIELDS = frozenset({"userId", "anonymousId", "groupId", "messageId"})


def _refuse(token: _Token, field: str, op: str, literal: str, why: str) -> FQLSyntaxError:
    return FQLSyntaxError(token.column, f"{field} {op} {literal} is refused: {why}")


def _comparison(path: tuple[str, ...], op: str, kind: str, value: Any, token: _Token) -> Predicate:
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
            raise FQLSyntaxError(token.column, f"{op} compares numbers; found {_describe(token)}")
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
        raise FQLSyntaxError(token.column, f"{op} compares numbers; found {_describe(token)}")
    import operator

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


def _always(_payload: Mapping[str, Any]) -> bool:
    return True


def _negate(test: Predicate) -> Predicate:
    return lambda p: not test(p)


def _fold(tests: list[Predicate], *, conjunction: bool) -> Predicate:
    """Chain predicates into nested two-way closures (cheaper than all()/any())."""
    test = tests[-1]
    for earlier in reversed(tests[:-1]):
        test = _both(earlier, test) if conjunction else _either(earlier, test)
    return test


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda p: a(p) and b(p)


def _either(a: Predicate, b: Predicate) -> Predicate:
    return lambda p: a(p) or b(p)


def _check_glob(token: _Token) -> None:
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


def parse_fql(text: str) -> tuple[Condition, list[str]]:
    """Compile a trigger; also return why it is ambiguous (empty when it is not).

    Raises :class:`FQLSyntaxError` with a column.
    """
    if len(text) > MAX_FQL_LENGTH:
        raise FQLSyntaxError(MAX_FQL_LENGTH + 1, f"longer than {MAX_FQL_LENGTH} characters")
    if not text.strip():
        raise FQLSyntaxError(1, "empty trigger")
    parser = _Parser(text)
    return parser.parse(), parser.ambiguous


def compile_fql(text: str) -> Condition:
    """Compile a trigger, warning :class:`AmbiguousFQLWarning` where it is ambiguous."""
    condition, ambiguous = parse_fql(text)
    for message in ambiguous:
        warnings.warn(message, AmbiguousFQLWarning, stacklevel=2)
    return condition
