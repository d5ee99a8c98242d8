"""The examples in docs/events.md and in lago_segment.events' docstrings run as shown."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

from lago_segment import _events

DOC = Path(__file__).parent.parent / "docs" / "events.md"


def test_docs_events_md_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "events.md", str(DOC), 0)
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_docstring_examples_run() -> None:
    assert doctest.testmod(_events).failed == 0
