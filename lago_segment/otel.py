"""OpenTelemetry metrics of the forwarders and clients (the ``otel`` extra).

Install ``lago-segment[otel]`` and the forwarders and clients record through
the global meter provider, on the meter ``lago_segment``, as OpenTelemetry
asks of libraries: configure the SDK and an exporter in your application, and
the instruments below appear. Without the extra nothing is recorded and
``opentelemetry`` is never imported. ``docs/production.md`` lists every
instrument and attribute, with suggested alerts.

>>> from lago_segment.otel import METER_NAME, OUTCOMES
>>> METER_NAME
'lago_segment'
>>> OUTCOMES[:3]
('mapped', 'skipped', 'discarded')
"""

from __future__ import annotations

from typing import Any

from lago_segment._metric_names import ATTRIBUTES, INSTRUMENTS, METER_NAME, OUTCOMES
from lago_segment._metrics import enabled, use_meter_provider

__all__ = [
    "ATTRIBUTES",
    "INSTRUMENTS",
    "METER_NAME",
    "OUTCOMES",
    "enabled",
    "name_forwarder",
    "use_meter_provider",
]


def name_forwarder(forwarder: Any, name: str) -> None:
    """Set the ``lago_segment.forwarder.name`` attribute of what ``forwarder`` records.

    Forwarders are named ``default`` until then; name them when a process runs
    several, so their counts and queue depths stay apart::

        billing = Forwarder(client, spec=spec)
        name_forwarder(billing, "billing")

    Counts recorded before the call keep the old name. Does nothing without
    the ``otel`` extra.
    """
    from lago_segment.errors import ConfigurationError

    if not isinstance(name, str) or not name:
        raise ConfigurationError("name", f"must be a non-empty string, not {name!r}")
    state = getattr(forwarder, "_state", None)
    metrics = getattr(state, "metrics", None)
    if metrics is None:
        raise ConfigurationError(
            "forwarder", f"expected a Forwarder or AsyncForwarder, not {type(forwarder).__name__}"
        )
    metrics.name = name
