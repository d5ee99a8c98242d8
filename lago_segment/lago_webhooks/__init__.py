"""Receive Lago's webhooks, and trace each event Lago refused to bill back to Segment.

Lago answers 200 to an event and validates it later: an event whose ``code``
matches no billable metric, that lacks the metric's ``field_name``, or whose
filter values are unknown is reported only by the hourly ``events.errors``
webhook, as transaction ids. This receiver verifies the webhook (``hmac`` or
``jwt`` signatures), traces every transaction id back to its Segment
messageId and mapping rule, and hands one :class:`RejectedEvent` per event to
your callbacks or to a dead-letter file.

The core, :func:`handle`, does no I/O; :func:`asgi_app` and :func:`wsgi_app`
wrap it as standalone apps. See ``docs/production.md``.

Example::

    from lago_segment.lago_webhooks import asgi_app

    app = asgi_app(
        alert_on_rejected,
        hmac_key=os.environ["LAGO_WEBHOOK_HMAC_KEY"],
        spec=MappingSpec.load("lago-mapping.toml"),
        dead_letter="lago-rejected.jsonl",
    )
"""

from __future__ import annotations

from lago_segment.lago_webhooks._asgi import LagoWebhookASGIApp, asgi_app
from lago_segment.lago_webhooks._dead_letter import DeadLetterFile
from lago_segment.lago_webhooks._receiver import (
    DEFAULT_MAX_BODY_BYTES,
    LagoWebhookResponse,
    SeenWebhooks,
    handle,
)
from lago_segment.lago_webhooks._rejected import (
    REASONS,
    RejectedCallback,
    RejectedEvent,
    trace_transaction_id,
)
from lago_segment.lago_webhooks._signatures import LagoPublicKey, load_public_key, sign_hmac
from lago_segment.lago_webhooks._wsgi import LagoWebhookWSGIApp, wsgi_app

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "REASONS",
    "DeadLetterFile",
    "LagoPublicKey",
    "LagoWebhookASGIApp",
    "LagoWebhookResponse",
    "LagoWebhookWSGIApp",
    "RejectedCallback",
    "RejectedEvent",
    "SeenWebhooks",
    "asgi_app",
    "handle",
    "load_public_key",
    "sign_hmac",
    "trace_transaction_id",
    "wsgi_app",
]
