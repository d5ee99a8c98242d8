"""The ``lago-segment`` command line (placeholder until the CLI lands)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = argparse.ArgumentParser(
        prog="lago-segment",
        description="Forward Segment-shaped usage events to the Lago billing API.",
    )
    parser.add_argument("--version", action="version", version=f"lago-segment {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0
