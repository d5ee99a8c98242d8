"""How Lago signs its webhooks: ``hmac`` (HMAC-SHA256) and ``jwt`` (RS256), and Lago's public key.

The checks never raise on a bad signature (they answer False); only a key
that cannot be loaded raises :class:`~lago_segment.ConfigurationError`, and
a failed fetch of Lago's key a :class:`~lago_segment.LagoSegmentError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from typing import TYPE_CHECKING

from lago_segment._http import mask
from lago_segment._types import US_API_URL
from lago_segment.errors import ConfigurationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = ["LagoPublicKey", "hmac_ok", "jwt_ok", "load_public_key", "sign_hmac"]


def sign_hmac(body: bytes, hmac_key: str) -> str:
    """The ``X-Lago-Signature`` of ``body`` in ``hmac`` mode: base64 HMAC-SHA256.

    ``hmac_key`` is the organization's "HMAC Signature Token" (not the API key).

    >>> sign_hmac(b'{"webhook_type":"events.errors"}', "5d0c7a40-hmac-key")
    'usQsAzJdUalMRENGmTk7Qk3pYneskb/P8eJbFwxssYQ='
    """
    digest = hmac.new(hmac_key.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def hmac_ok(signature: str, body: bytes, hmac_key: str) -> bool:
    """Whether ``signature`` (an ``X-Lago-Signature`` in ``hmac`` mode) signs ``body``."""
    return hmac.compare_digest(sign_hmac(body, hmac_key).encode(), signature.strip().encode())


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


def jwt_ok(token: str, body: bytes, key: RSAPublicKey, issuer: str | None) -> bool:
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
        cls, api_key: str, *, api_url: str = US_API_URL, timeout: float = 10.0
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
        return f"LagoPublicKey({where}, {state}, api_key={mask(self._api_key)})"

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
