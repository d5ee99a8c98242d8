"""The no-I/O core of the Lago webhook receiver: bytes and headers in, a response out."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from lago_segment._http import json_headers
from lago_segment._metrics import log_fields
from lago_segment.errors import ConfigurationError, LagoSegmentError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from lago_segment.lago import LagoEvent
    from lago_segment.mapping import MappingSpec

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "REASONS",
    "DeadLetterFile",
    "Endpoint",
    "LagoPublicKey",
    "LagoWebhookResponse",
    "RejectedCallback",
    "RejectedEvent",
    "SeenWebhooks",
    "handle",
    "load_public_key",
    "sign_hmac",
    "trace_transaction_id",
]

logger = logging.getLogger("lago_segment")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""An hour of rejected transaction ids can be long: 16 MiB by default."""

REASONS: tuple[str, ...] = (
    "invalid_code",
    "missing_aggregation_property",
    "missing_group_key",
    "invalid_filter_values",
)
"""The lists of an ``events.errors`` webhook, in the order they are reported.

``missing_group_key`` is a legacy list Lago sends as ``null``; should it ever
hold ids, they are reported with that reason too.
"""

_RULE_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


@attrs.frozen(slots=True)
class RejectedEvent:
    """One event Lago accepted, then refused to bill (from an ``events.errors`` webhook)."""

    reason: str
    """Lago's reason: ``invalid_code`` (no billable metric has the event's code),
    ``missing_aggregation_property`` (the metric's ``field_name`` is missing or not
    numeric) or ``invalid_filter_values`` (a filter key with a value the metric
    does not list)."""
    transaction_id: str
    """The event's transaction_id, as Lago reported it."""
    message_id: str | None = None
    """The Segment messageId it derives from (see :func:`trace_transaction_id`)."""
    rule: str | None = None
    """The mapping rule that produced it, when the transaction_id tells."""
    webhook_id: str | None = None
    """The webhook's ``X-Lago-Unique-Key``."""
    organization_id: str | None = None
    """The Lago organization the webhook came from."""


#: What receives each :class:`RejectedEvent` (it may raise: Lago then retries the webhook).
RejectedCallback = Callable[[RejectedEvent], None]


def trace_transaction_id(
    transaction_id: str, spec: MappingSpec | None = None
) -> tuple[str | None, str | None]:
    """The Segment messageId and the rule name a transaction_id was derived from.

    The mapping spec derives transaction ids this way (and must keep doing so:
    a new derivation would give a replayed event a new id, and Lago would bill
    it twice): the messageId when one rule matches an event, and
    ``"<messageId>:<rule name>"`` when several do. Rule names cannot hold a
    ``:``, so the last ``:`` splits the two.

    With the ``spec`` that produced the id, the split is made only when the
    suffix names one of its rules, and a spec of a single rule names it. A rule
    that sets ``transaction_id`` itself makes ids the library cannot trace:
    those come back as ``(None, None)`` when the spec has no rule left that
    uses the default. Without a spec, an id whose tail looks like a rule name is
    split, anything else is taken as a messageId (``rule`` None).

    >>> trace_transaction_id("ajs-1f2e")
    ('ajs-1f2e', None)
    >>> trace_transaction_id("ajs-1f2e:api-calls")
    ('ajs-1f2e', 'api-calls')
    """
    head, colon, tail = transaction_id.rpartition(":")
    if spec is None:
        if colon and head and tail and len(tail) <= 64 and set(tail) <= _RULE_NAME:
            return head, tail
        return transaction_id, None
    rules = spec.rules
    defaults = [r.name for r in rules if "transaction_id" not in r.source]
    if colon and head and tail in {r.name for r in rules}:
        return head, tail
    if not defaults:
        return None, None
    return transaction_id, (rules[0].name if len(rules) == 1 else None)


@attrs.frozen(slots=True)
class LagoWebhookResponse:
    """What to answer Lago, and what the webhook held."""

    status: int
    """The HTTP status code: 200 when done (Lago stops), anything else makes it retry."""
    body: bytes
    """A short JSON body, e.g. ``{"status":"ok","webhook_type":"events.errors","rejected":2}``."""
    webhook_type: str | None = None
    """The webhook's ``webhook_type``, once verified."""
    rejected: tuple[RejectedEvent, ...] = ()
    """The records given to the callback."""
    duplicate: bool = False
    """True when this ``X-Lago-Unique-Key`` was handled already (nothing reported again)."""
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=attrs.Factory(json_headers, takes_self=True)
    )
    """The response headers."""

    def json(self) -> dict[str, Any]:
        """The body, decoded."""
        result: dict[str, Any] = json.loads(self.body)
        return result


def _respond(status: int, error: str | None = None, **fields: Any) -> LagoWebhookResponse:
    data: dict[str, Any] = {"status": "ok" if status < 400 else "error"}
    if error is not None:
        data["error"] = error
    shown = {k: v for k, v in fields.items() if k != "rejected"}
    if "rejected" in fields:
        shown["rejected"] = len(fields["rejected"])
    data.update(shown)
    body = json.dumps(data, separators=(",", ":")).encode()
    return LagoWebhookResponse(status, body, **fields)


class SeenWebhooks:
    """The ``X-Lago-Unique-Key`` of recent webhooks, so a retried delivery is reported once.

    Lago sends a webhook up to 3 times with the same key when it gets no 2xx
    in time. A key is claimed while its webhook is handled, remembered once
    done, and released if handling failed (so Lago's retry is handled). Keeps
    the last ``capacity`` keys, in memory: several processes behind one URL
    each keep their own (see ``docs/production.md``). Thread-safe.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ConfigurationError("capacity", f"must be at least 1, not {capacity}")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, bool] = OrderedDict()  # key -> done

    def __repr__(self) -> str:
        return f"SeenWebhooks({len(self._keys)} of {self.capacity})"

    def claim(self, key: str) -> Literal["new", "busy", "done"]:
        """``new`` (now claimed), ``busy`` (being handled right now) or ``done``."""
        with self._lock:
            done = self._keys.get(key)
            if done is not None:
                return "done" if done else "busy"
            self._keys[key] = False
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)
            return "new"

    def finish(self, key: str, *, ok: bool) -> None:
        """Remember ``key`` as done (``ok``), or forget it so a retry is handled."""
        with self._lock:
            if ok:
                self._keys[key] = True
            else:
                self._keys.pop(key, None)


def sign_hmac(body: bytes, hmac_key: str) -> str:
    """The ``X-Lago-Signature`` of ``body`` in ``hmac`` mode: base64 HMAC-SHA256.

    ``hmac_key`` is the organization's "HMAC Signature Token" (not the API key).

    >>> sign_hmac(b'{"webhook_type":"events.errors"}', "5d0c7a40-hmac-key")
    'usQsAzJdUalMRENGmTk7Qk3pYneskb/P8eJbFwxssYQ='
    """
    digest = hmac.new(hmac_key.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def load_public_key(pem: str | bytes) -> RSAPublicKey:
    """Lago's RSA public key from a PEM, or from the base64 of a PEM as Lago's API serves it.

    Raises :class:`~lago_segment.ConfigurationError` when it is not an RSA
    public key, and when the ``cryptography`` package (the
    ``lago-segment[lago-webhooks]`` extra) is not installed.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        raise ConfigurationError(
            "public_key",
            "jwt signatures need the cryptography package: "
            "pip install lago-segment[lago-webhooks]",
        ) from None
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    if b"-----BEGIN" not in data:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("public_key", "neither a PEM nor base64 of one") from None
    try:
        key = load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigurationError("public_key", f"not a PEM public key ({exc})") from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("public_key", "Lago signs with RS256: expected an RSA key")
    return key


def _jwt_ok(token: str, body: bytes, key: RSAPublicKey, issuer: str | None) -> bool:
    """Verify a compact JWS: RS256 only (no other alg is tried), claims ``data`` == the body."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = token.strip().split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(_b64url(parts[0]))
        signature = _b64url(parts[2])
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            return False
        signed = f"{parts[0]}.{parts[1]}".encode("ascii")
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error, InvalidSignature, UnicodeError, RecursionError):
        return False  # RecursionError: a header nested deeper than json can read
    if not isinstance(claims, dict):
        return False
    if issuer is not None and claims.get("iss") != issuer:
        return False
    data = claims.get("data")
    return isinstance(data, str) and hmac.compare_digest(data.encode(), body)


def _mask(secret: object) -> str:
    return "None" if secret is None else "'***'"


class LagoPublicKey:
    """Lago's webhook public key: given, or fetched once from Lago and then cached.

    ``LagoPublicKey(pem)`` uses a key you have (a PEM, or its base64 as Lago
    serves it). ``LagoPublicKey.from_lago(api_key, api_url=...)`` fetches it
    from ``GET /api/v1/webhooks/json_public_key`` on first use (or when
    :meth:`get` is called at start-up), once; a failed fetch is tried again on
    the next use. The API key is masked in the repr and never logged.
    """

    def __init__(self, pem: str | bytes | None = None) -> None:
        self._key: RSAPublicKey | None = None if pem is None else load_public_key(pem)
        self._api_key: str | None = None
        self._api_url: str | None = None
        self._timeout = 10.0
        self._lock = threading.Lock()

    @classmethod
    def from_lago(
        cls, api_key: str, *, api_url: str = "https://api.getlago.com", timeout: float = 10.0
    ) -> LagoPublicKey:
        """A key fetched from Lago (once, on first use) with ``api_key``."""
        from lago_segment.client._urls import check_api_url

        if not api_key:
            raise ConfigurationError("api_key", "is empty")
        load = cls()
        load._api_key = api_key
        load._api_url = check_api_url(api_url, allow_insecure_http=False)
        load._timeout = timeout
        return load

    def __repr__(self) -> str:
        where = "given" if self._api_url is None else f"from {self._api_url}"
        state = "loaded" if self._key is not None else "not loaded"
        return f"LagoPublicKey({where}, {state}, api_key={_mask(self._api_key)})"

    @property
    def loaded(self) -> bool:
        """True once the key is known (no I/O needed to verify)."""
        return self._key is not None

    def get(self) -> RSAPublicKey:
        """The key, fetching it first if needed (blocking I/O, once).

        Raises :class:`~lago_segment.LagoSegmentError` (a Lago API or transport
        error) when the fetch fails.
        """
        if self._key is not None:
            return self._key
        with self._lock:
            if self._key is None:
                self._key = self._fetch()
        return self._key

    def _fetch(self) -> RSAPublicKey:
        import httpx

        from lago_segment.client._responses import error_from_response, transport_error

        if self._api_url is None or self._api_key is None:
            raise ConfigurationError("public_key", "no key given and no Lago to fetch it from")
        url = f"{self._api_url}/api/v1/webhooks/json_public_key"
        try:
            response = httpx.get(
                url, headers={"Authorization": f"Bearer {self._api_key}"}, timeout=self._timeout
            )
        except httpx.TransportError as exc:
            raise transport_error(exc) from None
        if not response.is_success:
            raise error_from_response(response)
        try:
            pem = response.json()["webhook"]["public_key"]
        except (ValueError, KeyError, TypeError):
            raise ConfigurationError(
                "public_key", f"{url} did not answer {{'webhook': {{'public_key': ...}}}}"
            ) from None
        return load_public_key(pem)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _verified(
    body: bytes,
    headers: Mapping[str, str],
    hmac_key: str | None,
    public_key: LagoPublicKey | None,
    issuer: str | None,
) -> LagoWebhookResponse | None:
    """None when the signature is right, else the 401 (or 503: key unavailable) to answer."""
    signature = _header(headers, "X-Lago-Signature")
    algorithm = (_header(headers, "X-Lago-Signature-Algorithm") or "").strip().lower()
    if not signature:
        return _respond(401, "missing X-Lago-Signature")
    if algorithm == "hmac" and hmac_key is not None:
        if hmac.compare_digest(sign_hmac(body, hmac_key).encode(), signature.strip().encode()):
            return None
    elif algorithm == "jwt" and public_key is not None:
        try:
            key = public_key.get()
        except LagoSegmentError as exc:
            logger.warning("lago_segment: cannot load Lago's webhook public key: %s", exc)
            return _respond(503, "Lago's public key is not available yet")
        if _jwt_ok(signature, body, key, issuer):
            return None
    else:
        return _respond(401, f"signature algorithm {algorithm or 'missing'!r} is not accepted")
    return _respond(401, "bad X-Lago-Signature")


def handle(
    body: bytes,
    headers: Mapping[str, str],
    on_rejected: RejectedCallback | Iterable[RejectedCallback],
    *,
    hmac_key: str | None = None,
    public_key: LagoPublicKey | str | bytes | None = None,
    issuer: str | None = None,
    spec: MappingSpec | None = None,
    seen: SeenWebhooks | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> LagoWebhookResponse:
    """Verify one webhook from Lago and report each event an ``events.errors`` rejects.

    Give ``hmac_key`` (the organization's HMAC Signature Token) for endpoints
    in ``hmac`` mode, ``public_key`` for ``jwt`` mode (a loaded
    :class:`LagoPublicKey` keeps this function free of I/O), or both. A
    webhook signed in a mode not configured, unsigned, or wrongly signed gets
    401; ``issuer``, when given, must equal the JWT's ``iss`` (your
    ``LAGO_API_URL``). Then:

    - ``events.errors``: every transaction id becomes a :class:`RejectedEvent`
      (traced back to its messageId and rule with :func:`trace_transaction_id`
      and ``spec``) handed to each ``on_rejected`` callback; 200.
    - other webhook types: 200, nothing reported (``webhook_type`` says which).
    - a webhook whose ``X-Lago-Unique-Key`` is in ``seen`` already: 200,
      ``duplicate`` True, nothing reported again; one being handled by another
      thread: 503, so Lago tries again later.
    - a callback that raises: 500, and the key is forgotten, so Lago's retry
      is handled (callbacks should therefore tolerate a record seen twice).

    >>> body = b'{"webhook_type":"events.errors","object_type":"events_errors",' \\
    ...        b'"events_errors":{"invalid_code":["m1:api-calls"]}}'
    >>> headers = {"X-Lago-Signature": sign_hmac(body, "k"), "X-Lago-Signature-Algorithm": "hmac"}
    >>> handle(body, headers, print, hmac_key="k").status  # doctest: +NORMALIZE_WHITESPACE
    RejectedEvent(reason='invalid_code', transaction_id='m1:api-calls', message_id='m1',
                  rule='api-calls', webhook_id=None, organization_id=None)
    200
    """
    if len(body) > max_body_bytes:
        return _respond(413, f"body larger than {max_body_bytes} bytes")
    if hmac_key is None and public_key is None:
        raise ConfigurationError("hmac_key", "give hmac_key or public_key: unsigned is refused")
    key = (
        public_key
        if public_key is None or isinstance(public_key, LagoPublicKey)
        else LagoPublicKey(public_key)
    )
    refused = _verified(body, headers, hmac_key, key, issuer)
    if refused is not None:
        return refused
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return _respond(400, "the body is not a JSON object")
    kind = data.get("webhook_type")
    kind = kind if isinstance(kind, str) else None
    unique = _header(headers, "X-Lago-Unique-Key")
    if unique and seen is not None:
        state = seen.claim(unique)
        if state == "done":
            return _respond(200, webhook_type=kind, duplicate=True)
        if state == "busy":
            return _respond(503, "this webhook is being handled", webhook_type=kind)
    callbacks = (on_rejected,) if callable(on_rejected) else tuple(on_rejected)
    try:
        records = _rejected(data, unique, spec) if kind == "events.errors" else ()
        for record in records:
            logger.info(
                "lago_segment: Lago rejected transaction_id=%s (%s), messageId=%s rule=%s",
                record.transaction_id,
                record.reason,
                record.message_id,
                record.rule,
                extra=log_fields(record.message_id, record.rule, record.transaction_id),
            )
            for callback in callbacks:
                callback(record)
    except Exception:
        logger.exception("lago_segment: a Lago webhook callback raised; Lago will retry")
        if unique and seen is not None:
            seen.finish(unique, ok=False)
        return _respond(500, "the webhook could not be handled", webhook_type=kind)
    if unique and seen is not None:
        seen.finish(unique, ok=True)
    return _respond(200, webhook_type=kind, rejected=records)


def _rejected(
    data: Mapping[str, Any], unique: str | None, spec: MappingSpec | None
) -> tuple[RejectedEvent, ...]:
    lists = data.get("events_errors")
    if not isinstance(lists, Mapping):
        return ()
    organization = data.get("organization_id")
    organization = organization if isinstance(organization, str) else None
    records = []
    for reason in (*REASONS, *sorted(k for k in lists if k not in REASONS)):
        ids = lists.get(reason)
        if not isinstance(ids, list):
            continue
        for tx in dict.fromkeys(i for i in ids if isinstance(i, str)):
            message_id, rule = trace_transaction_id(tx, spec)
            records.append(RejectedEvent(reason, tx, message_id, rule, unique, organization))
    return tuple(records)


class DeadLetterFile:
    """An ``on_rejected`` callback appending each record to a JSON-lines file (mode 0600).

    A line has the shape of ``lago-segment replay``'s dead-letter records,
    ``{"lago_event": {...}, "error": ..., "permanent": true, "source": ...}``,
    plus ``reason``, ``transaction_id``, ``message_id``, ``rule`` and
    ``webhook_id``. Lago's webhook names transaction ids only: ``lago_event``
    is there when ``lookup`` (transaction_id -> the
    :class:`~lago_segment.LagoEvent` you sent, or None) finds it, so that
    ``lago-segment replay --lago-events FILE`` can send it once Lago is
    fixed; otherwise the line names the messageId to map again from your
    archive. Each line is flushed when written. Thread-safe.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lookup: Callable[[str], LagoEvent | None] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._lookup = lookup
        self._lock = threading.Lock()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def __repr__(self) -> str:
        return f"DeadLetterFile({self.path!r})"

    def __call__(self, record: RejectedEvent) -> None:
        """Append one record."""
        line: dict[str, Any] = {}
        event = self._lookup(record.transaction_id) if self._lookup is not None else None
        if event is not None:
            line["lago_event"] = event.to_dict()
        line.update(
            error=f"Lago events.errors: {record.reason}",
            permanent=True,
            source=f"lago-webhook:{record.webhook_id or '-'}",
            reason=record.reason,
            transaction_id=record.transaction_id,
            message_id=record.message_id,
            rule=record.rule,
            webhook_id=record.webhook_id,
        )
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._file.close()


@attrs.frozen(slots=True)
class Endpoint:
    """What the ASGI and WSGI adapters share: the configuration and the checks made
    before reading a body. Secrets are masked in the repr."""

    on_rejected: tuple[RejectedCallback, ...]
    hmac_key: str | None = attrs.field(default=None, repr=_mask)
    public_key: LagoPublicKey | None = None
    issuer: str | None = None
    spec: MappingSpec | None = attrs.field(default=None, repr=False)
    seen: SeenWebhooks | None = attrs.field(factory=SeenWebhooks)
    path: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def create(
        cls,
        on_rejected: RejectedCallback | Iterable[RejectedCallback] | None,
        *,
        hmac_key: str | None,
        public_key: LagoPublicKey | str | bytes | None,
        issuer: str | None,
        spec: MappingSpec | None,
        dead_letter: str | os.PathLike[str] | None,
        path: str | None,
        max_body_bytes: int,
    ) -> Endpoint:
        """Check the options and build the endpoint (the dead-letter file is opened here)."""
        if hmac_key is None and public_key is None:
            raise ConfigurationError(
                "hmac_key", "give hmac_key or public_key: unsigned is refused"
            )
        if hmac_key is not None and not hmac_key:
            raise ConfigurationError("hmac_key", "is empty")
        callbacks: list[RejectedCallback] = []
        if on_rejected is not None:
            callbacks += [on_rejected] if callable(on_rejected) else list(on_rejected)
        if dead_letter is not None:
            callbacks.append(DeadLetterFile(dead_letter))
        if not callbacks:
            raise ConfigurationError("on_rejected", "give on_rejected or dead_letter")
        key = (
            public_key
            if public_key is None or isinstance(public_key, LagoPublicKey)
            else LagoPublicKey(public_key)
        )
        return cls(
            tuple(callbacks), hmac_key, key, issuer, spec, SeenWebhooks(), path, max_body_bytes
        )

    @property
    def needs_key(self) -> bool:
        """True while a jwt public key still has to be fetched (blocking I/O)."""
        return self.public_key is not None and not self.public_key.loaded

    def precheck(
        self, method: str, path: str, content_length: str | None
    ) -> LagoWebhookResponse | None:
        """The answer due before reading the body (wrong path or method, too long), or None."""
        if self.path is not None and path != self.path:
            return _respond(404, "not found")
        if method != "POST":
            return _respond(405, "only POST")
        if content_length is not None:
            try:
                length = int(content_length)
            except ValueError:
                return _respond(400, "bad Content-Length")
            if length > self.max_body_bytes:
                return self.too_large()
        return None

    def too_large(self) -> LagoWebhookResponse:
        """The 413 answer."""
        return _respond(413, f"body larger than {self.max_body_bytes} bytes")

    def close(self) -> None:
        """Close the dead-letter file, if one was asked for."""
        for callback in self.on_rejected:
            if isinstance(callback, DeadLetterFile):
                callback.close()

    def handle(self, body: bytes, headers: Mapping[str, str]) -> LagoWebhookResponse:
        """:func:`handle` with this endpoint's configuration."""
        return handle(
            body,
            headers,
            self.on_rejected,
            hmac_key=self.hmac_key,
            public_key=self.public_key,
            issuer=self.issuer,
            spec=self.spec,
            seen=self.seen,
            max_body_bytes=self.max_body_bytes,
        )
