"""The pytest plugin (run with pytester, as users run it) and the fixture object behind it."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lago_segment.lago import LagoEvent
from lago_segment.testing._fixture import FakeLagoFixture

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "lago_segment.testing._pytest_plugin"
DOC_EXAMPLE = re.compile(
    r"<!-- no-run: runs under pytest \(tests/test_testing_plugin\.py[^>]*-->\s*\n"
    r"```python\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def run_user_tests(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run a user's test file with the plugin loaded as pytest loads it for them."""
    pytester.makepyfile(test_user=source)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    installed = any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))
    return pytester.runpytest(*([] if installed else ["-p", PLUGIN]), *args)


def event(transaction_id: str, subscription: str = "sub-1") -> LagoEvent:
    return LagoEvent(
        transaction_id=transaction_id,
        external_subscription_id=subscription,
        code="api_calls",
        timestamp=1700000000,
    )


# -- the plugin, through pytester --------------------------------------------------------


def test_the_complete_example_in_the_docs_passes(pytester: pytest.Pytester) -> None:
    match = DOC_EXAMPLE.search((ROOT / "docs" / "testing.md").read_text(encoding="utf-8"))
    assert match, "docs/testing.md lost its complete example"
    result = run_user_tests(pytester, match.group("code"))
    result.assert_outcomes(passed=4)


def test_each_test_gets_a_fresh_fake_and_a_fresh_factory(pytester: pytest.Pytester) -> None:
    source = """
        import pytest
        from lago_segment import LagoEvent

        FIRST_MESSAGE_IDS = []

        @pytest.mark.parametrize("run", [1, 2])
        def test_uses_the_fixtures(run, segment_event, lago_client, fake_lago):
            FIRST_MESSAGE_IDS.append(segment_event()["messageId"])
            fake_lago.assert_nothing_stored()
            lago_client.send_batch([LagoEvent(
                transaction_id="t-1", external_subscription_id="s", code="c",
                timestamp=1700000000)])
            fake_lago.assert_stored(count=1)

        def test_both_runs_began_with_the_same_message():
            assert FIRST_MESSAGE_IDS[0] == FIRST_MESSAGE_IDS[1]
    """
    result = run_user_tests(pytester, _dedent(source))
    result.assert_outcomes(passed=3)


def test_a_failed_assertion_says_what_was_stored(pytester: pytest.Pytester) -> None:
    source = """
        from lago_segment import LagoEvent

        def test_wrong(lago_client, fake_lago):
            lago_client.send_batch([LagoEvent(
                transaction_id="t-1", external_subscription_id="s", code="c",
                timestamp=1700000000)])
            fake_lago.assert_stored(transaction_ids=["t-2"])
    """
    result = run_user_tests(pytester, _dedent(source))
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "AssertionError: FakeLago stored transaction_ids ['t-1'], expected ['t-2']" in output
    assert "def assert_stored" not in output  # the helper's own frame is hidden


def test_lago_client_retries_server_errors(pytester: pytest.Pytester) -> None:
    source = """
        from lago_segment import LagoEvent

        def test_retries(lago_client, fake_lago):
            fake_lago.script(503, 503)
            result = lago_client.send_batch([LagoEvent(
                transaction_id="t-1", external_subscription_id="s", code="c",
                timestamp=1700000000)])
            assert result.ok
            assert result.retries == 2
            fake_lago.assert_stored(transaction_ids=["t-1"])
    """
    run_user_tests(pytester, _dedent(source)).assert_outcomes(passed=1)


def _dedent(source: str) -> str:
    import textwrap

    return textwrap.dedent(source)


def test_importing_the_plugin_does_not_import_httpx() -> None:
    code = (
        f"import sys, {PLUGIN}; "
        "heavy = ['httpx', 'lago_segment.client', 'lago_segment.testing._fake_lago']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.stdout.strip() == "[]"


# -- the fixture object -------------------------------------------------------------------


def test_assert_stored_passes_for_exactly_the_stored_ids() -> None:
    with FakeLagoFixture() as lago:
        lago.client().send_batch([event("t-1"), event("t-2")])
        stored = lago.assert_stored(transaction_ids=["t-2", "t-1"])
    assert [e["transaction_id"] for e in stored] == ["t-1", "t-2"]


def test_assert_stored_fails_when_an_id_is_missing() -> None:
    with FakeLagoFixture() as lago:
        lago.client().send_batch([event("t-1")])
        with pytest.raises(AssertionError, match=r"expected \['t-1', 't-2'\]"):
            lago.assert_stored(transaction_ids=["t-1", "t-2"])


def test_assert_stored_narrows_to_matching_fields() -> None:
    with FakeLagoFixture() as lago:
        lago.client().send_batch([event("t-1", "a"), event("t-2", "b")])
        lago.assert_stored(transaction_ids=["t-2"], external_subscription_id="b")
        with pytest.raises(AssertionError, match="stored 1 events matching"):
            lago.assert_stored(count=2, external_subscription_id="a")


def test_assert_stored_without_expectations_needs_one_match() -> None:
    with FakeLagoFixture() as lago, pytest.raises(AssertionError, match="stored no events"):
        lago.assert_stored(code="api_calls")


def test_assert_nothing_stored_fails_once_something_is() -> None:
    with FakeLagoFixture() as lago:
        lago.assert_nothing_stored()
        lago.client().send_batch([event("t-1")])
        with pytest.raises(AssertionError, match=r"stored 1 events: \['t-1'\]"):
            lago.assert_nothing_stored()


def test_the_fake_lago_itself_is_reachable_through_the_fixture() -> None:
    with FakeLagoFixture() as lago:
        lago.client().send_batch([event("t-1")])
        assert lago.request_count == 1
        assert lago.events == lago.fake.events


async def test_the_async_client_sends_to_the_same_fake() -> None:
    with FakeLagoFixture() as lago:
        async with lago.async_client() as client:
            await client.send_batch([event("t-1")])
        lago.assert_stored(transaction_ids=["t-1"])


SPEC = {
    "rules": [
        {
            "name": "api-calls",
            "when": 'type = "track" and event = "API Call"',
            "code": "api_calls",
            "external_subscription_id": {"@path": "$.properties.sub"},
        }
    ]
}


def test_the_fixture_forwarder_delivers_into_the_fake_when_closed() -> None:
    lago = FakeLagoFixture()
    forwarder = lago.forwarder(SPEC, flush_at_exit=False)
    forwarder.forward(
        {
            "type": "track",
            "event": "API Call",
            "messageId": "m1",
            "userId": "u1",
            "timestamp": "2024-01-01T00:00:00Z",
            "properties": {"sub": "s1"},
        }
    )
    lago.close()
    assert forwarder.closed
    assert lago.stored(code="api_calls", external_subscription_id="s1")


def test_the_fixture_forwarder_builds_no_client_when_given_one() -> None:
    lago = FakeLagoFixture()
    client = lago.client()
    forwarder = lago.forwarder(SPEC, client=client, flush_at_exit=False)
    assert lago._closers == [client, forwarder]
    lago.close()
