"""Every public module imports, and every name in its ``__all__`` is there."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

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


def test_top_level_settings_is_a_deprecated_alias_of_handler_settings() -> None:
    # At the top, "Settings" reads as the library's settings: it is a handler's.
    import lago_segment

    with pytest.warns(DeprecationWarning, match="use lago_segment.HandlerSettings"):
        alias = lago_segment.Settings
    assert alias is lago_segment.HandlerSettings
    assert "Settings" not in lago_segment.__all__


def _package(root: Path, name: str, stub: str | None) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text(
        "from lago_segment._lazy import attach_stub\n"
        "__getattr__, __dir__, __all__ = attach_stub(__name__)\n"
    )
    (package / "_impl.py").write_text("ANSWER = 42\nclass Thing: ...\n")
    if stub is not None:
        (package / "__init__.pyi").write_text(stub)


def test_a_lazy_package_takes_its_table_from_its_stub(tmp_path: Path) -> None:
    _package(
        tmp_path,
        "lazypkg",
        "from ._impl import (\n    ANSWER as ANSWER,\n    Thing as Thing,\n)\n",
    )
    script = (
        "import sys; import lazypkg\n"
        "assert 'lazypkg._impl' not in sys.modules\n"
        "assert lazypkg.__all__ == ['ANSWER', 'Thing'], lazypkg.__all__\n"
        "assert lazypkg.ANSWER == 42 and 'lazypkg._impl' in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True)


def test_a_lazy_package_works_from_a_zip_archive(tmp_path: Path) -> None:
    _package(tmp_path, "lazypkg", "from ._impl import ANSWER as ANSWER\n")
    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "lazypkg").iterdir():
            zf.write(path, f"lazypkg/{path.name}")
    shutil.rmtree(tmp_path / "lazypkg")
    script = "import lazypkg; assert lazypkg.ANSWER == 42 and lazypkg.__all__ == ['ANSWER']"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(archive), str(ROOT)])}
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True)


def test_a_lazy_package_without_its_stub_says_what_is_missing(tmp_path: Path) -> None:
    _package(tmp_path, "lazypkg", None)
    out = subprocess.run(
        [sys.executable, "-c", "import lazypkg"],
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "ImportError: lazypkg's public names are listed in" in out.stderr
    assert "__init__.pyi, which is missing" in out.stderr


def test_every_public_name_is_re_exported_for_type_checkers() -> None:
    # __all__ is read from the stub at run time; what this checks is that each of
    # its imports has the `A as A` form, without which mypy does not export A.
    for name in ("lago_segment", "lago_segment.kafka", "lago_segment.testing"):
        module = importlib.import_module(name)
        stub = Path(module.__file__).with_suffix(".pyi").read_text()  # type: ignore[arg-type]
        listed = {
            alias.asname
            for node in ast.parse(stub).body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.asname == alias.name  # `A as A`: re-exported for type checkers
        }
        assert listed == set(module.__all__), name
