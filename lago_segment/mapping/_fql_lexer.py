"""FQL tokens: a trigger cut into tokens, and the error raised when a trigger does not parse.

Shared by the parser (:mod:`._fql`) and the typed comparisons
(:mod:`._fql_conditions`), which both point at a token's column.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["FQLSyntaxError", "Token", "describe", "tokenize", "unquote"]


class FQLSyntaxError(Exception):
    """Internal: a trigger does not parse; ``column`` is 1-based."""

    def __init__(self, column: int, problem: str) -> None:
        self.column = column
        self.problem = problem
        super().__init__(f"column {column}: {problem}")


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
class Token:
    """One token: its kind (a group of the pattern above), text and 1-based column."""

    kind: str
    value: str
    column: int
    end: int


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, whitespace left out, ending with an ``end`` token."""
    tokens: list[Token] = []
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
            tokens.append(Token(kind, m.group(), pos + 1, m.end()))
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1, len(text)))
    return tokens


def unquote(token: Token) -> str:
    """The text of a string token: quotes removed, backslash escapes resolved."""
    return _ESCAPE.sub(r"\1", token.value[1:-1])


def describe(token: Token) -> str:
    """A token as an error message names it."""
    return "end of input" if token.kind == "end" else repr(token.value)
