"""FQL, the trigger language of Segment subscriptions: parsing a trigger into a Condition.

``compile_fql(text)`` returns a :class:`Condition` tree whose ``test`` is a
plain closure ``(payload) -> bool``; the tree itself is kept only so that
``explain`` can say which condition failed. Nothing here evaluates code: the
only operations are dict/list look-ups and string/number comparisons.

Precedence: ``!`` binds tightest, then ``and``, then ``or`` (as in SQL and
Python). Segment instead applies the *last* ``and``/``or`` it saw to a whole
level; to keep a spec readable either way, mixing both at one level without
parentheses emits :class:`AmbiguousFQLWarning`.

The tokens are in :mod:`._fql_lexer`; the :class:`Condition` tree and the
typed comparisons at its leaves in :mod:`._fql_conditions`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import attrs

from ._fql_conditions import Condition, check_glob, comparison, fold, function, negate
from ._fql_lexer import FQLSyntaxError, Token, describe, tokenize, unquote
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


class AmbiguousFQLWarning(UserWarning):
    """A trigger mixes ``and`` and ``or`` at one level without parentheses.

    lago-segment reads ``a and b or c`` as ``(a and b) or c``; Segment's own
    parser would apply the last operator to the whole level (``a or b or c``).
    Add parentheses to say which one you mean.
    """


class _Parser:
    """A recursive-descent parser over the tokens of one trigger."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0
        self.grouped: set[int] = set()
        self.ambiguous: list[str] = []

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "end":
            self.pos += 1
        return token

    def expect(self, kind: str, what: str) -> Token:
        token = self.take()
        if token.kind != kind:
            raise FQLSyntaxError(token.column, f"expected {what}, found {describe(token)}")
        return token

    def source(self, start: int, end: int) -> str:
        return self.text[start:end].strip()

    def parse(self) -> Condition:
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise FQLSyntaxError(
                token.column, f"expected 'and', 'or' or end of input, found {describe(token)}"
            )
        return node

    def _is_word(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "ident" and token.value == word

    def _chain(self, word: str, operand: Callable[[], Condition]) -> tuple[int, list[Condition]]:
        """Operands joined by ``word`` (``and``/``or``), and where the first one starts."""
        start = self.peek().column - 1
        children = [operand()]
        while self._is_word(word):
            self.take()
            children.append(operand())
        return start, children

    def parse_or(self) -> Condition:
        start, children = self._chain("or", self.parse_and)
        if len(children) == 1:
            return children[0]
        if any(c.kind == "and" and id(c) not in self.grouped for c in children):
            self.ambiguous.append(
                f"FQL {self.text!r} mixes 'and' and 'or' without parentheses; it is read "
                "as '(... and ...) or ...' ('and' binds tighter), unlike Segment, which "
                "applies the last operator to the whole level. Add parentheses."
            )
        return Condition(
            self.source(start, self.tokens[self.pos - 1].end),
            "or",
            fold([c.test for c in children], conjunction=False),
            tuple(children),
        )

    def parse_and(self) -> Condition:
        start, children = self._chain("and", self.parse_unary)
        if len(children) == 1:
            return children[0]
        test = fold([c.test for c in children], conjunction=True)
        return Condition(
            self.source(start, self.tokens[self.pos - 1].end), "and", test, tuple(children)
        )

    def _enter(self, token: Token) -> None:
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
            return Condition(
                self.source(token.column - 1, self.tokens[self.pos - 1].end),
                "not",
                negate(inner.test),
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
            raise FQLSyntaxError(token.column, f"expected a field, found {describe(token)}")
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

    def parse_value(self) -> tuple[str, Any, Token]:
        token = self.take()
        if token.kind == "string":
            return "string", unquote(token), token
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
            f"found {describe(token)}",
        )

    def parse_comparison(self) -> Condition:
        start = self.peek()
        path = self.parse_field()
        op_token = self.take()
        if op_token.kind != "op":
            raise FQLSyntaxError(
                op_token.column,
                f"expected an operator (=, !=, <, <=, >, >=), found {describe(op_token)}",
            )
        kind, value, value_token = self.parse_value()
        test = comparison(path, op_token.value, kind, value, value_token)
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
                f"{name.value}() takes a quoted string, found {describe(pattern)}",
            )
        if name.value == "match":
            check_glob(pattern)
        needle = unquote(pattern)
        close = self.expect("rparen", "')'")
        test = function(name.value, path, needle)
        return Condition(self.source(name.column - 1, close.end), "leaf", test, field=path)


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
