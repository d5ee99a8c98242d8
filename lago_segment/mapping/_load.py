"""Spec documents in, checked: text decoded, TOML or JSON parsed, every problem found at once.

:func:`check_spec` structures the data into a :class:`MappingDocument` (cattrs,
imported only here, only when a spec is loaded), compiles each rule and
gathers every structural and compile problem into one
:class:`~lago_segment.errors.SpecError`, each message giving the location,
the rule's name and, for text, the line and column.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from lago_segment.errors import SpecError

from ._directives import Compiler
from ._model import MappingDocument
from ._rules import RULE_NAME, Rule, compile_rule
from ._text import parse_location

__all__ = ["MAX_RULES", "Locate", "check_spec", "decode_text", "parse_json", "parse_toml"]

#: The most rules one spec may hold.
MAX_RULES = 1000


def decode_text(text: str | bytes, where: str) -> str:
    """Spec text as ``str``: UTF-8 ``bytes`` decoded; ``where`` names it in errors."""
    if isinstance(text, str):
        return text
    if not isinstance(text, (bytes, bytearray, memoryview)):
        raise SpecError(f"{where}: a spec is text or bytes, not {type(text).__name__}")
    try:
        return bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{where}: not UTF-8 text (byte {exc.start + 1})") from None


def parse_toml(text: str, where: str) -> Any:
    """TOML text parsed; a syntax error names ``where:line:column``."""
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


def parse_json(text: str, where: str) -> Any:
    """JSON text parsed; a syntax error names ``where:line:column``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise SpecError(f"{where}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # pragma: no cover - json raises JSONDecodeError
        raise SpecError(f"{where}: invalid JSON: {exc}") from None


#: Where a location is written in the spec text: ``(line, column)``, or None.
Locate = Callable[[tuple["str | int", ...]], "tuple[int, int] | None"]


def _show_location(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_spec(
    data: Any, source: str, locate: Locate | None
) -> tuple[list[Rule], MappingDocument]:
    """Check a spec's data and compile its rules, or raise every problem at once.

    ``data`` is the spec as parsed (``{"rules": [...]}``); ``source`` names it
    in messages (``"spec"`` when it has no name); ``locate`` gives the line and
    column of a location in the text it was read from, when there is one.
    Raises :class:`~lago_segment.errors.SpecError` listing every problem, each
    with its location and the rule's name.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f'{source}: must be an object with a "rules" list')
    from ._structure import structure, unstructure

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
        if isinstance(name, str) and RULE_NAME.fullmatch(name):
            rule_names[i] = name
        before = len(compiler.errors)
        rule = compile_rule(compiler, raw_rule, f"rules[{i}]", names)
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
    return rules, document


def _format(
    source: str,
    path: tuple[str | int, ...],
    problem: str,
    rule_names: Mapping[int, str],
    locate: Locate | None,
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
