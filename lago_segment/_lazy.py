"""PEP 562 lazy loading for the public packages: one table, one helper.

A lazy package writes each public name once, as a re-export in its
``__init__.pyi`` stub (``from .client import LagoClient as LagoClient``), the
way SPEC 1 and ``lazy_loader.attach_stub`` do. Type checkers read the stub;
at run time :func:`attach_stub` reads the same lines and gives the package a
module ``__getattr__`` that imports a name's module on first use, a
``__dir__`` and its ``__all__``. This keeps ``import lago_segment``,
``lago_segment.testing`` (and the pytest plugin it backs) and
``lago-segment --help`` from paying for httpx and the mapping compiler.
Renamed names go in ``deprecated``: using one warns and returns its new value.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach", "attach_stub"]


def attach_stub(
    package: str,
    *,
    deprecated: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package`` from its ``__init__.pyi``.

    Every ``from MODULE import NAME as NAME`` at the stub's top level is one
    entry of the table: ``NAME`` is public and lives in ``MODULE``. The stub is
    read through the package's loader, so this works from a zip archive too.

    >>> __getattr__, __dir__, __all__ = attach_stub(__name__)  # doctest: +SKIP
    """
    module = sys.modules[package]
    init = module.__file__
    if init is None or module.__spec__ is None or module.__spec__.loader is None:
        raise ImportError(f"{package} has no file to find its __init__.pyi beside")
    stub = os.path.join(os.path.dirname(init), "__init__.pyi")
    try:
        source = module.__spec__.loader.get_data(stub)  # type: ignore[attr-defined]
    except OSError as exc:
        raise ImportError(
            f"{package}'s public names are listed in {stub}, which is missing ({exc}); "
            "ship the .pyi files with the package (a freezing tool may need to be told)"
        ) from None
    table: dict[str, str] = {}
    for node in ast.parse(source, stub).body:
        if isinstance(node, ast.ImportFrom):
            where = "." * node.level + (node.module or "")
            for alias in node.names:
                table[alias.asname or alias.name] = where
    __getattr__, __dir__ = attach(package, table, deprecated=deprecated)
    return __getattr__, __dir__, sorted(table)


def attach(
    package: str,
    table: Mapping[str, str],
    *,
    deprecated: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package``.

    ``table`` maps a name to the module that defines it (absolute, or relative
    to ``package`` when it starts with a dot). ``deprecated`` maps an old name
    to the new name it stands for; the old name warns with a
    :class:`DeprecationWarning` on every access.

    >>> __getattr__, __dir__ = attach(__name__, {"FakeLago": "._fake_lago"})  # doctest: +SKIP
    """
    renamed = dict(deprecated or {})

    def __getattr__(name: str) -> Any:
        module = sys.modules[package]
        if name in renamed:
            new = renamed[name]
            warnings.warn(
                f"{package}.{name} is deprecated and will be removed in the next release; "
                f"use {package}.{new}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(module, new)
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where, package), name)
        setattr(module, name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        module = sys.modules[package]
        return sorted(set(vars(module)) | set(getattr(module, "__all__", ())))

    return __getattr__, __dir__
