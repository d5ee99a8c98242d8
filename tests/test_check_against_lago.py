"""``lago-segment check SPEC --against-lago``, against ``lago-segment fake-lago`` run as a
subprocess with billable metrics from a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lago_segment.cli._check_lago import fetch_billable_metrics, problems
from lago_segment.mapping import MappingSpec
from lago_segment.testing import FakeLago

API_KEY = "fake-check-key-31415"

METRICS = [
    {
        "code": "api_calls",
        "aggregation_type": "count_agg",
        "filters": [
            {"key": "region", "values": ["eu", "us"]},
        ],
    },
    {"code": "storage_gb", "aggregation_type": "sum_agg", "field_name": "gb"},
    {"code": "seats", "aggregation_type": "unique_count_agg", "field_name": "user"},
]

GOOD_SPEC = {
    "rules": [
        {
            "name": "api-calls",
            "when": 'type = "track" and event = "API Call"',
            "code": "api_calls",
            "external_subscription_id": {"@path": "$.userId"},
            "properties": {"region": "eu"},
        },
        {
            "name": "storage",
            "when": 'type = "identify"',
            "code": "storage_gb",
            "external_subscription_id": {"@path": "$.userId"},
            "properties": {"gb": {"@path": "$.traits.gb"}},
        },
    ]
}

BAD_SPEC = {
    "rules": [
        {
            "name": "api-calls",
            "when": 'type = "track"',
            "code": "api_calls",
            "external_subscription_id": {"@path": "$.userId"},
            "properties": {"region": "mars"},
        },
        {
            "name": "storage",
            "when": 'type = "identify"',
            "code": "storage_gb",
            "external_subscription_id": {"@path": "$.userId"},
            "properties": {"bytes": {"@path": "$.traits.bytes"}},
        },
        {
            "name": "typo",
            "when": 'type = "page"',
            "code": "api_call",
            "external_subscription_id": {"@path": "$.userId"},
        },
        {
            "name": "dynamic",
            "when": 'type = "screen"',
            "code": {"@path": "$.name"},
            "external_subscription_id": {"@path": "$.userId"},
        },
    ]
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lago_segment", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def fake_lago(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of ``lago-segment fake-lago --billable-metrics FILE``, run as a subprocess."""
    path = tmp_path_factory.mktemp("metrics") / "metrics.json"
    path.write_text(json.dumps({"billable_metrics": METRICS}))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lago_segment",
            "fake-lago",
            "--api-key",
            API_KEY,
            "--billable-metrics",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("FakeLago is listening on "), process.stderr.read()
        yield first.split()[4]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_a_spec_that_matches_lago_passes(fake_lago, tmp_path):
    spec = write_spec(tmp_path, GOOD_SPEC)
    done = run_cli(
        "check", spec, "--against-lago", "--api-url", fake_lago, env={"LAGO_API_KEY": API_KEY}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{spec}: ok against Lago (3 billable metrics)"


def test_every_problem_is_reported_and_the_exit_code_is_1(fake_lago, tmp_path):
    spec = write_spec(tmp_path, BAD_SPEC)
    done = run_cli(
        "check", spec, "--against-lago", "--api-url", fake_lago, env={"LAGO_API_KEY": API_KEY}
    )
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == f"{spec}: 3 problems against Lago (3 billable metrics)"
    errors = done.stderr
    assert "rule \"typo\": code 'api_call' is not a billable metric in Lago" in errors
    assert (
        "rule \"storage\": metric 'storage_gb' (sum_agg) aggregates properties.gb, "
        "which the rule never sets" in errors
    )
    assert "properties.region = 'mars' is not a value of metric 'api_calls'" in errors
    assert 'note: rule "dynamic": code {"@path": "$.name"} comes from the event' in errors
    assert API_KEY not in done.stdout + done.stderr


def test_a_missing_or_refused_key_is_a_usage_error(fake_lago, tmp_path):
    spec = write_spec(tmp_path, GOOD_SPEC)
    missing = run_cli(
        "check", spec, "--against-lago", "--api-url", fake_lago, env={"LAGO_API_KEY": ""}
    )
    refused = run_cli(
        "check",
        spec,
        "--against-lago",
        "--api-url",
        fake_lago,
        env={"LAGO_API_KEY": "wrong-key-271828"},
    )
    assert missing.returncode == refused.returncode == 2
    assert "LAGO_API_KEY" in missing.stderr
    assert "refused the API key" in refused.stderr
    assert "wrong-key-271828" not in refused.stderr


def test_without_against_lago_nothing_is_fetched(tmp_path):
    done = run_cli(
        "check", write_spec(tmp_path, BAD_SPEC), env={"LAGO_API_URL": "http://127.0.0.1:9"}
    )
    assert done.returncode == 0


def test_billable_metrics_are_read_page_by_page():
    fake = FakeLago(api_key=API_KEY)
    for n in range(250):
        fake.add_billable_metric(f"metric_{n}")
    with fake.serve() as url:
        before = fake.request_count
        metrics = fetch_billable_metrics(API_KEY, url)
        requests = fake.request_count - before
    assert [m["code"] for m in metrics] == [f"metric_{n}" for n in range(250)]
    assert requests == 3


def test_literal_fallbacks_are_checked_and_computed_values_are_not():
    spec = MappingSpec.from_dict(
        {
            "rules": [
                {
                    "name": "r",
                    "when": 'type = "track"',
                    "code": "api_calls",
                    "external_subscription_id": "s",
                    "properties": {
                        "region": {"@default": {"value": {"@path": "$.p.r"}, "fallback": "moon"}}
                    },
                }
            ]
        }
    )
    metrics = [
        {
            "code": "api_calls",
            "aggregation_type": "count_agg",
            "filters": [{"key": "region", "values": ["eu"]}],
        }
    ]
    found, notes = problems(spec, metrics)
    assert found == [
        "rule \"r\": properties.region = 'moon' is not a value of metric 'api_calls''s "
        "filter 'region' (Lago accepts: eu)"
    ]
    assert notes == []
