"""Declarative mapping from Segment events to Lago events, in mapping-kit's syntax.

A spec is a list of named rules. Each rule has a trigger (``when``, an FQL
subscription such as ``type = "track" and event = "API Call"``) and the Lago
fields as mapping-kit values (literals, or objects with one ``@`` directive)::

    spec = MappingSpec.load("lago-mapping.toml")
    lago_events = spec.map(segment_event)     # [] when no rule matches
    print(spec.explain(segment_event))        # why (not)

A spec can also be built in Python from the typed document classes
(:class:`MappingDocument`, :class:`RuleDocument`) with
:meth:`MappingSpec.from_document`, and written out with
:meth:`MappingSpec.to_dict`, ``to_json`` or ``to_toml``.

See ``docs/mapping.md`` for every directive and operator.
"""

from ._directives import DIRECTIVES, MAX_DEPTH, MAX_TEMPLATE_LENGTH
from ._explain import Explanation, FieldExplanation, RuleExplanation
from ._fql import MAX_FQL_DEPTH, MAX_FQL_LENGTH, AmbiguousFQLWarning
from ._load import MAX_RULES
from ._model import MappingDocument, RuleDocument
from ._paths import MAX_PATH_LENGTH
from ._rules import MAX_PROPERTIES, Rule
from ._spec import MappingSpec

#: The names of every directive a spec may use.
DIRECTIVE_NAMES: frozenset[str] = frozenset(DIRECTIVES)

__all__ = [
    "DIRECTIVE_NAMES",
    "MAX_DEPTH",
    "MAX_FQL_DEPTH",
    "MAX_FQL_LENGTH",
    "MAX_PATH_LENGTH",
    "MAX_PROPERTIES",
    "MAX_RULES",
    "MAX_TEMPLATE_LENGTH",
    "AmbiguousFQLWarning",
    "Explanation",
    "FieldExplanation",
    "MappingDocument",
    "MappingSpec",
    "Rule",
    "RuleDocument",
    "RuleExplanation",
]
