"""Forwarders across process boundaries: SIGKILL with a spool, atexit, fork."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from support_forwarder import Driver, FakeSender, LoopbackLago, TinySpec, track

from lago_segment.client import LagoClient
from lago_segment.forwarder import DEFAULT_MAX_IN_FLIGHT, AsyncForwarder, Forwarder

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def child_env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


SIGKILL_CHILD = """
import sys
from support_forwarder import TinySpec, track
from lago_segment.client import LagoClient
from lago_segment.forwarder import Forwarder

url, spool, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = LagoClient("key", api_url=url, allow_insecure_http=True)
fwd = Forwarder(client, spec=TinySpec(), spool=spool, batch_size=10,
                flush_interval=0.01, atexit_timeout=None)
for i in range(n):
    fwd.forward(track(i))
print("forwarded", n, flush=True)
sys.stdin.read()  # wait to be killed
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_spool_delivers_everything_exactly_once_after_sigkill(tmp_path: Path) -> None:
    n = 500
    spool = tmp_path / "spool.db"
    with LoopbackLago(stall_after=3) as lago:
        with subprocess.Popen(
            [sys.executable, "-c", SIGKILL_CHILD, lago.url, str(spool), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().split() == ["forwarded", str(n)]
            lago.stalled.wait(30)  # a batch is in flight: Lago has it, the child does not know
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        assert lago.stalled.is_set()
        lago.release.set()
        assert len(lago.stored) < n  # the kill did interrupt delivery

        client = LagoClient("key", api_url=lago.url, allow_insecure_http=True)
        with client, Forwarder(client, spool=spool, flush_at_exit=False) as fwd:
            assert fwd.stats.enqueued > 0
        assert sorted(lago.stored) == sorted(f"m{i}" for i in range(n))
        resent = [tx for tx, times in lago.stored.items() if times > 1]
        # Only the batches in flight (at most max_in_flight of 10 events) were sent twice.
        assert 0 < len(resent) <= DEFAULT_MAX_IN_FLIGHT * 10


ATEXIT_CHILD = """
import sys
from support_forwarder import FakeSender, TinySpec, track
from lago_segment.forwarder import Forwarder

class Printing(FakeSender):
    def send_batch(self, events):
        result = super().send_batch(events)
        print(*self.stored, flush=True)
        return result

fwd = Forwarder(Printing(), spec=TinySpec(), flush_interval=3600,
                flush_at_exit=sys.argv[1] == "on", atexit_timeout=10)
for i in range(3):
    fwd.forward(track(i))
"""


@pytest.mark.parametrize(("flag", "printed"), [("on", "m0 m1 m2\n"), ("off", "")])
def test_the_thread_forwarder_flushes_at_exit_unless_disabled(flag: str, printed: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ATEXIT_CHILD, flag],
        capture_output=True,
        env=child_env(),
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == printed


HANGING_EXIT_CHILD = """
import sys
from support_forwarder import TinySpec, track
from lago_segment.client import LagoClient
from lago_segment.forwarder import Forwarder

def report(failure):
    print(failure.message_id, type(failure.error).__name__, flush=True)

client = LagoClient("key", api_url=sys.argv[1], timeout=30)
fwd = Forwarder(client, spec=TinySpec(), batch_size=5, max_in_flight=2, flush_interval=3600,
                on_error=report, atexit_timeout=0.3)
for i in range(20):
    fwd.forward(track(i))
"""


def test_the_exit_hook_reports_every_event_a_hanging_server_holds_before_exiting() -> None:
    with LoopbackLago(hang=True) as lago:
        done = subprocess.run(
            [sys.executable, "-c", HANGING_EXIT_CHILD, lago.url],
            capture_output=True,
            env=child_env(),
            text=True,
            timeout=60,
            check=True,
        )
    # Two batches were in flight and two queued when the interpreter exited: each
    # event is reported once, before the process is gone.
    lines = sorted(done.stdout.splitlines())
    assert lines == sorted(f"m{n} ForwarderClosedError" for n in range(20))


def fork_and_run(child: object) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child() else 3  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("kind", ["thread", "asyncio"])
def test_a_forked_child_keeps_forwarding_without_resending_the_parents_events(
    kind: str, tmp_path: Path
) -> None:
    sender = Driver(kind).sender()
    sender.gate = threading.Event()  # the parent's events stay queued across the fork
    fwd = Driver(kind).make(sender, spec=TinySpec(), batch_size=1)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    if isinstance(fwd, AsyncForwarder):
        runner.start()
        asyncio.run_coroutine_threadsafe(_forward_range(fwd, 0, 3), loop).result()
    else:
        for n in range(3):
            fwd.forward(track(n))
    sender.entered.wait(30)

    def child() -> bool:
        sender.gate = None
        sender.stored.clear()
        if isinstance(fwd, AsyncForwarder):
            asyncio.run(_forward_and_close(fwd))
        else:
            fwd.forward(track(10))
            fwd.close()
        return sender.stored == ["m10"] and fwd.stats.delivered == 1

    assert fork_and_run(child) == 0
    sender.gate.set()
    if isinstance(fwd, AsyncForwarder):
        asyncio.run_coroutine_threadsafe(fwd.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
    else:
        fwd.close()
    loop.close()
    assert sorted(sender.stored) == ["m0", "m1", "m2"]


async def _forward_range(fwd: AsyncForwarder, start: int, stop: int) -> None:
    for n in range(start, stop):
        fwd.forward(track(n))


async def _forward_and_close(fwd: AsyncForwarder) -> None:
    fwd.forward(track(10))
    await fwd.aclose()


def test_a_forked_child_does_not_send_the_parents_spooled_events(tmp_path: Path) -> None:
    sender = FakeSender()
    sender.gate = threading.Event()
    fwd = Forwarder(
        sender,
        spec=TinySpec(),
        spool=tmp_path / "s.db",
        flush_at_exit=False,
        flush_interval=0.01,
        batch_size=1,
    )
    for n in range(3):
        fwd.forward(track(n))
    sender.entered.wait(30)

    def child() -> bool:
        sender.gate = None
        sender.stored.clear()
        fwd.forward(track(10))
        fwd.close()
        return sender.stored == ["m10"]

    assert fork_and_run(child) == 0
    sender.gate.set()
    fwd.close()
    assert sorted(sender.stored) == ["m0", "m1", "m2"]
