"""JSON on the hot path: orjson when installed (``lago-segment[speedups]``), else the stdlib.

Both paths give the same result, byte for byte and value for value: orjson is
used only where it agrees with the standard library, and anything it would
render or read differently goes through :mod:`json` instead:

- :func:`dumps` renders what ``json.dumps(obj, separators=(",", ":"))``
  renders (ASCII only, ``\\uXXXX`` escapes). orjson writes UTF-8, so its
  non-ASCII output is escaped the same way afterwards; integers beyond 64
  bits, NaN and infinities (which orjson refuses or writes as ``null``),
  floats the two libraries format differently (below 1e-4 or from 1e16 up),
  and every type orjson does not know go to :mod:`json`.
- :func:`loads` returns what :func:`json.loads` returns. orjson reads an
  integer beyond 64 bits as a float, so input with a run of 19 digits or more
  goes to :mod:`json`, as does everything orjson rejects (NaN, ``1e400``, lone
  surrogates, a BOM, nesting deeper than 1024): :mod:`json` then accepts it or
  raises exactly as it always did.

``LAGO_SEGMENT_NO_SPEEDUPS=1`` in the environment (read at import) forces the
standard library even when orjson is installed; :data:`BACKEND` says which
one is in use.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from types import ModuleType
from typing import Any

__all__ = ["BACKEND", "dumps", "loads"]


def _import_orjson() -> ModuleType | None:
    if os.environ.get("LAGO_SEGMENT_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        import orjson
    except ImportError:
        return None
    return orjson


_orjson = _import_orjson()

#: ``"orjson"`` when the speedups are in use, else ``"json"``.
BACKEND = "json" if _orjson is None else "orjson"

_std_encoder = json.JSONEncoder(separators=(",", ":"), check_circular=False)

# What orjson renders differently from json.dumps, as orjson writes it: `null`
# (NaN and infinities become null), a float in exponent form or below 1e-4
# ("0.00001" where json writes "1e-05"), or one of 17 digits or more before the
# point (from 1e16 json uses an exponent). The look-behind keeps to values; a
# match inside a string only costs a second, exact rendering.
_DIFFERENT_FLOAT = re.compile(
    rb"null|(?:^|[:,\[])(?:-?\d+(?:\.\d+)?[eE]|-?0\.0000|-?\d{17,}\.)"
)
# orjson reads an integer beyond 64 bits as a float: 19 digits or more in a row.
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")
_LONG_DIGITS_STR = re.compile(r"\d{19}")


def _escape_non_ascii(error: UnicodeError) -> tuple[str, int]:
    # json.dumps escapes every non-ASCII character as \uXXXX (lowercase hex), a
    # character beyond the BMP as its UTF-16 surrogate pair.
    assert isinstance(error, UnicodeEncodeError)
    out = []
    for char in error.object[error.start : error.end]:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out), error.end


codecs.register_error("lago_segment.json_ascii", _escape_non_ascii)


def _std_dumps(obj: Any) -> bytes:
    return _std_encoder.encode(obj).encode()


def dumps(obj: Any) -> bytes:
    """Compact JSON as ASCII bytes: exactly ``json.dumps(obj, separators=(",", ":")).encode()``.

    No circularity check (as in ``check_circular=False``): the callers build
    what they render. Raises what :func:`json.dumps` raises (``TypeError`` for
    a value JSON cannot carry).
    """
    if _orjson is None:
        return _std_dumps(obj)
    try:
        body: bytes = _orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _std_dumps(obj)
    if _DIFFERENT_FLOAT.search(body):
        return _std_dumps(obj)
    if not body.isascii():
        # Non-ASCII bytes only occur inside strings: escape them as json does.
        body = body.decode().encode("ascii", "lago_segment.json_ascii")
    if b"\x7f" in body:  # DEL: json escapes it, orjson does not
        body = body.replace(b"\x7f", b"\\u007f")
    return body


def loads(data: str | bytes) -> Any:
    """Parse JSON text, returning exactly what :func:`json.loads` returns.

    ``bytes`` must be UTF-8 (else :class:`UnicodeDecodeError`, a
    ``ValueError``). Raises what :func:`json.loads` raises (``ValueError``,
    or ``RecursionError`` for input nested too deep).
    """
    if _orjson is not None:
        long_digits = _LONG_DIGITS_STR if isinstance(data, str) else _LONG_DIGITS_BYTES
        if not long_digits.search(data):  # type: ignore[arg-type]
            try:
                return _orjson.loads(data)
            except _orjson.JSONDecodeError:
                pass
    # Decoded here: json.loads would also take UTF-16 and UTF-32 bytes.
    return json.loads(data if isinstance(data, str) else data.decode("utf-8"))
