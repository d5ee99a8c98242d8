"""Every public module imports, and every name in its ``__all__`` is there."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC_MODULES = [
    "lago_segment",
    "lago_segment.events",
    "lago_segment.mapping",
    "lago_segment.lago",
    "lago_segment.client",
    "lago_segment.forwarder",
    "lago_segment.webhook",
    "lago_segment.lago_webhooks",
    "lago_segment.testing",
    "lago_segment.kafka",
    "lago_segment.otel",
    "lago_segment.integrations",
    "lago_segment.integrations.analytics",
    "lago_segment.errors",
    "lago_segment.cli",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_name_in_all_is_importable(name: str) -> None:
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{name} has no __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == []
    assert len(set(names)) == len(names)


def test_the_console_script_entry_point_and_python_m_run_main() -> None:
    from lago_segment.cli import main

    assert callable(main)
    out = subprocess.run(
        [sys.executable, "-m", "lago_segment", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip()


def test_the_pytest_plugin_module_imports() -> None:
    importlib.import_module("lago_segment.testing._pytest_plugin")


@pytest.mark.parametrize("name", ["lago_segment", "lago_segment.forwarder"])
def test_forwarding_error_is_a_deprecated_alias_of_forwarding_failure(name: str) -> None:
    module = importlib.import_module(name)
    with pytest.warns(DeprecationWarning, match="use .*ForwardingFailure"):
        alias = module.ForwardingError
    assert alias is module.ForwardingFailure
    assert "ForwardingError" not in module.__all__


def test_an_unknown_name_is_an_attribute_error() -> None:
    import lago_segment

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        lago_segment.Nope  # noqa: B018


def test_the_parser_knows_exactly_segments_call_types() -> None:
    from lago_segment._types import SEGMENT_CALL_TYPES
    from lago_segment.events import _parser

    assert tuple(_parser._BUILDERS) == SEGMENT_CALL_TYPES


def test_settings_is_the_handler_settings_class() -> None:
    import lago_segment
    from lago_segment.forwarder import HandlerSettings, Settings

    assert Settings is HandlerSettings is lago_segment.HandlerSettings
