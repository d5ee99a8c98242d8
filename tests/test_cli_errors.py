"""Every input problem is one clean line and a documented exit code, never a traceback."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support_cli import EVENTS, KEY, SPEC, example_lines, run

from lago_segment.cli import _input as cli_input
from lago_segment.cli import main
from lago_segment.cli._input import InputError, open_source
from lago_segment.cli._ledger import Checkpoint, DeadLetters, Mark

pytestmark = pytest.mark.usefixtures("state_home")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# -- gzip ---------------------------------------------------------------------------------


@pytest.fixture(params=["truncated", "plain text"])
def bad_gzip(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl.gz"
    text = EVENTS.read_bytes()
    if request.param == "truncated":
        compressed = gzip.compress(text)
        path.write_bytes(compressed[: len(compressed) // 2])
    else:
        path.write_bytes(text)
    return path


def test_map_of_a_bad_gzip_file_is_one_line_and_exit_2(bad_gzip: Path) -> None:
    result = run("map", SPEC, bad_gzip)
    assert result.returncode == 2
    assert f"{bad_gzip}: not a valid gzip file" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].endswith("0 failed")  # the summary still prints


def test_replay_of_a_bad_gzip_file_still_prints_its_summary(bad_gzip: Path) -> None:
    from lago_segment.testing import FakeLago

    with FakeLago(api_key=KEY).serve() as url:
        result = run("replay", SPEC, bad_gzip, "--api-url", url, LAGO_API_KEY=KEY)
    assert result.returncode == 2
    assert f"{bad_gzip}: not a valid gzip file" in result.stderr
    assert "Traceback" not in result.stderr
    assert any("sent:" in line for line in result.stderr.splitlines())


# -- big inputs ---------------------------------------------------------------------------


def test_a_batch_file_over_the_limit_is_refused_without_being_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_input, "MAX_BATCH_FILE_BYTES", 1000)
    path = tmp_path / "batch.json"
    path.write_text(json.dumps([json.loads(line) for line in example_lines()]))
    with open_source(str(path)) as source, pytest.raises(InputError, match="jq -c"):
        list(source.segment_events())
    assert source.consumed < path.stat().st_size  # stopped reading past the limit


def test_an_overlong_line_is_one_bad_line_and_reading_goes_on(tmp_path: Path) -> None:
    # A line of Segment events is read up to a message's size, as iter_events reads it.
    path = tmp_path / "events.jsonl"
    short = '{"type": "track", "event": "e", "userId": "u"}'
    path.write_text(f'{{"type": "track", "pad": "{"x" * 40_000}"}}\n{short}\n')
    with open_source(str(path)) as source:
        bad, good = source.segment_events()
    assert bad.error is not None
    assert (bad.position, bad.error.line) == (1, 1)
    assert "over the 32768-byte limit" in str(bad.error)
    assert (good.position, good.error) == (2, None)


def test_an_overlong_line_of_lago_events_is_one_bad_line_and_reading_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_input, "MAX_LINE_BYTES", 100)
    path = tmp_path / "lago-events.jsonl"
    short = {"transaction_id": "t1", "external_subscription_id": "s1", "code": "c", "timestamp": 1}
    path.write_text(f'{{"pad": "{"x" * 300}"}}\n{json.dumps(short)}\n')
    with open_source(str(path)) as source:
        bad, good = source.lago_events()
    assert bad.error is not None
    assert "longer than" in str(bad.error)
    assert (good.position, good.error) == (2, None)


def test_map_reports_a_line_over_the_message_limit_with_its_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    good = example_lines()[0]
    path.write_text(f'{good}\n{{"type": "track", "pad": "{"x" * 40_000}"}}\n{good}\n')
    result = run("map", SPEC, path)
    assert result.returncode == 1
    assert f"{path}:2: invalid event: message is " in result.stderr
    assert "over the 32768-byte limit @ $" in result.stderr
    assert "3 events read: 2 matched" in result.stderr  # the lines around it still map
    assert result.stderr.splitlines()[-1].endswith("1 failed")
    assert "Traceback" not in result.stderr


def test_a_one_line_batch_file_longer_than_a_message_is_still_a_batch_file(
    tmp_path: Path,
) -> None:
    events = [json.loads(line) for line in example_lines()] * 40
    path = tmp_path / "batch.json"
    path.write_text(json.dumps({"batch": events}) + "\n")
    assert path.stat().st_size > 32 * 1024
    with open_source(str(path)) as source:
        items = list(source.segment_events())
    assert len(items) == len(events)
    assert items[-1].where == f"{path}[{len(events) - 1}]"


# -- exit codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "map", "explain", "replay"])
def test_a_missing_spec_is_exit_2_everywhere(command: str, tmp_path: Path) -> None:
    args = {"check": [], "map": [EVENTS], "explain": [example_lines()[0]], "replay": [EVENTS]}
    result = run(command, tmp_path / "missing.toml", *args[command], LAGO_API_KEY=KEY)
    assert result.returncode == 2
    assert "cannot read spec" in result.stderr


def test_a_directory_given_as_a_spec_says_so(tmp_path: Path) -> None:
    result = run("check", tmp_path)
    assert result.returncode == 2
    assert "is a directory" in result.stderr


@pytest.mark.parametrize("command", ["map", "replay"])
def test_a_directory_given_as_events_is_exit_2(command: str, tmp_path: Path) -> None:
    result = run(command, SPEC, tmp_path, LAGO_API_KEY=KEY)
    assert result.returncode == 2
    assert "Is a directory" in result.stderr


# -- explain ------------------------------------------------------------------------------


def test_explain_exits_1_when_a_matching_rule_fails_to_map() -> None:
    unmappable = (SPEC.parent / "segment-events-unmappable.jsonl").read_text().splitlines()[0]
    result = run("explain", SPEC, unmappable)
    assert "MATCHED, but FAILS" in result.stdout
    assert result.returncode == 1
    assert "fail to map" in result.stderr


def test_explain_of_a_json_lines_file_says_it_takes_one_event_and_how_to_pick_one() -> None:
    result = run("explain", SPEC, EVENTS)
    assert result.returncode == 2
    assert "explain takes one" in result.stderr
    assert f"sed -n 3p {EVENTS} | lago-segment explain SPEC -" in result.stderr


# -- text that is not Unicode -------------------------------------------------------------

SURROGATE = '{"type": "track", "event": "API Call", "userId": "u\\ud800", "messageId": "s1"}'


def test_map_reports_a_lone_surrogate_on_one_line_and_maps_the_rest(tmp_path: Path) -> None:
    lines = EVENTS.read_text().splitlines()
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([lines[0], SURROGATE, *lines[1:]]) + "\n")
    result = run("map", SPEC, path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{path}:2: invalid event: holds a lone UTF-16 surrogate" in result.stderr
    assert result.stdout == run("map", SPEC, EVENTS).stdout


def test_explain_of_an_event_with_a_lone_surrogate_is_one_clean_line() -> None:
    result = run("explain", SPEC, SURROGATE)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "lone UTF-16 surrogate" in result.stderr
    assert result.stderr.rstrip().endswith("@ $.userId")


# -- arbitrary input ----------------------------------------------------------------------


def run_in_process(*args: str) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return main(list(args))
        except SystemExit as exit:  # usage errors leave through argparse
            code = exit.code
    assert isinstance(code, int)
    return code


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(st.sampled_from([*example_lines(), "", "{", "[", "\\ud800"])).map(
            lambda lines: "\n".join(lines).encode()
        ),
    ),
    suffix=st.sampled_from([".jsonl", ".jsonl.gz", ".json"]),
    compress=st.booleans(),
)
def test_arbitrary_bytes_as_input_files_exit_0_1_or_2(
    data: bytes, suffix: str, compress: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"input{suffix}"
    path.write_bytes(gzip.compress(data)[: len(data) or None] if compress else data)
    assert run_in_process("map", str(SPEC), str(path)) in (0, 1, 2)
    assert run_in_process("explain", str(SPEC), str(path)) in (0, 1, 2)
    assert run_in_process("check", str(path)) in (0, 1, 2)


# -- files that hold billing data ---------------------------------------------------------


def test_dead_letter_and_checkpoint_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    with umask(0):
        DeadLetters(str(tmp_path / "dead.jsonl")).close()
        Checkpoint(str(tmp_path / "cp.json"), "/data/a.jsonl").save(Mark(3, "d"))
    for name in ("dead.jsonl", "cp.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_saving_a_checkpoint_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "cp.json"
    for planted in (f"{path}.tmp", str(path)):  # the old fixed temporary name, the file itself
        os.symlink(victim, planted)
    Checkpoint(str(path), "/data/a.jsonl").save(Mark(3, "d"))
    assert victim.read_text() == "precious"
    assert not path.is_symlink()
    assert json.loads(path.read_text())["position"] == 3


# -- fake-lago ----------------------------------------------------------------------------


def test_fake_lago_sends_each_answer_in_one_piece() -> None:
    """Headers and body in one write (with TCP_NODELAY): no Nagle delay on loopback."""
    from lago_segment.testing import FakeLago

    event = {"transaction_id": "t", "external_subscription_id": "s", "code": "c", "timestamp": 1}
    body = json.dumps({"events": [event]}).encode()
    with FakeLago(api_key=KEY).serve() as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as conn:
            for _ in range(3):  # keep-alive: every answer on the connection
                head = f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
                conn.sendall(
                    b"POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\n" + head.encode() + body
                )
                first = conn.recv(65536)
                head, _, rest = first.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                assert len(rest) == length  # the body came with the headers
                event["transaction_id"] += "x"
                body = json.dumps({"events": [event]}).encode()


def test_an_unwritable_checkpoint_or_dead_letter_file_is_exit_2_before_sending(
    tmp_path: Path,
) -> None:
    from lago_segment.testing import FakeLago

    lago = FakeLago(api_key=KEY)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    with lago.serve() as url:
        for option in ("--checkpoint", "--dead-letter"):
            result = run(
                "replay", SPEC, EVENTS, "--api-url", url, option, blocked / "file",
                LAGO_API_KEY=KEY,
            )  # fmt: skip
            assert result.returncode == 2
            assert "cannot write the" in result.stderr
            assert "Traceback" not in result.stderr
    assert lago.request_count == 0
