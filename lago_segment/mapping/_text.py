"""Spec text: where a value is written (line, column), did-you-mean hints, writing TOML.

Locating is best effort: JSON is walked exactly along the path; TOML is
searched for the path's keys in order inside the rule's ``[[rules]]`` table.
When a key cannot be found, the position of the deepest one found is given.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["locate_json", "locate_toml", "parse_location", "suggest", "toml_document"]

_LOCATION_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def parse_location(text: str) -> tuple[str | int, ...]:
    """``rules[0].properties.gb`` -> ``("rules", 0, "properties", "gb")``."""
    return tuple(
        int(m.group(1)) if m.group(1) is not None else m.group(2)
        for m in _LOCATION_PART.finditer(text)
    )


def _line_column(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


_WS = re.compile(r"[ \t\r\n]*")


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]


def locate_json(text: str, path: Sequence[str | int]) -> tuple[int, int]:
    """(line, column), 1-based, of the value at ``path`` in a JSON document."""
    decoder = json.JSONDecoder()
    pos = best = _skip(text, 0)
    try:
        for key in path:
            ch = text[pos : pos + 1]
            if ch == "{" and isinstance(key, str):
                pos = _skip(text, pos + 1)
                found = None
                while text[pos : pos + 1] == '"':
                    name, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
                    start = pos = _skip(text, _skip(text, pos) + 1)
                    if name == key:
                        found = start  # the last one wins, as in json.loads
                    _, pos = decoder.raw_decode(text, pos)
                    pos = _skip(text, pos)
                    if text[pos : pos + 1] == ",":
                        pos = _skip(text, pos + 1)
                if found is None:
                    break
                pos = best = found
            elif ch == "[" and isinstance(key, int):
                pos = _skip(text, pos + 1)
                for _ in range(key):
                    _, pos = decoder.raw_decode(text, pos)
                    pos = _skip(text, _skip(text, pos) + 1)
                best = pos
            else:
                break
    except (ValueError, RecursionError, IndexError):
        pass
    return _line_column(text, best)


_RULES_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*rules[ \t]*\]\]", re.MULTILINE)


def _key_pattern(key: str) -> re.Pattern[str]:
    quoted = re.escape(json.dumps(key, ensure_ascii=False))
    literal = re.escape(f"'{key}'")
    bare = rf"(?<![A-Za-z0-9_-]){re.escape(key)}(?![A-Za-z0-9_-])"
    return re.compile(rf"(?:{quoted}|{literal}|{bare})[ \t]*[=.\]]")


def locate_toml(text: str, path: Sequence[str | int]) -> tuple[int, int] | None:
    """(line, column), 1-based, of the key at ``path`` in a TOML spec (best effort)."""
    if path[:1] != ("rules",) or len(path) < 2 or not isinstance(path[1], int):
        if path and isinstance(path[0], str):
            m = _key_pattern(path[0]).search(text)
            if m is not None:
                return _line_column(text, m.start())
        return None
    headers = [m.start() for m in _RULES_HEADER.finditer(text)]
    index = path[1]
    if index >= len(headers):
        return None
    start = headers[index]
    stop = headers[index + 1] if index + 1 < len(headers) else len(text)
    best = _skip(text, start) if text[start] in " \t" else start
    pos = text.index("]]", start) + 2
    for key in path[2:]:
        if not isinstance(key, str):
            continue
        m = _key_pattern(key).search(text, pos, stop)
        if m is None:
            break
        best = m.start()
        pos = m.end() - 1
    return _line_column(text, best)


# --- did you mean --------------------------------------------------------------------


def suggest(word: str, choices: list[str] | Any) -> str:
    """A ``(did you mean "x"?)`` suffix, or ``""`` when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


# --- writing TOML --------------------------------------------------------------------


class NotTOML(ValueError):
    """A value TOML cannot hold (null, a lone surrogate); the message says where."""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# What a TOML literal string may hold: no control character but tab.
_PLAIN = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def _string(text: str, where: str) -> str:
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise NotTOML(f"{where}: a lone surrogate cannot be written as TOML")
    if '"' in text and "'" not in text and _PLAIN.fullmatch(text):
        return f"'{text}'"  # a literal string: triggers read as written
    # JSON's escapes are TOML's; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(key: str, where: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key, where)


def _value(value: Any, where: str) -> str:
    if value is None:
        raise NotTOML(f"{where}: null cannot be written as TOML")
    if value is True or value is False:
        return "true" if value else "false"
    if value.__class__ is int:
        return str(value)
    if value.__class__ is float:
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _string(value, where)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(
            f"{_key(str(k), where)} = {_value(v, f'{where}.{k}')}" for k, v in value.items()
        )
        return "{ " + items + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    raise NotTOML(f"{where}: a {type(value).__name__} cannot be written as TOML")


def toml_document(data: Mapping[str, Any]) -> str:
    """A normalized spec (``{"version": 1, "rules": [...]}``) as TOML text."""
    lines = [f"version = {_value(data['version'], 'version')}"]
    for i, rule in enumerate(data["rules"]):
        lines += ["", "[[rules]]"]
        props = rule.get("properties")
        table = isinstance(props, Mapping) and not any(str(k).startswith("@") for k in props)
        lines += [
            f"{_key(k, f'rules[{i}]')} = {_value(v, f'rules[{i}].{k}')}"
            for k, v in rule.items()
            if not (table and k == "properties")
        ]
        if table:
            assert isinstance(props, Mapping)
            lines += ["", "[rules.properties]"]
            lines += [
                f"{_key(str(k), f'rules[{i}].properties')} = "
                f"{_value(v, f'rules[{i}].properties.{k}')}"
                for k, v in props.items()
            ]
    return "\n".join(lines) + "\n"
