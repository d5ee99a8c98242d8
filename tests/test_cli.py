"""The ``lago-segment`` command line, run as users run it: a subprocess on the bundled examples."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from support_cli import (
    EVENTS,
    KEY,
    SPEC,
    cli_env,
    example_lines,
    expected_transaction_ids,
    mappable_lines,
    popen,
    run,
)

from lago_segment.mapping import MappingSpec

if TYPE_CHECKING:
    from lago_segment.testing import FakeLago

from lago_segment.events import parse_event
from lago_segment.lago import LagoEvent

COMMANDS = ["check", "map", "explain", "replay", "fake-lago"]

pytestmark = pytest.mark.usefixtures("state_home")


@pytest.fixture(scope="module")
def mapped_examples() -> subprocess.CompletedProcess[str]:
    return run("map", SPEC, EVENTS)


# -- conventions --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_command_has_help_with_examples(command: str) -> None:
    result = run(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "example" in result.stdout
    assert "usage: lago-segment" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_an_unreadable_events_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("map", SPEC, tmp_path / "missing.jsonl")
    assert result.returncode == 2
    assert "cannot read" in result.stderr


# -- check --------------------------------------------------------------------------------


def test_check_accepts_the_example_spec() -> None:
    result = run("check", SPEC)
    assert result.returncode == 0
    rules = len(MappingSpec.load(SPEC).rules)
    assert result.stdout == f"{SPEC}: ok ({rules} rules)\n"


def test_check_prints_warnings_without_failing(tmp_path: Path) -> None:
    spec = tmp_path / "ambiguous.json"
    rule = {
        "name": "r",
        "when": 'type = "track" and event = "a" or event = "b"',
        "code": "c",
        "external_subscription_id": {"@path": "$.userId"},
    }
    spec.write_text(json.dumps({"rules": [rule]}))
    result = run("check", spec)
    assert result.returncode == 0
    assert result.stderr.startswith(f"{spec}: warning: ")


def test_check_prints_every_error_of_a_bad_spec_and_fails(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(
        "version = 1\n"
        "[[rules]]\n"
        'name = "one"\n'
        'when = "type = "\n'
        'code = "c"\n'
        'external_subscription_id = { "@path" = "$.userId" }\n'
        "[[rules]]\n"
        'name = "two"\n'
        "when = 'type = \"track\"'\n"
        'code = "c"\n'
        'external_subscription_id = { "@path" = "$.userId" }\n'
        "colour = 1\n"
    )
    result = run("check", spec)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = result.stderr.splitlines()
    assert errors[-1] == f"{spec}: 2 errors"
    assert any("rules[0].when" in e for e in errors[:-1])
    assert any("rules[1].colour" in e for e in errors[:-1])


# -- map ----------------------------------------------------------------------------------


def test_map_prints_lago_events_as_json_lines(
    mapped_examples: subprocess.CompletedProcess[str],
) -> None:
    lines = mapped_examples.stdout.splitlines()
    events = [LagoEvent.from_dict(json.loads(line)) for line in lines]
    ids = sorted(e.transaction_id for e in events)
    assert ids == expected_transaction_ids(mappable_lines())


def test_map_of_the_bundled_examples_succeeds(
    mapped_examples: subprocess.CompletedProcess[str],
) -> None:
    assert mapped_examples.returncode == 0
    assert mapped_examples.stderr.splitlines()[-1].endswith(" 0 failed")


def test_map_reports_mapping_failures_with_their_line_and_a_summary(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(example_lines()) + "\n")
    result = run("map", SPEC, events)
    good = mappable_lines()
    failing = [n for n, line in enumerate(example_lines(), 1) if line not in good]
    assert len(failing) == 3
    for number in failing:
        assert f"{events}:{number}: mapping failed" in result.stderr
    assert result.stderr.splitlines()[-1].endswith(f"{len(failing)} failed")
    assert result.returncode == 1


def test_map_reports_bad_lines_and_still_maps_the_others(
    tmp_path: Path, mapped_examples: subprocess.CompletedProcess[str]
) -> None:
    events = tmp_path / "events.jsonl"
    lines = example_lines()
    events.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    result = run("map", SPEC, events)
    assert f"{events}:2: invalid event: message is not valid JSON" in result.stderr
    assert result.stdout == mapped_examples.stdout
    assert result.returncode == 1


def test_map_exits_zero_when_every_event_maps(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(mappable_lines()) + "\n")
    assert run("map", SPEC, events).returncode == 0


@pytest.mark.parametrize("form", ["stdin", "gzip", "batch object", "json array"])
def test_map_reads_every_input_form(
    form: str, tmp_path: Path, mapped_examples: subprocess.CompletedProcess[str]
) -> None:
    text = EVENTS.read_text(encoding="utf-8")
    messages = [json.loads(line) for line in text.splitlines()]
    path = tmp_path / "events"
    if form == "stdin":
        result = run("map", SPEC, "-", stdin=text)
    else:
        if form == "gzip":
            path.write_bytes(gzip.compress(text.encode()))
        elif form == "batch object":
            path.write_text(json.dumps({"batch": messages}, indent=2))
        else:
            path.write_text(json.dumps(messages))
        result = run("map", SPEC, path)
    assert result.stdout == mapped_examples.stdout


# -- explain ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["inline", "stdin", "file"])
def test_explain_prints_the_rule_by_rule_explanation(how: str, tmp_path: Path) -> None:
    line = example_lines()[0]
    expected = str(MappingSpec.load(SPEC).explain(parse_event(line)))
    if how == "inline":
        result = run("explain", SPEC, line)
    elif how == "stdin":
        result = run("explain", SPEC, "-", stdin=line)
    else:
        (tmp_path / "event.json").write_text(json.dumps(json.loads(line), indent=2))
        result = run("explain", SPEC, tmp_path / "event.json")
    assert result.returncode == 0
    assert result.stdout == expected + "\n"


def test_explain_refuses_an_invalid_event() -> None:
    result = run("explain", SPEC, '{"type": "track"}')
    assert result.returncode == 1
    assert "invalid event" in result.stderr


# -- replay -------------------------------------------------------------------------------


def test_replay_needs_the_api_key_in_the_environment() -> None:
    result = run("replay", SPEC, EVENTS)
    assert result.returncode == 2
    assert "LAGO_API_KEY" in result.stderr


def test_replay_refuses_plain_http_to_a_remote_host() -> None:
    result = run("replay", SPEC, EVENTS, "--api-url", "http://lago.example", LAGO_API_KEY=KEY)
    assert result.returncode == 2
    assert "clear text" in result.stderr
    assert KEY not in result.stderr


def test_replay_refuses_to_resume_from_another_files_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text(EVENTS.read_text(encoding="utf-8"))
    checkpoint = tmp_path / "cp"
    checkpoint.write_text(json.dumps({"source": str(EVENTS), "position": 3}))
    result = run("replay", SPEC, other, "--resume", "--checkpoint", checkpoint, LAGO_API_KEY=KEY)
    assert result.returncode == 2
    assert "is for" in result.stderr


def test_replay_stores_every_mapped_event_once(fake: tuple[FakeLago, str], tmp_path: Path) -> None:
    lago, url = fake
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(mappable_lines()) + "\n")
    result = run("replay", SPEC, events, "--api-url", url, LAGO_API_KEY=KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert sorted(lago.stored_transaction_ids()) == expected_transaction_ids(mappable_lines())


def test_replay_writes_refused_events_to_a_dead_letter_file_that_replays(
    fake: tuple[FakeLago, str], tmp_path: Path
) -> None:
    lago, url = fake
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(mappable_lines()) + "\n")
    dead = tmp_path / "dead.jsonl"
    lago.script(422)  # the first batch is refused for good, as such
    failed = run("replay", SPEC, events, "--api-url", url, "--dead-letter", dead, LAGO_API_KEY=KEY)
    assert failed.returncode == 1
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    assert records
    assert all(r["permanent"] and "422" in r["error"] for r in records)
    assert oct(dead.stat().st_mode & 0o777) == oct(0o600)

    retried = run("replay", "--lago-events", dead, "--api-url", url, LAGO_API_KEY=KEY)
    assert retried.returncode == 0, retried.stderr
    assert sorted(lago.stored_transaction_ids()) == expected_transaction_ids(mappable_lines())


def test_replay_resumes_after_max_events_without_duplicates(
    fake: tuple[FakeLago, str], tmp_path: Path
) -> None:
    lago, url = fake
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(mappable_lines()) + "\n")
    first = run("replay", SPEC, events, "--api-url", url, "--max-events", "5", LAGO_API_KEY=KEY)
    assert first.returncode == 0, first.stderr
    assert len(lago.stored_transaction_ids()) == len(
        expected_transaction_ids(mappable_lines()[:5])
    )
    second = run("replay", SPEC, events, "--api-url", url, "--resume", LAGO_API_KEY=KEY)
    assert second.returncode == 0, second.stderr
    assert "0 duplicates" in second.stderr
    assert sorted(lago.stored_transaction_ids()) == expected_transaction_ids(mappable_lines())


def test_an_interrupted_replay_resumes_and_stores_every_event_exactly_once(
    fake: tuple[FakeLago, str], tmp_path: Path
) -> None:
    lago, url = fake
    lines = mappable_lines()
    checkpoint = tmp_path / "replay.checkpoint"
    options = ["--api-url", url, "--checkpoint", checkpoint, "--batch-size", "1"]
    with popen(
        "replay", SPEC, "-", *options, "--progress",
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ) as process:  # fmt: skip
        assert process.stdin is not None
        assert process.stderr is not None
        process.stdin.write("\n".join(lines[:6]) + "\n")
        process.stdin.flush()
        # With batches of one, a progress line follows every batch; once all the
        # events of line 6 are stored, the CLI waits for more input: Ctrl-C arrives there.
        stored = len(expected_transaction_ids(lines[:6]))
        for message in process.stderr:
            if message.startswith(f"progress: 6 events read, {stored} stored"):
                break
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=30) == 130
    assert "--resume" in rest
    assert sorted(lago.stored_transaction_ids()) == expected_transaction_ids(lines[:6])

    resumed = run("replay", SPEC, "-", *options, "--resume", stdin="\n".join(lines) + "\n",
                  LAGO_API_KEY=KEY)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "0 duplicates" in resumed.stderr
    stored = lago.stored_transaction_ids()
    assert sorted(stored) == expected_transaction_ids(lines)
    assert len(set(stored)) == len(stored)


# -- fake-lago ----------------------------------------------------------------------------


def test_fake_lago_never_prints_the_api_key_from_the_environment() -> None:
    with popen("fake-lago", stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        banner = "".join(process.stdout.readline() for _ in range(3))
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert "export LAGO_API_KEY=fake-" in banner
    assert KEY not in banner  # popen() sets LAGO_API_KEY=KEY in its environment


def test_fake_lago_stops_on_sigterm_like_ctrl_c() -> None:
    with popen("fake-lago", stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        for _ in range(3):
            process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert stderr == "stopped; FakeLago had stored 0 events\n"


def test_fake_lago_serves_until_ctrl_c_and_prints_url_and_key() -> None:
    with popen(
        "fake-lago", "--api-key", "fake-key", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        exports = dict(line.removeprefix("export ").strip().split("=", 1) for line in banner[1:])
        assert exports["LAGO_API_KEY"] == "fake-key"
        event = {"transaction_id": "t1", "external_subscription_id": "s1", "code": "c",
                 "timestamp": 1700000000}  # fmt: skip
        response = httpx.post(
            f"{exports['LAGO_API_URL']}/api/v1/events",
            json={"event": event},
            headers={"Authorization": "Bearer fake-key"},
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "stored 1 event" in stderr


@pytest.mark.parametrize(
    "args", [["--help"], ["check", SPEC], ["map", SPEC, EVENTS]], ids=["help", "check", "map"]
)
def test_help_check_and_map_do_not_import_httpx(args: list[str | Path]) -> None:
    # Only what sends to Lago (replay, check --against-lago) pays for the HTTP client.
    code = (
        "import sys\nfrom lago_segment.cli import main\ntry:\n"
        f"    main({[str(a) for a in args]!r})\nexcept SystemExit:\n    pass\n"
        "print('httpx' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert result.stderr.splitlines()[-1] == "False"
