"""Mapping-kit values compiled once into plain closures ``(payload) -> value``.

A value is a literal (string, number, bool, null, list, object) or a
directive: an object with exactly one ``@`` key. :class:`Compiler` validates a
value, appending every problem to ``errors`` with its location, and returns a
closure; the per-event path never sees the directive dicts again.

A closure returns :data:`MISSING` when the value is unresolved (mapping-kit's
``undefined``): the field is then omitted. A value that is present but cannot
be converted (``@number`` of ``"abc"``) raises :class:`Unconvertible`, which
the spec turns into a :class:`~lago_segment.MappingError` naming the rule,
the field and the messageId. What the closures do to a resolved value
(conversions, mapping-kit's helpers) is in :mod:`._conversions`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._conversions import (
    Unconvertible,
    clean_nulls,
    decode_json,
    encode_json,
    flatten,
    is_blank,
    storable,
    template_text,
    to_decimal,
    to_integer,
    to_number,
    to_string,
)
from ._javascript import js_string
from ._paths import MISSING, getter, parse_path, show
from ._text import suggest

__all__ = [
    "DIRECTIVES",
    "MAX_DEPTH",
    "MAX_TEMPLATE_LENGTH",
    "Compiler",
    "Resolver",
]

Resolver = Callable[[Mapping[str, Any]], Any]

#: The deepest nesting of objects, lists and directives in one value.
MAX_DEPTH = 32
#: The longest ``@template`` (and ``@replace`` pattern) accepted, in characters.
MAX_TEMPLATE_LENGTH = 2000
# {{path}}, and mapping-kit's {{{path}}} (its "unescaped" form: we never
# HTML-escape, which would mangle ids such as "/v1/users").
_PLACEHOLDER = re.compile(r"\{\{\{\s*([^{}]+?)\s*\}\}\}|\{\{\s*([^{}]+?)\s*\}\}")


def _constant(value: Any) -> Resolver:
    return lambda _p: value


class Compiler:
    """Validates mapping-kit values and compiles them to closures.

    Every problem is appended to :attr:`errors` as ``"<location>: <problem>"``
    so a whole spec is checked in one pass.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, loc: str, problem: str) -> Resolver:
        self.errors.append(f"{loc}: {problem}")
        return _constant(MISSING)

    def compile(self, value: Any, loc: str, depth: int = 0) -> Resolver:
        """Compile any mapping-kit value found at ``loc``."""
        if depth > MAX_DEPTH:
            return self.error(loc, f"nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (str, int, float, bool)):
            return _constant(value)
        if isinstance(value, list):
            items = [self.compile(v, f"{loc}[{i}]", depth + 1) for i, v in enumerate(value)]
            return self._array(items)
        if isinstance(value, Mapping):
            keys = list(value)
            directives = [k for k in keys if isinstance(k, str) and k.startswith("@")]
            if not directives:
                return self.object(value, loc, depth)
            if len(keys) != 1:
                return self.error(
                    loc,
                    "a directive object has exactly one @ key and nothing else, found keys "
                    + ", ".join(f'"{k}"' for k in keys),
                )
            name = directives[0]
            compile_directive = DIRECTIVES.get(name)
            if compile_directive is None:
                return self.error(loc, f'unknown directive "{name}"{suggest(name, DIRECTIVES)}')
            return compile_directive(self, value[name], f"{loc}.{name}", depth + 1)
        return self.error(loc, f"unsupported value of type {type(value).__name__}")

    def object(self, value: Mapping[Any, Any], loc: str, depth: int) -> Resolver:
        """Compile a plain object: each key resolved, unresolved keys omitted."""
        fields = tuple(
            (str(k), self.compile(v, f"{loc}.{k}", depth + 1)) for k, v in value.items()
        )

        def resolve(p: Mapping[str, Any]) -> Any:
            out = {}
            for key, fn in fields:
                item = fn(p)
                if item is not MISSING:
                    out[key] = item
            return out

        return resolve

    @staticmethod
    def _array(items: list[Resolver]) -> Resolver:
        def resolve(p: Mapping[str, Any]) -> Any:
            out = []
            for fn in items:
                item = fn(p)
                if item is not MISSING:
                    out.append(item)
            return out

        return resolve

    def options(
        self,
        arg: Any,
        loc: str,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
    ) -> Mapping[str, Any] | None:
        """Check a directive's option object: known keys only, required ones present."""
        if not isinstance(arg, Mapping):
            self.error(loc, f"expects an object with keys {', '.join(required + optional)}")
            return None
        ok = True
        allowed = required + optional
        for key in arg:
            if key not in allowed:
                self.error(f"{loc}.{key}", f'unknown option "{key}"{suggest(str(key), allowed)}')
                ok = False
        for key in required:
            if key not in arg:
                self.error(loc, f'missing option "{key}"')
                ok = False
        return arg if ok else None

    def option(self, opts: Mapping[str, Any], key: str, loc: str, depth: int) -> Resolver:
        """Compile the value of a directive's option ``key`` (checked by :meth:`options`)."""
        return self.compile(opts[key], f"{loc}.{key}", depth + 1)

    def choice(self, arg: Mapping[str, Any], key: str, loc: str, choices: tuple[str, ...]) -> str:
        """A literal option among ``choices`` (the first one when absent)."""
        value = arg.get(key, choices[0])
        if value not in choices:
            self.error(
                f"{loc}.{key}", f"must be one of {', '.join(map(repr, choices))}, not {value!r}"
            )
            return choices[0]
        return value  # type: ignore[no-any-return,unused-ignore]

    def path(self, arg: Any, loc: str) -> tuple[str, ...] | None:
        """A literal path string, parsed."""
        if not isinstance(arg, str):
            self.error(loc, f'expects a path string such as "$.properties.x", not {arg!r}')
            return None
        try:
            return parse_path(arg)
        except ValueError as exc:
            self.error(loc, str(exc))
            return None


# --- the directives ---------------------------------------------------------

_Compile = Callable[[Compiler, Any, str, int], Resolver]


def _path(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    path = c.path(arg, loc)
    return _constant(MISSING) if path is None else getter(path)


def _template(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    if not isinstance(arg, str):
        return c.error(loc, f"expects a template string, not {arg!r}")
    if len(arg) > MAX_TEMPLATE_LENGTH:
        return c.error(loc, f"template longer than {MAX_TEMPLATE_LENGTH} characters")
    parts: list[str | Callable[[Mapping[str, Any]], Any]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(arg):
        parts.append(arg[pos : m.start()])
        text = m.group(1) or m.group(2)
        path = c.path(text, f"{loc} {{{{{text}}}}}")
        parts.append(getter(path) if path is not None else _constant(MISSING))
        pos = m.end()
    parts.append(arg[pos:])
    pieces = tuple(p for p in parts if p != "")
    if all(isinstance(p, str) for p in pieces):
        return _constant("".join(p for p in pieces if isinstance(p, str)))

    def render(p: Mapping[str, Any]) -> Any:
        return "".join(x if x.__class__ is str else template_text(x(p)) for x in pieces)  # type: ignore[operator]

    return render


def _literal(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    return c.compile(arg, loc, depth)


def _if(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(arg, loc, (), ("exists", "blank", "then", "else"))
    if opts is None:
        return _constant(MISSING)
    tests = [k for k in ("exists", "blank") if k in opts]
    if len(tests) != 1:
        return c.error(loc, 'needs exactly one condition: "exists" or "blank"')
    if "then" not in opts and "else" not in opts:
        return c.error(loc, 'needs a "then" or an "else" branch')
    subject = c.option(opts, tests[0], loc, depth)
    then = c.option(opts, "then", loc, depth) if "then" in opts else None
    else_ = c.option(opts, "else", loc, depth) if "else" in opts else None
    missing = _constant(MISSING)
    then_fn, else_fn = then or missing, else_ or missing
    if tests[0] == "exists":

        def exists(p: Mapping[str, Any]) -> Any:
            value = subject(p)
            return then_fn(p) if value is not MISSING and value is not None else else_fn(p)

        return exists

    def blank(p: Mapping[str, Any]) -> Any:
        return else_fn(p) if is_blank(subject(p)) else then_fn(p)

    return blank


def _case(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(arg, loc, ("operator", "value"))
    if opts is None:
        return _constant(MISSING)
    op = c.choice(opts, "operator", loc, ("lower", "upper"))
    value = c.option(opts, "value", loc, depth)
    convert = str.lower if op == "lower" else str.upper

    def case(p: Mapping[str, Any]) -> Any:
        v = value(p)
        return convert(v) if v.__class__ is str else v

    return case


def _replacer(
    c: Compiler, opts: Mapping[str, Any], loc: str, pattern_key: str, replacement_key: str
) -> Callable[[str], str] | None:
    pattern = opts.get(pattern_key)
    replacement = opts.get(replacement_key, "")
    if not isinstance(pattern, str) or not pattern:
        c.error(f"{loc}.{pattern_key}", "must be a non-empty string (matched literally)")
        return None
    if len(pattern) > MAX_TEMPLATE_LENGTH:
        c.error(f"{loc}.{pattern_key}", f"longer than {MAX_TEMPLATE_LENGTH} characters")
        return None
    if not isinstance(replacement, str):
        c.error(f"{loc}.{replacement_key}", "must be a string")
        return None
    ignorecase, is_global = opts.get("ignorecase", False), opts.get("global", True)
    for key, flag in (("ignorecase", ignorecase), ("global", is_global)):
        if not isinstance(flag, bool):
            c.error(f"{loc}.{key}", "must be true or false")
            return None
    count = 0 if is_global else 1
    if ignorecase:
        # The pattern is escaped: literal text, never a regex.
        compiled = re.compile(re.escape(pattern), re.IGNORECASE)
        return lambda s: compiled.sub(lambda _m: replacement, s, count=count)
    return lambda s: s.replace(pattern, replacement, -1 if is_global else 1)


def _replace(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(
        arg,
        loc,
        ("pattern", "value"),
        ("replacement", "ignorecase", "global", "pattern2", "replacement2"),
    )
    if opts is None:
        return _constant(MISSING)
    steps = [_replacer(c, opts, loc, "pattern", "replacement")]
    if "pattern2" in opts:
        steps.append(_replacer(c, opts, loc, "pattern2", "replacement2"))
    value = c.option(opts, "value", loc, depth)
    replacers = tuple(s for s in steps if s is not None)

    def replace(p: Mapping[str, Any]) -> Any:
        v = value(p)
        if v is MISSING or v is None:
            return MISSING
        if isinstance(v, (Mapping, list)):
            raise Unconvertible(f"@replace: {show(v)} is not a string")
        text = js_string(v)
        for step in replacers:
            text = step(text)
        return text

    return replace


def _merge(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(arg, loc, ("objects", "direction"))
    if opts is None:
        return _constant(MISSING)
    direction = c.choice(opts, "direction", loc, ("right", "left"))
    objects = opts["objects"]
    if not isinstance(objects, list):
        return c.error(f"{loc}.objects", "must be a list of objects")
    parts = [c.compile(o, f"{loc}.objects[{i}]", depth + 1) for i, o in enumerate(objects)]
    if direction == "left":
        parts.reverse()  # earlier objects win: apply them last

    def merge(p: Mapping[str, Any]) -> Any:
        out: dict[str, Any] = {}
        for fn in parts:
            item = fn(p)
            if isinstance(item, Mapping):
                out.update(item)
        return out

    return merge


def _json(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(arg, loc, ("value", "mode"))
    if opts is None:
        return _constant(MISSING)
    mode = c.choice(opts, "mode", loc, ("encode", "decode"))
    value = c.option(opts, "value", loc, depth)
    convert = encode_json if mode == "encode" else decode_json
    return lambda p: convert(value(p))


def _flatten_directive(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(arg, loc, ("value",), ("separator", "omitArrays"))
    if opts is None:
        return _constant(MISSING)
    separator = opts.get("separator", ".")
    if not isinstance(separator, str):
        return c.error(f"{loc}.separator", "must be a string")
    omit_arrays = opts.get("omitArrays", False)
    if not isinstance(omit_arrays, bool):
        return c.error(f"{loc}.omitArrays", "must be true or false")
    value = c.option(opts, "value", loc, depth)
    return lambda p: flatten(value(p), separator, omit_arrays)


def _array_path(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    if not isinstance(arg, list) or not 1 <= len(arg) <= 2:
        return c.error(loc, 'expects ["<path>"] or ["<path>", {item shape}]')
    root = (
        _path(c, arg[0], f"{loc}[0]", depth)
        if isinstance(arg[0], str)
        else c.compile(arg[0], f"{loc}[0]", depth + 1)
    )
    shape = arg[1] if len(arg) == 2 else None
    if shape is None or (isinstance(shape, Mapping) and not shape):
        return root
    if not isinstance(shape, Mapping):
        return c.error(f"{loc}[1]", "the item shape must be an object")
    item = c.compile(shape, f"{loc}[1]", depth + 1)

    def array_path(p: Mapping[str, Any]) -> Any:
        data = root(p)
        if isinstance(data, Mapping):
            data = [data]
        if not isinstance(data, list):
            return data
        return [item(x) if isinstance(x, Mapping) else item({}) for x in data]

    return array_path


def _transform(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(arg, loc, ("apply", "mapping"))
    if opts is None:
        return _constant(MISSING)
    apply = c.option(opts, "apply", loc, depth)
    mapping = c.option(opts, "mapping", loc, depth)

    def transform(p: Mapping[str, Any]) -> Any:
        new = apply(p)
        return mapping(new if isinstance(new, Mapping) else {})

    return transform


def _exclude_when_null(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    value = c.compile(arg, loc, depth)

    def exclude(p: Mapping[str, Any]) -> Any:
        v = value(p)
        return MISSING if v is None else clean_nulls(v)

    return exclude


def _conversion(convert: Callable[[Any], Any]) -> _Compile:
    def compile_conversion(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
        value = c.compile(arg, loc, depth)
        return lambda p: storable(convert(value(p)))

    return compile_conversion


def _default(c: Compiler, arg: Any, loc: str, depth: int) -> Resolver:
    opts = c.options(arg, loc, ("value", "fallback"))
    if opts is None:
        return _constant(MISSING)
    value = c.option(opts, "value", loc, depth)
    fallback = c.option(opts, "fallback", loc, depth)

    def default(p: Mapping[str, Any]) -> Any:
        v = value(p)
        return fallback(p) if v is MISSING or v is None else v

    return default


#: Every directive, by name.
DIRECTIVES: dict[str, _Compile] = {
    "@path": _path,
    "@template": _template,
    "@literal": _literal,
    "@if": _if,
    "@case": _case,
    "@replace": _replace,
    "@merge": _merge,
    "@json": _json,
    "@flatten": _flatten_directive,
    "@arrayPath": _array_path,
    "@transform": _transform,
    "@excludeWhenNull": _exclude_when_null,
    "@number": _conversion(to_number),
    "@integer": _conversion(to_integer),
    "@decimal": _conversion(to_decimal),
    "@string": _conversion(to_string),
    "@default": _default,
}
