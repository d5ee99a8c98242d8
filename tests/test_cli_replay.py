"""``replay`` you can trust: checkpoints that never skip an unstored event, runs that stop early.

Every test runs the CLI as a subprocess against ``FakeLago.serve()`` on loopback.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support_cli import (
    KEY,
    SPEC,
    expected_transaction_ids,
    mappable_lines,
    popen,
    run,
)

if TYPE_CHECKING:
    from lago_segment.testing import FakeLago


pytestmark = pytest.mark.usefixtures("state_home")


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(mappable_lines()) + "\n")
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there any more: connections are refused


def test_a_run_with_a_wrong_key_stops_at_once_and_resume_with_the_right_key_sends_all(
    fake: tuple[FakeLago, str], events: Path
) -> None:
    lago, url = fake
    options = ["--api-url", url, "--batch-size", "2"]
    wrong = run("replay", SPEC, events, *options, LAGO_API_KEY="wrong-key-MARKER")
    assert wrong.returncode == 3
    assert lago.request_count == 1  # stopped at the first 401, not one try per batch
    refused = [line for line in wrong.stderr.splitlines() if "refused the API key" in line]
    assert len(refused) == 1
    assert url in refused[0]
    assert "MARKER" not in wrong.stderr

    resumed = run("replay", SPEC, events, *options, "--resume", LAGO_API_KEY=KEY)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(lago.stored_transaction_ids()) == expected_transaction_ids(mappable_lines())


def test_a_wrong_url_path_stops_at_once_naming_the_url(
    fake: tuple[FakeLago, str], events: Path
) -> None:
    lago, url = fake
    result = run("replay", SPEC, events, "--api-url", f"{url}/lago", LAGO_API_KEY=KEY)
    assert result.returncode == 3
    assert lago.request_count == 1
    assert f"{url}/lago" in result.stderr
    assert "404" in result.stderr
    assert KEY not in result.stderr


def test_lago_out_of_reach_stops_the_run_once_within_the_retry_bound(events: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run(
        "replay", SPEC, events, "--api-url", url, "--give-up-after", "0.5", "--batch-size", "1",
        LAGO_API_KEY="sk-MARKER-123",
    )  # fmt: skip
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("cannot reach Lago")] == [
        next(line for line in lines if line.startswith(f"cannot reach Lago at {url}:"))
    ]
    assert sum("retrying for up to 0.5 s" in line for line in lines) <= 1
    assert "giving up on POST" not in result.stderr  # the library's log line, said once already
    assert "MARKER" not in result.stderr + result.stdout


def test_without_a_dead_letter_file_the_checkpoint_stays_before_a_refused_event(
    fake: tuple[FakeLago, str], events: Path
) -> None:
    lago, url = fake
    options = ["--api-url", url, "--batch-size", "3"]
    lago.script(None, 422)  # the second batch is refused; later ones are stored
    first = run("replay", SPEC, events, *options, LAGO_API_KEY=KEY)
    assert first.returncode == 1
    assert "not kept" in first.stderr

    resumed = run("replay", SPEC, events, *options, "--resume", LAGO_API_KEY=KEY)
    assert resumed.returncode == 0, resumed.stderr
    stored = lago.stored_transaction_ids()
    assert sorted(stored) == expected_transaction_ids(mappable_lines())
    # The refused batch is stored now; what followed it came back as duplicates.
    assert "sent: 3 stored, " in resumed.stderr
    assert " 0 duplicates" not in resumed.stderr


def test_a_replaced_input_is_detected_on_resume_and_nothing_is_sent(
    fake: tuple[FakeLago, str], events: Path
) -> None:
    lago, url = fake
    first = run("replay", SPEC, events, "--api-url", url, "--max-events", "5", LAGO_API_KEY=KEY)
    assert first.returncode == 0, first.stderr
    before = lago.request_count
    lines = mappable_lines()
    events.write_text("\n".join([*lines[1:], lines[0]]) + "\n")  # same size, rotated
    resumed = run("replay", SPEC, events, "--api-url", url, "--resume", LAGO_API_KEY=KEY)
    assert resumed.returncode == 2
    assert "replaced, rotated or truncated" in resumed.stderr
    assert lago.request_count == before


def test_an_input_shorter_than_its_checkpoint_is_detected_on_resume(
    fake: tuple[FakeLago, str], events: Path
) -> None:
    _, url = fake
    assert run("replay", SPEC, events, "--api-url", url, LAGO_API_KEY=KEY).returncode == 0
    events.write_text(mappable_lines()[0] + "\n")
    resumed = run("replay", SPEC, events, "--api-url", url, "--resume", LAGO_API_KEY=KEY)
    assert resumed.returncode == 2
    assert "ends before position" in resumed.stderr


def test_the_default_checkpoint_lives_in_the_state_directory_not_beside_the_input(
    fake: tuple[FakeLago, str], events: Path, state_home: Path
) -> None:
    _, url = fake
    assert run("replay", SPEC, events, "--api-url", url, LAGO_API_KEY=KEY).returncode == 0
    assert sorted(p.name for p in events.parent.iterdir()) == ["events.jsonl", "state"]
    (checkpoint,) = (state_home / "lago-segment" / "checkpoints").iterdir()
    assert checkpoint.name.startswith("events.jsonl-")
    assert json.loads(checkpoint.read_text())["source"] == str(events)
    assert oct(checkpoint.stat().st_mode & 0o777) == oct(0o600)


def test_sigterm_stops_like_ctrl_c_with_a_summary_and_a_checkpoint(
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
        process.stdin.write("\n".join(lines[:4]) + "\n")
        process.stdin.flush()
        stored = len(expected_transaction_ids(lines[:4]))
        for message in process.stderr:
            if message.startswith(f"progress: 4 events read, {stored} stored"):
                break
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert process.wait(timeout=30) == 143
    assert "4 events read" in rest
    assert "terminated (SIGTERM)" in rest
    assert json.loads(checkpoint.read_text())["position"] == 4

    resumed = run("replay", SPEC, "-", *options, "--resume", stdin="\n".join(lines) + "\n",
                  LAGO_API_KEY=KEY)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "0 duplicates" in resumed.stderr
    assert sorted(lago.stored_transaction_ids()) == expected_transaction_ids(lines)


def test_allow_insecure_http_reaches_a_plain_http_host_by_name_with_a_warning(
    fake: tuple[FakeLago, str], events: Path
) -> None:
    lago, url = fake
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if address != "127.0.0.1":
        pytest.skip("this machine's name is not an alias of 127.0.0.1")
    by_name = url.replace("127.0.0.1", name)

    refused = run("replay", SPEC, events, "--api-url", by_name, LAGO_API_KEY=KEY)
    assert refused.returncode == 2
    assert "--allow-insecure-http" in refused.stderr
    assert "allow_insecure_http=True" not in refused.stderr

    allowed = run(
        "replay", SPEC, events, "--api-url", by_name, "--allow-insecure-http", LAGO_API_KEY=KEY
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: sending the API key in clear text" in allowed.stderr
    assert sorted(lago.stored_transaction_ids()) == expected_transaction_ids(mappable_lines())


def test_a_key_with_a_trailing_newline_is_refused_without_showing_it(events: Path) -> None:
    result = run("replay", SPEC, events, LAGO_API_KEY="sk-MARKER-123\n")
    assert result.returncode == 2
    assert "trailing newline" in result.stderr
    assert "MARKER" not in result.stderr + result.stdout


def test_the_key_never_reaches_the_dead_letter_file_or_the_output(
    fake: tuple[FakeLago, str], events: Path, tmp_path: Path
) -> None:
    from lago_segment.testing import FakeLago

    marker_key = "sk-live-MARKER-42"
    lago = FakeLago(api_key=marker_key)
    lago.script(422, 503, 503)
    dead = tmp_path / "dead.jsonl"
    with lago.serve() as url:
        result = run(
            "replay", SPEC, events, "--api-url", url, "--dead-letter", dead,
            "--give-up-after", "0.2", "--batch-size", "2", LAGO_API_KEY=marker_key,
        )  # fmt: skip
    assert result.returncode == 3
    assert dead.read_text()
    assert "MARKER" not in result.stdout + result.stderr + dead.read_text()


def test_the_key_is_redacted_in_any_form_an_error_may_quote_it() -> None:
    from lago_segment.client._redact import Redactor  # what replay redacts its messages with

    redact = Redactor.for_client("sk-MARKER/42", "https://bob:pw-MARKER@lago.example.com")
    text = "Illegal header value b'Bearer sk-MARKER/42' (sk-MARKER%2F42) bob:pw-MARKER@lago"
    assert "MARKER" not in redact(text)


class _OverlapServer:
    """A Lago stand-in that answers a request only once another one is in flight.

    The first request is answered alone (replay sends one batch before going
    wide); every later one waits until two requests have overlapped at least
    once, else answers 503 after a few seconds, which stops the run.
    """

    def __init__(self) -> None:
        import threading

        self.cond = threading.Condition()
        self.requests = 0
        self.active = 0
        self.peak = 0
        self.stored: list[str] = []

    def handler(self) -> type:
        from http.server import BaseHTTPRequestHandler

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.cond:
                    server.requests += 1
                    first = server.requests == 1
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                    server.cond.notify_all()
                    overlapped = first or server.cond.wait_for(lambda: server.peak >= 2, 5)
                status = 200 if overlapped else 503
                if overlapped:
                    with server.cond:
                        server.stored += [e["transaction_id"] for e in body["events"]]
                answer = json.dumps({"events": body["events"]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                with server.cond:
                    server.active -= 1

        return Handler


def test_max_in_flight_sends_batches_at_once_and_stores_each_event_once(
    events: Path, tmp_path: Path
) -> None:
    import threading
    from http.server import ThreadingHTTPServer

    lago = _OverlapServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), lago.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        options = ["--api-url", url, "--batch-size", "1", "--max-in-flight", "3"]
        done = run("replay", SPEC, events, *options, LAGO_API_KEY=KEY)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert done.returncode == 0, done.stderr
    assert lago.peak >= 2  # batches really overlapped
    assert sorted(lago.stored) == expected_transaction_ids(mappable_lines())


def test_max_in_flight_below_one_is_a_usage_error(events: Path) -> None:
    done = run("replay", SPEC, events, "--max-in-flight", "0", LAGO_API_KEY=KEY)
    assert done.returncode == 2
    assert "--max-in-flight" in done.stderr


# -- the dead-letter file: what replay --lago-events reads back --------------------------


def test_dead_letters_are_utf8_json_lines_that_replay_reads_back(tmp_path: Path) -> None:
    from lago_segment import LagoEvent
    from lago_segment.cli._input import open_source
    from lago_segment.cli._ledger import DeadLetters

    event = LagoEvent(
        transaction_id="t-é", external_subscription_id="s", code="café",
        timestamp=1, properties={"emoji": "\U0001f600"},
    )  # fmt: skip
    path = tmp_path / "dead.jsonl"
    dead = DeadLetters(str(path))
    dead.write(event, "Lago answered 422: code inconnu « café »", True, "événements.jsonl:3")
    # A file name that is not UTF-8 (os.fsdecode's lone surrogate) cannot fail the write.
    dead.write(event, "down", False, "bad\udcff.jsonl:4")
    dead.close()
    data = path.read_bytes()
    assert "café".encode() in data  # UTF-8, not escapes
    assert b"\\u00e9" not in data
    lines = [json.loads(line) for line in data.splitlines()]
    assert lines[0]["source"] == "événements.jsonl:3"
    assert lines[1]["source"] == "bad\udcff.jsonl:4"  # written as its JSON escape
    with open_source(str(path)) as source:
        items = list(source.lago_events())
    assert [(item.value, item.error) for item in items] == [(event, None), (event, None)]
