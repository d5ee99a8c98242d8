"""What directives do to a resolved value at map time: conversions and mapping-kit's helpers.

mapping-kit's own semantics (blank, templates' text, ``@flatten``,
``@excludeWhenNull``'s cleanNulls, ``@json``) and the numeric conversions
billing needs (``@number``, ``@integer``, ``@decimal``, ``@string``), bounded
so that no event value makes them slow or yields a number Lago cannot store.
A present value that cannot be converted raises :class:`Unconvertible`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from lago_segment.lago import number_problem

from ._javascript import js_string, json_text
from ._paths import MISSING, show

__all__ = [
    "Unconvertible",
    "clean_nulls",
    "decode_json",
    "encode_json",
    "flatten",
    "is_blank",
    "storable",
    "template_text",
    "to_decimal",
    "to_integer",
    "to_number",
    "to_string",
]

#: The longest string a numeric conversion looks at (``int("9" * 10**6)`` is slow).
_MAX_NUMBER_TEXT = 100

#: ``@integer`` refuses integers of more digits than this.
_MAX_INTEGER_DIGITS = 30
_NUMBER_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INTEGER_TEXT = re.compile(r"[-+]?\d+")

_SCALARS = frozenset({str, int, float, bool})


class Unconvertible(Exception):
    """Internal: a present value a directive cannot convert (a map-time error)."""


def is_blank(value: Any) -> bool:
    """mapping-kit's blank test for ``@if``'s ``blank``."""
    # mapping-kit: value === undefined || value === null || value == '' (loose
    # equality, so 0, false and [] are blank too).
    if value is MISSING or value is None or value == "" or value is False:
        return True
    if value.__class__ in (int, float) and value == 0:
        return True
    return isinstance(value, list) and not value


def template_text(value: Any) -> str:
    """A resolved value as ``@template`` writes it: nothing for null, JSON for objects."""
    if value.__class__ is str:
        return value
    if value is MISSING or value is None:
        return ""
    if isinstance(value, (Mapping, list)):
        return encode_json(value)  # type: ignore[no-any-return]
    return js_string(value)


def to_number(value: Any) -> Any:
    """``@number``: an int or a finite float; numeric text converted."""
    if value is MISSING or value is None:
        return MISSING
    cls = value.__class__
    if cls is int:
        return value
    if cls is float:
        if not math.isfinite(value):
            raise Unconvertible(f"@number: {value!r} is not a finite number")
        return value
    if isinstance(value, Decimal):
        return to_number(str(value))
    if cls is str:
        text = value.strip()
        if len(text) <= _MAX_NUMBER_TEXT and _NUMBER_TEXT.fullmatch(text):
            if _INTEGER_TEXT.fullmatch(text):
                return int(text)
            number = float(text)
            if number not in (float("inf"), float("-inf")):
                return number
    raise Unconvertible(f"@number: cannot convert {show(value)} to a number")


def to_integer(value: Any) -> Any:
    """``@integer``: an int, from an integral number or numeric text."""
    if value is MISSING or value is None:
        return MISSING
    if value.__class__ is int:
        return value
    if value.__class__ is not bool:
        try:
            exact = to_decimal(value)
        except Unconvertible:
            pass
        else:
            # A huge exponent ("1e99999") would make an integer no JSON can carry.
            if exact == exact.to_integral_value() and exact.adjusted() < _MAX_INTEGER_DIGITS:
                return int(exact)
    raise Unconvertible(f"@integer: cannot convert {show(value)} to an integer")


def to_decimal(value: Any) -> Any:
    """``@decimal``: an exact :class:`~decimal.Decimal` (a float by its shortest repr)."""
    if value is MISSING or value is None:
        return MISSING
    if isinstance(value, Decimal):
        return value
    cls = value.__class__
    if cls is int:
        return Decimal(value)
    text = (repr(value) if cls is float else value.strip()) if cls in (float, str) else None
    if text is not None and len(text) <= _MAX_NUMBER_TEXT and _NUMBER_TEXT.fullmatch(text):
        try:
            return Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            pass
    raise Unconvertible(f"@decimal: cannot convert {show(value)} to a decimal")


def to_string(value: Any) -> Any:
    """``@string``: a scalar as JavaScript's ``String()`` writes it; objects refused."""
    if value is MISSING or value is None:
        return MISSING
    if value.__class__ in _SCALARS:
        return js_string(value)
    if isinstance(value, (Mapping, list)):
        raise Unconvertible(
            f"@string: {show(value)} is an {'object' if isinstance(value, Mapping) else 'array'}"
            '; encode it with {"@json": {"mode": "encode", ...}}'
        )
    if isinstance(value, Decimal):
        return str(value)
    return js_string(value)


def flatten(value: Any, separator: str, omit_arrays: bool = False) -> Any:
    """``@flatten``: nested keys joined by ``separator`` (mapping-kit's flattenObject).

    A value with nothing to flatten (a string, a number, ``null``) becomes
    ``{"": value}``, as mapping-kit's ``flattenObject(5)`` gives ``{"": 5}``;
    a missing value stays missing.
    """
    # mapping-kit's flattenObject: nested keys joined by the separator; with
    # omitArrays, an array is a value rather than something to flatten.
    if value is MISSING:
        return MISSING
    flattens = (Mapping,) if omit_arrays else (Mapping, list)
    if not isinstance(value, flattens):
        return {"": value}
    flat: dict[str, Any] = {}
    # Iterative, so a deeply nested event cannot exhaust the stack.
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        prefix, item = stack.pop()
        if isinstance(item, Mapping):
            children = list(item.items())
        elif isinstance(item, list) and not omit_arrays:
            children = [(str(i), v) for i, v in enumerate(item)]
        else:
            flat[prefix] = item
            continue
        for key, child in reversed(children):
            stack.append((f"{prefix}{separator}{key}" if prefix else str(key), child))
    return flat


def clean_nulls(value: Any) -> Any:
    """mapping-kit's cleanNulls: drop null fields of an object and its nested objects.

    Arrays are left as they are (mapping-kit does not look inside them).
    """
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        out[key] = clean_nulls(item) if isinstance(item, Mapping) else item
    return out


def decode_json(value: Any) -> Any:
    """``@json`` decode: a string parsed as JSON, itself when it is not JSON."""
    # mapping-kit: JSON.parse in a try/catch that returns the string itself when
    # it is not valid JSON; any other value is returned unchanged.
    if value.__class__ is not str:
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def encode_json(value: Any) -> Any:
    """``@json`` encode: a value as ``JSON.stringify`` writes it."""
    if value is MISSING:
        return MISSING
    try:
        return json_text(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise Unconvertible(f"@json encode: {exc}") from None


def storable(value: Any) -> Any:
    """A converted number Lago can store (see :func:`lago_segment.lago.number_problem`)."""
    if value.__class__ in (int, float, Decimal):
        problem = number_problem(value)
        if problem is not None:
            # The number itself is not shown: rendering it may be what costs.
            raise Unconvertible(f"the converted number {problem}")
    return value
