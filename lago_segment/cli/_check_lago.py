"""``lago-segment check SPEC --against-lago``: compare a spec with the billable metrics in Lago.

Lago takes any event with 200 and validates it later (the hourly
``events.errors`` webhook): an unknown ``code``, a missing aggregation
property or an unknown filter value means events accepted and never billed.
This check finds what it can before anything is sent, from the spec alone:

- a literal ``code`` that no billable metric has;
- a metric aggregating a ``field_name`` (sum, max, unique count, weighted
  sum, latest) that the rule never sets among its properties;
- a filter key the rule sets to a literal value the metric does not list.

A value computed from the event (``{"@path": "$.event"}``) cannot be checked
here: it is listed as a note, and ``events.errors`` is the net for it.

Importing this module is light (argparse only); httpx is loaded to fetch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from lago_segment.cli._conventions import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from lago_segment.mapping import MappingSpec, Rule
    from lago_segment.testing import FakeLago

__all__ = [
    "WITH_FIELD",
    "check_against_lago",
    "configure_fake",
    "fetch_billable_metrics",
    "problems",
]

WITH_FIELD = frozenset(
    ("sum_agg", "max_agg", "unique_count_agg", "weighted_sum_agg", "latest_agg")
)
"""Aggregations that read the metric's ``field_name`` from the event's properties."""


def configure_fake(fake: FakeLago, args: argparse.Namespace) -> None:
    """Load ``--billable-metrics`` into ``fake`` (a usage error when unreadable)."""
    path = getattr(args, "billable_metrics", None)
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read billable metrics {path}: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("billable_metrics")
    if not isinstance(data, list) or not all(isinstance(m, Mapping) for m in data):
        raise UsageError(f'{path}: expected a list of metrics or {{"billable_metrics": [...]}}')
    for metric in data:
        filters = {f["key"]: f["values"] for f in metric.get("filters") or []}
        try:
            fake.add_billable_metric(
                metric["code"],
                metric.get("aggregation_type", "count_agg"),
                field_name=metric.get("field_name"),
                filters=filters,
            )
        except (KeyError, TypeError) as exc:
            raise UsageError(f"{path}: a metric without {exc}") from None
        except ValueError as exc:  # ConfigurationError
            raise UsageError(f"{path}: {exc}") from None


def fetch_billable_metrics(
    api_key: str, api_url: str, *, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Every billable metric of the organization, following ``meta.next_page``.

    Raises the library's Lago API or transport errors, and
    :class:`~lago_segment.ConfigurationError` for an insecure ``api_url``.
    """
    import httpx

    from lago_segment.client._responses import error_from_response, transport_error
    from lago_segment.client._urls import check_api_url

    base = check_api_url(api_url, allow_insecure_http=False)
    metrics: list[dict[str, Any]] = []
    page: int | None = 1
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    with httpx.Client(headers=headers, timeout=timeout) as http:
        while page is not None:
            try:
                response = http.get(
                    f"{base}/api/v1/billable_metrics", params={"page": page, "per_page": 100}
                )
            except httpx.TransportError as exc:
                raise transport_error(exc) from None
            if not response.is_success:
                raise error_from_response(response)
            data = response.json()
            metrics.extend(m for m in data.get("billable_metrics") or [] if isinstance(m, dict))
            following = (data.get("meta") or {}).get("next_page")
            page = following if isinstance(following, int) and following > page else None
    return metrics


def _literals(value: Any) -> tuple[set[str], bool]:
    """The strings a spec value can produce that are written in the spec, and whether
    that is all it can produce (False when part comes from the event)."""
    if isinstance(value, bool):
        return set(), False
    if isinstance(value, (str, int, float)):
        return {str(value)}, True
    if isinstance(value, Mapping) and len(value) == 1:
        ((name, argument),) = value.items()
        if name == "@literal":
            return _literals(argument)
        if name == "@default" and isinstance(argument, Mapping) and "fallback" in argument:
            found, _ = _literals(argument["fallback"])
            return found, False
        if name == "@string":
            return _literals(argument)
    return set(), False


def _properties(rule: Rule) -> Mapping[str, Any] | None:
    """The rule's properties by key, or None when one directive computes them all."""
    written = rule.source.get("properties")
    if written is None:
        return {}
    if isinstance(written, Mapping) and not any(str(k).startswith("@") for k in written):
        return written
    return None


def problems(spec: MappingSpec, metrics: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """What would make Lago refuse the spec's events later: (problems, notes)."""
    by_code = {m.get("code"): m for m in metrics}
    found: list[str] = []
    notes: list[str] = []
    for rule in spec.rules:
        where = f'rule "{rule.name}"'
        codes, complete = _literals(rule.source.get("code"))
        if not complete:
            notes.append(
                f"{where}: code {json.dumps(rule.source.get('code'))} comes from the event: "
                "not checked (Lago's events.errors webhook reports unknown codes)"
            )
        properties = _properties(rule)
        for code in sorted(codes):
            metric = by_code.get(code)
            if metric is None:
                found.append(f"{where}: code {code!r} is not a billable metric in Lago")
                continue
            found.extend(_check_metric(where, metric, properties, notes))
    return found, notes


def _check_metric(
    where: str, metric: Mapping[str, Any], properties: Mapping[str, Any] | None, notes: list[str]
) -> Iterator[str]:
    code, kind, field = (
        metric.get("code"),
        metric.get("aggregation_type"),
        metric.get("field_name"),
    )
    if properties is None:
        notes.append(f"{where}: properties are computed by one directive: not checked")
        return
    if kind in WITH_FIELD and field and field not in properties:
        yield (
            f"{where}: metric {code!r} ({kind}) aggregates properties.{field}, "
            "which the rule never sets"
        )
    for metric_filter in metric.get("filters") or []:
        key, accepted = metric_filter.get("key"), [str(v) for v in metric_filter.get("values", [])]
        if key not in properties:
            continue
        values, _ = _literals(properties[key])
        for value in sorted(values):
            if value not in accepted:
                yield (
                    f"{where}: properties.{key} = {value!r} is not a value of metric "
                    f"{code!r}'s filter {key!r} (Lago accepts: {', '.join(accepted)})"
                )


def check_against_lago(spec: MappingSpec, args: argparse.Namespace) -> int:
    """Run the check for the ``check`` command; return its exit code."""
    from lago_segment.errors import LagoAuthenticationError, LagoSegmentError

    api_key = os.environ.get("LAGO_API_KEY", "")
    if not api_key:
        raise UsageError("set the LAGO_API_KEY environment variable to your Lago API key")
    try:
        metrics = fetch_billable_metrics(api_key, args.api_url, timeout=args.timeout)
    except LagoAuthenticationError:
        raise UsageError(f"Lago at {args.api_url} refused the API key") from None
    except LagoSegmentError as exc:
        raise UsageError(f"cannot list billable metrics at {args.api_url}: {exc}") from None
    found, notes = problems(spec, metrics)
    for note in notes:
        print(f"{args.spec}: note: {note}", file=sys.stderr)
    for problem in found:
        print(f"{args.spec}: {problem}", file=sys.stderr)
    count = len(metrics)
    metrics_text = f"{count} billable metric{'' if count == 1 else 's'}"
    if found:
        plural = "s" if len(found) != 1 else ""
        print(f"{args.spec}: {len(found)} problem{plural} against Lago ({metrics_text})")
        return EXIT_FAILED
    print(f"{args.spec}: ok against Lago ({metrics_text})")
    return EXIT_OK
