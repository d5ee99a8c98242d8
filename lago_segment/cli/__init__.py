"""The ``lago-segment`` command line (also ``python -m lago_segment``).

Subcommands: ``check`` a mapping spec, ``map`` events as a dry run,
``explain`` how one event maps, ``replay`` an archive to Lago, and run a
``fake-lago`` server to try it all without a Lago account.

Conventions: data (JSON lines) on stdout, messages on stderr, one line per
problem (never a traceback for bad input). Exit codes, the same for every
command: 0 when everything went through; 1 when a spec has errors or an event
could not be mapped or stored; 2 for usage errors and unreadable input
(bad arguments, a missing, unreadable or corrupt file, a missing
``LAGO_API_KEY``); 3 when ``replay`` stopped because Lago cannot take events
(key refused, no events API at the URL, unreachable); 130 on Ctrl-C and 143
on SIGTERM (both: summary printed, checkpoint saved).

Layout: ``_parser.py`` builds the parser (one register function per
subcommand) and holds :func:`main`; ``_commands.py`` holds each subcommand's
body (one ``cmd_*`` function); ``_conventions.py`` the exit codes, usage
errors and stderr messages they share. ``replay``'s run is ``_replay.py``
(SIGINT/SIGTERM between batches: ``_signals.py``; its bookkeeping:
``_ledger.py``),
input files are read by ``_input.py`` (lines through
:mod:`lago_segment.events`' reader), ``check --against-lago`` is
``_check_lago.py``, and Kafka's ``consume`` lives in :mod:`lago_segment.kafka`.

Built on :mod:`argparse`, not click: the library's only runtime dependencies
are httpx and attrs, and a CLI is no reason to add one. Heavy modules
are imported by the subcommand that needs them, so ``--help`` stays instant.
"""

from __future__ import annotations

from lago_segment.cli._parser import main

__all__ = ["main"]
