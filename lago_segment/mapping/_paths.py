"""Paths into an event's JSON: parsed once, then plain dict/list look-ups.

A path only ever indexes mappings (by key) and lists (by a decimal index); it
never touches Python attributes, so a spec cannot reach beyond the JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

__all__ = ["MAX_PATH_LENGTH", "MISSING", "Getter", "getter", "lookup", "parse_path", "show"]


class _Missing:
    """The "unresolved" value (JavaScript's ``undefined``): the field is omitted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()
#: The longest path accepted, in characters.
MAX_PATH_LENGTH = 500

Getter = Callable[[Mapping[str, Any]], Any]

_SEGMENT = re.compile(
    r"""\.?(?:
        (?P<key>[^.\[\]"']+)
      | \[(?P<index>\d+)\]
      | \[(?P<quote>["'])(?P<quoted>(?:(?!(?P=quote)).)*)(?P=quote)\]
    )""",
    re.VERBOSE,
)


def parse_path(text: str) -> tuple[str, ...]:
    """Split ``$.properties.items[0]["a.b"]`` into keys; ``$.``/``$``/``""`` is the root.

    Raises :class:`ValueError` naming the problem.
    """
    if len(text) > MAX_PATH_LENGTH:
        raise ValueError(f"path longer than {MAX_PATH_LENGTH} characters")
    rest = text
    if rest.startswith("$"):
        rest = rest[1:]
        if rest.startswith("."):
            rest = rest[1:]
    if rest == "":
        return ()
    keys: list[str] = []
    pos = 0
    while pos < len(rest):
        m = _SEGMENT.match(rest, pos)
        if m is None or (m.group().startswith(".") and pos == 0) or m.end() == pos:
            raise ValueError(f"invalid path {text!r} at character {pos + 1}")
        if m.group().startswith(".") and rest[pos + 1 : pos + 2] in ("", "."):
            raise ValueError(f"invalid path {text!r}: empty segment")
        keys.append(m.group("key") or m.group("index") or m.group("quoted") or "")
        pos = m.end()
    return tuple(keys)


def lookup(payload: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``payload``, or :data:`MISSING`."""
    value = payload
    for key in path:
        if isinstance(value, Mapping):
            value = value.get(key, MISSING)
            if value is MISSING:
                return MISSING
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def getter(path: tuple[str, ...]) -> Getter:
    """A closure reading ``path``; the short paths every spec uses skip the loop."""
    if not path:
        return lambda p: p
    if len(path) == 1:
        (key,) = path

        def get1(p: Mapping[str, Any]) -> Any:
            return p.get(key, MISSING)

        return get1
    if len(path) == 2:
        first, second = path

        def get2(p: Mapping[str, Any]) -> Any:
            # A payload is always a mapping; anything unusual takes the slow path.
            inner = p.get(first, MISSING)
            if inner.__class__ is dict:
                return inner.get(second, MISSING)
            return MISSING if inner is MISSING else lookup(p, path)

        return get2
    return lambda p: lookup(p, path)


def show(value: Any, limit: int = 80) -> str:
    """A value as short JSON for messages and reports (cut at ``limit`` characters)."""
    if value is MISSING:
        return "(unresolved)"
    if isinstance(value, Decimal):
        text = str(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr)
        except (ValueError, RecursionError):
            try:
                text = repr(value)
            except RecursionError:
                text = f"(a {type(value).__name__} nested too deeply to show)"
    return text if len(text) <= limit else text[: limit - 3] + "..."
