"""``python -m lago_segment``: the command-line interface."""

from .cli import main

raise SystemExit(main())
