"""JSON on the hot path: orjson when installed (``lago-segment[speedups]``), else the stdlib.

Both paths give the same result, byte for byte and value for value: orjson is
used only where it agrees with the standard library, and anything it would
render or read differently goes through :mod:`json` instead:

- :func:`dumps` renders what ``json.dumps(obj, separators=(",", ":"))``
  renders (ASCII only, ``\\uXXXX`` escapes). orjson writes UTF-8, so its
  non-ASCII output is escaped the same way afterwards; integers beyond 64
  bits, NaN and infinities (which orjson refuses or writes as ``null``),
  floats in exponent form or below 1e-4 (where the two formats can differ),
  and every type orjson does not know go to :mod:`json`. At import, orjson
  renders a set of probe floats and strings; if any comes out differently
  without being caught by those checks (another orjson version), orjson is
  not used at all.
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


_std_encoder = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _std_dumps(obj: Any) -> bytes:
    return _std_encoder.encode(obj).encode()


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


def _byte_table(mapping: dict[bytes, int]) -> bytes:
    table = bytearray(b" " * 256)
    for chars, to in mapping.items():
        for char in chars:
            table[char] = to
    return bytes(table)


# Maps every digit to "0", "e" and "E" to "e", "+" and "-" to "+", anything else
# to " ": a float in exponent form (1e-07, 1.5e+300) then reads "0e+0".
_NUMBER_SHAPES = _byte_table({b"0123456789": 0x30, b"eE": 0x65, b"+-": 0x2B})


def _renders_differently(body: bytes) -> bool:
    # What orjson may render unlike json.dumps: NaN and the infinities (orjson
    # writes null), floats in exponent form (the two formats may switch to it
    # at different sizes) and floats below 1e-4 in plain form (orjson writes
    # 0.00001 where json writes 1e-05). Substring tests run at C speed, unlike
    # a regex; a match inside a string only costs a second, exact rendering.
    return b"null" in body or b"0.0000" in body or b"0e+0" in body.translate(_NUMBER_SHAPES)


def _as_stdlib(body: bytes) -> bytes:
    """orjson's rendering, with strings escaped as json.dumps escapes them."""
    if not body.isascii():
        # Non-ASCII bytes only occur inside strings: escape them as json does.
        body = body.decode().encode("ascii", "lago_segment.json_ascii")
    if b"\x7f" in body:  # DEL: json escapes it, orjson does not
        body = body.replace(b"\x7f", b"\\u007f")
    return body


# Floats and strings across every regime where the formats could differ: orjson
# is used only if, on these, it renders as json.dumps does or the check above
# sends the value to json.dumps. So another orjson version cannot change a byte.
_PROBES: list[Any] = [
    *(10.0**e for e in range(-9, 24)),
    *(1.5 * 10.0**e for e in range(-9, 24)),
    -0.0,
    0.1,
    123.456,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    9007199254740993.0,
    "".join(map(chr, range(0x80))) + "\u00e9\u2028\u20ac\U0001f600",
    {"k": [1, -1, 2**63 - 1, -(2**63), True, False, "x"]},
]


def _agrees(module: ModuleType) -> bool:
    for probe in _PROBES:
        body = module.dumps(probe)
        if not _renders_differently(body) and _as_stdlib(body) != _std_dumps(probe):
            return False
    return True


_orjson = _import_orjson()
if _orjson is not None and not _agrees(_orjson):  # pragma: no cover - other orjson versions
    _orjson = None

#: ``"orjson"`` when the speedups are in use, else ``"json"``.
BACKEND = "json" if _orjson is None else "orjson"

# Maps every digit to "0" and any other byte to " ": a run of 19 digits (an
# integer orjson would read as a float) is then one substring test away.
_DIGITS = _byte_table({b"0123456789": 0x30})
_NINETEEN_DIGITS = b"0" * 19


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
    if _renders_differently(body):
        return _std_dumps(obj)
    return _as_stdlib(body)


def loads(data: str | bytes) -> Any:
    """Parse JSON text, returning exactly what :func:`json.loads` returns.

    ``bytes`` must be UTF-8 (else :class:`UnicodeDecodeError`, a
    ``ValueError``). Raises what :func:`json.loads` raises (``ValueError``,
    or ``RecursionError`` for input nested too deep).
    """
    if _orjson is not None:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if _NINETEEN_DIGITS not in raw.translate(_DIGITS):
            try:
                return _orjson.loads(data)
            except _orjson.JSONDecodeError:
                pass
    # Decoded here: json.loads would also take UTF-16 and UTF-32 bytes.
    return json.loads(data if isinstance(data, str) else data.decode("utf-8"))
