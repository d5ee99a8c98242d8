"""ISO 8601 timestamps as Segment writes them: parsing and rendering.

Shared by the events parser and the mapping spec's directives.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone

_UTC = timezone.utc


# Python 3.10's fromisoformat rejects "Z" and fractions of other than 3 or 6
# digits; this pattern covers the RFC 3339 forms it misses.
ISO_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?"
    r"\s*(?:([Zz])|([+-]\d{2}(?::?\d{2})?))?"
)


_Z_NEEDS_REWRITE = sys.version_info < (3, 11)


def parse_iso(text: str) -> datetime | None:
    """An aware datetime for an ISO-8601 string (naive means UTC), or None."""
    dt: datetime | None
    # Most Segment timestamps end in "Z", which 3.10's fromisoformat rejects
    # (3.11's takes it as it is).
    fast = text[:-1] + "+00:00" if _Z_NEEDS_REWRITE and text[-1:] == "Z" else text
    try:
        dt = datetime.fromisoformat(fast)
    except ValueError:
        dt = parse_iso_slow(text)
        if dt is None:
            return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=_UTC)
    return dt


def parse_iso_slow(text: str) -> datetime | None:
    m = ISO_RE.fullmatch(text)
    if m is None:
        return None
    date, time, frac, zulu, offset = m.groups()
    # Sub-microsecond digits cannot be held by datetime: truncated.
    frac = "" if frac is None else "." + (frac + "00000")[:6]
    if zulu:
        offset = "+00:00"
    elif offset is not None and len(offset) == 3:
        offset += ":00"
    elif offset is not None and ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    try:
        return datetime.fromisoformat(f"{date}T{time}{frac}{offset or ''}")
    except ValueError:
        return None


def render_iso(dt: datetime) -> str:
    """ISO-8601 UTC with a ``Z``: milliseconds, or microseconds when needed."""
    dt = dt.astimezone(_UTC)
    us = dt.microsecond
    frac = f"{us // 1000:03d}" if us % 1000 == 0 else f"{us:06d}"
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{frac}Z"
