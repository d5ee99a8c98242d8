"""The examples in every module's docstrings run as shown (docs/ has its own test)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lago_segment

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(lago_segment.__path__, "lago_segment.")
    # Importing __main__ runs the CLI.
    if not info.name.endswith("__main__")
)


def test_every_module_is_found() -> None:
    assert {"lago_segment.events", "lago_segment.lago", "lago_segment.mapping._spec"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
