"""Keeping the API key out of reprs, logs and errors: masks and the :class:`Redactor`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import attrs
import httpx

from lago_segment.errors import ConfigurationError


def mask(secret: str) -> str:
    """A stand-in for a secret in reprs: never any of its characters."""
    return "'********'" if secret else "''"


#: What a secret is replaced with in any text the client lets out.
MASK = "********"


def check_api_key(api_key: object) -> str:
    """Return ``api_key`` if it can go in an HTTP header as is, else raise ``ConfigurationError``.

    Only printable ASCII without spaces is accepted: a trailing newline from a
    secrets file, a space or a non-ASCII character would otherwise reach the
    HTTP library, whose error quotes the header value, hence the key, whole.
    The message never contains the key.
    """
    if not isinstance(api_key, str):
        raise ConfigurationError("api_key", f"must be a string, not {type(api_key).__name__}")
    if not api_key.strip():
        raise ConfigurationError("api_key", "must be a non-empty string")
    for position, char in enumerate(api_key):
        if "!" <= char <= "~":
            continue
        if char.isspace() or not char.isprintable():
            what = "whitespace or a control character"
            if char in "\r\n" and position >= len(api_key.rstrip()):
                what = "a trailing newline (read from a file? strip it)"
        else:
            what = "a non-ASCII character"
        raise ConfigurationError(
            "api_key",
            f"contains {what} at position {position} of {len(api_key)}; "
            "an API key is printable ASCII without spaces",
        )
    return api_key


def safe_url(url: str) -> str:
    """``url`` with its userinfo (``user:password@``) masked, for messages and reprs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return url
    if not parsed.userinfo:
        return url
    return str(parsed.copy_with(userinfo=MASK.encode()))


def _variants(secret: str) -> set[str]:
    # The forms a secret takes in messages: as is, in a bytes repr (h11 quotes
    # b'Bearer ...'), JSON-escaped, percent-encoded (a URL's userinfo).
    forms = {secret, repr(secret.encode())[2:-1], json.dumps(secret)[1:-1], quote(secret, safe="")}
    return {form for form in forms if form}


@attrs.frozen(slots=True)
class Redactor:
    """Scrubs one client's secrets (API key, URL userinfo) out of text.

    Calling it returns the text with every secret replaced by ``********``.
    Every error text the client lets out goes through it; other layers (the
    forwarders, the CLI) use the client's :meth:`~lago_segment.client.LagoClient.redact`
    for text that may hold a transport library's message.

    >>> redact = Redactor.for_client("sk_live_123", "https://bob:hunter22@lago.example.com")
    >>> redact("Illegal header value b'Bearer sk_live_123 ' for bob:hunter22@lago")
    "Illegal header value b'Bearer ******** ' for ********@lago"
    """

    secrets: tuple[str, ...] = attrs.field(repr=False)

    @classmethod
    def for_client(cls, api_key: str, api_url: str) -> Redactor:
        """The redactor of a client with this key and origin."""
        found = _variants(api_key)
        try:
            url = httpx.URL(api_url)
        except (httpx.InvalidURL, TypeError):
            url = None
        if url is not None and url.userinfo:
            found.add(url.userinfo.decode("ascii"))
            # Short user names ("a") would garble every message; a credential is longer.
            for part in (url.username, url.password):
                if len(part) >= 3:
                    found |= _variants(part)
        return cls(tuple(sorted(found, key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def found_in(self, data: bytes | str) -> bool:
        """True when one of the secrets appears in ``data``."""
        if isinstance(data, bytes):
            return any(s.encode("utf-8", "replace") in data for s in self.secrets)
        return any(s in data for s in self.secrets)

    def scrub(self, value: Any) -> Any:
        """``value`` (JSON-like: dicts, lists, strings) with the secrets masked in every string."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value

    def chain_is_clean(self, exc: BaseException) -> bool:
        """True when no message in ``exc``'s chain (causes, contexts) holds a secret."""
        seen: set[int] = set()
        todo: list[BaseException | None] = [exc]
        while todo:
            current = todo.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            if self.found_in(str(current)) or any(
                isinstance(a, (str, bytes)) and self.found_in(a) for a in current.args
            ):
                return False
            todo += [current.__cause__, current.__context__]
        return True
