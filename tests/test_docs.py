"""Every Python example in the docs and the README runs, so the docs cannot drift.

A fenced ``python`` block runs as a script, or as a doctest when it holds
``>>>`` prompts. The blocks of one page share one namespace, in order, and run
in a temporary working directory with the repository's ``examples/`` beside
them. A block preceded by the line ``<!-- no-run: reason -->`` is skipped
(recipes that need a web framework, or a Lago account: the reason says so).

The README and the quickstart are what a newcomer runs first, on a machine
that may have no network and no account: their blocks run exactly as
written, with loopback traffic only (anything else fails the test), so each
must bring its own ``FakeLago``. On the other pages, requests to Lago's hosted
API are answered by a ``FakeLago`` that accepts the key ``my-api-key``
(reference examples read as they would for real, and stay offline).
"""

from __future__ import annotations

import doctest
import os
import re
import shutil
from pathlib import Path

import pytest
import respx

from lago_segment.testing import FakeLago, set_testing

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
OFFLINE_AS_WRITTEN = {ROOT / "README.md", ROOT / "docs" / "quickstart.md"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
FENCE = re.compile(
    r"(?P<skip><!--\s*no-run:[^>]*-->\s*\n)?^```python[^\n]*\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def python_blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group("code"))
        for m in FENCE.finditer(text)
        if not m.group("skip")
    ]


def run_block(page: Path, line: int, code: str, namespace: dict[str, object]) -> None:
    name = f"{page.name}:{line}"
    if ">>>" in code:
        test = doctest.DocTestParser().get_doctest(code, namespace, name, str(page), line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, clear_globs=False)
        namespace.update(test.globs)
        assert not runner.failures, f"doctest failed in {name}"
    else:
        exec(compile(code, name, "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    blocks = python_blocks(page)
    if not blocks:
        pytest.skip(f"{page.name} has no Python examples")
    shutil.copytree(ROOT / "examples", tmp_path / "examples", dirs_exist_ok=True)
    cwd = Path.cwd()
    os.chdir(tmp_path)
    fake = FakeLago(api_key="my-api-key")
    offline = page in OFFLINE_AS_WRITTEN
    set_testing(not offline)  # the first pages run with the library's real retry waits
    try:
        with respx.mock(assert_all_called=False) as router:
            router.route(host__in=LOOPBACK).pass_through()
            if not offline:
                router.route(host__in=("api.getlago.com", "api.eu.getlago.com")).mock(
                    side_effect=fake.transport.handler
                )
                router.route().pass_through()
            # Offline pages: any other request matches no route and fails the test.
            namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
            if not offline:
                namespace["fake_lago"] = fake
            for line, code in blocks:
                run_block(page, line, code, namespace)
    finally:
        set_testing(False)
        os.chdir(cwd)


@pytest.mark.parametrize("page", sorted(OFFLINE_AS_WRITTEN), ids=lambda p: p.name)
def test_the_first_pages_bring_their_own_fake_lago(page: Path) -> None:
    code = "".join(code for _, code in python_blocks(page))
    assert "FakeLago(" in code
    assert ".serve()" in code


def test_the_runner_finds_the_readme_example() -> None:
    assert python_blocks(ROOT / "README.md"), "README.md lost its Python example"


def _drawn_tree() -> dict[str, set[str]]:
    """The files each box of how-it-works.md's package tree names, by box id."""
    text = (ROOT / "docs" / "how-it-works.md").read_text(encoding="utf-8")
    tree = text[text.index("digraph tree {") :]
    tree = tree[: tree.index("```")]
    boxes = re.findall(r"^    (\w+) \[label=<(.*?)>\];$", tree, flags=re.M | re.S)
    return {
        box: {
            module or title
            for module, title in re.findall(
                r'<font face="Courier">([\w.]+)</font>|<b>([\w.]+\.py)</b>', label
            )
        }
        for box, label in boxes
    }


def test_the_drawn_package_tree_names_every_file_of_the_package() -> None:
    package = ROOT / "lago_segment"
    drawn = _drawn_tree()
    top = {p.name for p in package.glob("*.py*") if p.suffix in (".py", ".pyi")}
    named_at_top = set().union(*(files for box, files in drawn.items() if box.startswith("top_")))
    assert named_at_top == top
    for directory in sorted(p for p in package.iterdir() if (p / "__init__.py").exists()):
        files = {
            p.name
            for p in directory.iterdir()
            if p.suffix in (".py", ".pyi") and p.name != "__init__.py"
        }
        assert drawn.get(directory.name) == files, directory.name
