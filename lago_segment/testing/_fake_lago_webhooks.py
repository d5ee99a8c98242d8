"""FakeLago's billable metrics, post-validation and webhook signing (Lago's semantics).

Kept beside ``_fake_lago.py`` so the events endpoints stay readable there.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from lago_segment.testing._fake_lago import FakeLago
    from lago_segment.testing._lago_answers import Outcome

__all__ = ["billable_metric", "get", "post_validate", "public_key_b64", "sign"]

AGGREGATIONS = (
    "count_agg",
    "sum_agg",
    "max_agg",
    "unique_count_agg",
    "weighted_sum_agg",
    "latest_agg",
    "custom_agg",
)
#: Aggregations that read the metric's field_name, and those that need it numeric.
WITH_FIELD = frozenset(
    ("sum_agg", "max_agg", "unique_count_agg", "weighted_sum_agg", "latest_agg")
)
NUMERIC_FIELD = frozenset(("sum_agg", "max_agg", "weighted_sum_agg", "latest_agg"))


def billable_metric(
    code: str,
    aggregation_type: str,
    field_name: str | None,
    filters: Mapping[str, Iterable[str]] | None,
) -> dict[str, Any]:
    """A billable metric as ``GET /api/v1/billable_metrics`` renders it."""
    from lago_segment.errors import ConfigurationError

    if aggregation_type not in AGGREGATIONS:
        raise ConfigurationError(
            "aggregation_type", f"{aggregation_type!r} is not one of {', '.join(AGGREGATIONS)}"
        )
    if aggregation_type in WITH_FIELD and not field_name:
        raise ConfigurationError("field_name", f"{aggregation_type} needs a field_name")
    return {
        "lago_id": str(uuid.uuid4()),
        "name": code.replace("_", " ").title(),
        "code": code,
        "description": None,
        "aggregation_type": aggregation_type,
        "weighted_interval": "seconds" if aggregation_type == "weighted_sum_agg" else None,
        "recurring": False,
        "rounding_function": None,
        "rounding_precision": None,
        "created_at": "2026-01-01T00:00:00Z",
        "field_name": field_name,
        "expression": None,
        "filters": [
            {"key": key, "values": [str(v) for v in values]}
            for key, values in (filters or {}).items()
        ],
    }


def _numeric(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            return math.isfinite(float(value))
        except ValueError:
            return False
    return False


def post_validate(
    events: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Lago's ``events.errors`` lists for ``events`` (distinct transaction ids, in order)."""
    by_code = {m["code"]: m for m in metrics}
    errors: dict[str, dict[str, None]] = {
        "invalid_code": {},
        "missing_aggregation_property": {},
        "invalid_filter_values": {},
    }
    for event in events:
        tx = event["transaction_id"]
        metric = by_code.get(event["code"])
        if metric is None:
            errors["invalid_code"][tx] = None
            continue
        properties = event.get("properties") or {}
        kind, field = metric["aggregation_type"], metric.get("field_name")
        if kind in WITH_FIELD and field:
            value = properties.get(field)
            if value is None or (kind in NUMERIC_FIELD and not _numeric(value)):
                errors["missing_aggregation_property"][tx] = None
        for metric_filter in metric.get("filters") or []:
            key = metric_filter["key"]
            if key in properties and str(properties[key]) not in metric_filter["values"]:
                errors["invalid_filter_values"][tx] = None
    return {reason: list(ids) for reason, ids in errors.items()}


def get(fake: FakeLago, path: str, query: str) -> Outcome:
    """Answer a GET: the billable metrics (paginated) or the webhooks' public key."""
    from lago_segment.testing._lago_answers import Outcome, error

    if path == "/api/v1/billable_metrics":
        params = parse_qs(query)
        try:
            page = int(params.get("page", ["1"])[0])
            per_page = int(params.get("per_page", ["100"])[0])
        except ValueError:
            return error(400, "BadRequest: page and per_page are integers")
        page, per_page = max(page, 1), min(max(per_page, 1), 100)
        metrics = list(fake.billable_metrics)
        total_pages = max(math.ceil(len(metrics) / per_page), 1)
        chunk = metrics[(page - 1) * per_page : page * per_page]
        meta = {
            "current_page": page,
            "next_page": page + 1 if page < total_pages else None,
            "prev_page": page - 1 if page > 1 else None,
            "total_pages": total_pages,
            "total_count": len(metrics),
        }
        return Outcome(200, {"billable_metrics": chunk, "meta": meta})
    if path == "/api/v1/webhooks/json_public_key":
        return Outcome(200, {"webhook": {"public_key": public_key_b64(fake)}})
    return error(404, "Not Found", code="route_not_found")


def _private_key(fake: FakeLago) -> Any:
    if fake._rsa_key is None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        fake._rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return fake._rsa_key


def public_key_b64(fake: FakeLago) -> str:
    """Base64 of the PEM public key, as ``GET /api/v1/webhooks/json_public_key`` has it."""
    from cryptography.hazmat.primitives import serialization

    pem = (
        _private_key(fake)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(pem).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(fake: FakeLago, body: bytes, algorithm: str, issuer: str) -> str:
    """``X-Lago-Signature`` for ``body``: hmac with the fake's key, or an RS256 JWT."""
    from lago_segment.errors import ConfigurationError
    from lago_segment.lago_webhooks import sign_hmac

    if algorithm == "hmac":
        return sign_hmac(body, fake.webhook_hmac_key)
    if algorithm != "jwt":
        raise ConfigurationError("algorithm", f"must be 'hmac' or 'jwt', not {algorithm!r}")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = _b64url(json.dumps({"alg": "RS256"}).encode())
    claims = _b64url(json.dumps({"data": body.decode(), "iss": issuer}).encode())
    signed = f"{header}.{claims}".encode("ascii")
    signature = _private_key(fake).sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{_b64url(signature)}"
