"""lago-segment: forward Segment-shaped usage events to the Lago billing API.

The flow, one module per stage::

    Segment message  ->  events.SegmentEvent      (parse, validate)
                     ->  mapping.MappingSpec      (which Lago events it becomes)
                     ->  lago.LagoEvent           (validated Lago wire shape)
                     ->  client.LagoClient        (batch, retry, deliver)
                     ->  forwarder.Forwarder      (background batching, spool)

Everything a user needs is importable from here. Each public name is written
once, in ``__init__.pyi`` (which type checkers read); the exception tree is
imported at once and every other name is loaded on first use (PEP 562, see
``_lazy.py``), so that ``import lago_segment.testing`` (and the pytest plugin
it backs) or the CLI's ``--help`` do not pay for httpx and the mapping
compiler.
"""

from __future__ import annotations

from . import errors as errors
from ._lazy import attach_stub

__getattr__, __dir__, __all__ = attach_stub(
    __name__, deprecated={"ForwardingError": "ForwardingFailure", "Settings": "HandlerSettings"}
)
