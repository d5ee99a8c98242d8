"""PEP 562 lazy loading for the public packages: one table, one helper.

A package lists where each of its public names lives and gets a module
``__getattr__`` that imports the module on first use (as ``lazy_loader``'s
``attach`` does). This keeps ``import lago_segment``, ``lago_segment.testing``
(and the pytest plugin it backs) and ``lago-segment --help`` from paying for
httpx and the mapping compiler. Renamed names go in ``deprecated``: using one
warns and returns its new value.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


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
