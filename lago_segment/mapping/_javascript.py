"""Values written as JavaScript writes them: ``String(value)`` and ``JSON.stringify``.

mapping-kit and Segment's trigger evaluator are JavaScript, so wherever a value
becomes text (a template, ``@string``, ``@replace``, ``@json``, an FQL literal
compared as text) it is written as JavaScript would write it; a spec then maps
an event here exactly as it does in Segment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ._paths import MISSING, show

__all__ = ["js_number", "js_string", "json_text"]


def js_number(value: float | int) -> str:
    """A number as JavaScript's ``String(number)`` writes it (ECMAScript Number::toString).

    ``1e-06`` -> ``"0.000001"``, ``1e-07`` -> ``"1e-7"``, ``100.0`` -> ``"100"``,
    ``1e21`` -> ``"1e+21"``. Python's ``repr`` already gives the shortest digits
    that round-trip, as JavaScript does; only the layout differs. An ``int``
    keeps every digit (JavaScript would round one beyond 2**53: a billing
    quantity is never silently altered).
    """
    if value.__class__ is not float:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # also -0.0, as in JavaScript
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # n: where the decimal point sits relative to the first significant digit.
    n = (
        len(whole.lstrip("0"))
        if whole.strip("0")
        else -(len(fraction) - len(fraction.lstrip("0")))
    )
    n += int(exp_text or 0)
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def js_string(value: Any) -> str:
    """JavaScript's ``String(value)``: the text of a value wherever one becomes text."""
    if value.__class__ is str:
        return value
    if value is MISSING:
        return "undefined"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return js_number(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


_dumps_string = json.JSONEncoder(ensure_ascii=False).encode


_MAX_ARRAY_INDEX = 2**32 - 2


def _is_array_index(key: str) -> bool:
    """True for a key JavaScript treats as an array index ("0", "7", not "07" or "-1")."""
    return (
        key.isascii()
        and key.isdigit()
        and (key == "0" or key[0] != "0")
        and int(key) <= _MAX_ARRAY_INDEX
    )


def _js_ordered(value: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    """An object's members in JavaScript's order: array-index keys ascending, then the rest.

    ``JSON.stringify({"b": 1, "2": 1, "1": 1})`` is ``{"1":1,"2":1,"b":1}``:
    a JavaScript object lists its integer-like keys first, in numeric order,
    then its other keys in insertion order.
    """
    indices: list[tuple[str, Any]] = []
    others: list[tuple[str, Any]] = []
    for k, v in value.items():
        key = str(k)
        (indices if _is_array_index(key) else others).append((key, v))
    if not indices:
        return others
    indices.sort(key=lambda item: int(item[0]))
    return indices + others


def json_text(value: Any) -> str:
    """``JSON.stringify`` of a resolved value: compact, numbers written as JavaScript does.

    :data:`MISSING` members are left out of objects and written ``null`` in arrays,
    as JavaScript does with ``undefined``. Raises :class:`ValueError` for a
    non-finite number and :class:`TypeError` for a value JSON cannot hold.
    """
    if value.__class__ is str:
        return _dumps_string(value)  # type: ignore[no-any-return,unused-ignore]
    cls = value.__class__
    if value is None or cls is bool or cls is int:
        return js_string(value)  # null, true, false, an integer: as String() writes them
    if cls is float:
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return js_number(value)
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(
                f"{_dumps_string(k)}:{json_text(v)}"
                for k, v in _js_ordered(value)
                if v is not MISSING
            )
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join("null" if v is MISSING else json_text(v) for v in value) + "]"
    raise TypeError(f"{show(value)} ({type(value).__name__}) is not JSON")
