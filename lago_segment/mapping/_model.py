"""The spec document as typed, frozen attrs classes: what a spec file says, before compiling.

Build one in Python and compile it with :meth:`MappingSpec.from_document`, or
get the document of a loaded spec back from :attr:`MappingSpec.document`. The
classes only hold the document: :class:`MappingSpec` checks it (triggers,
directives, names) and reports every problem at once.

Field values (``code``, ``properties``, ...) are mapping-kit values: a JSON
literal, or an object with one ``@`` directive. Optional fields left at
``None`` are absent from the document (a ``null`` written there means the
same: the default applies).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["MappingDocument", "RuleDocument"]


@attrs.frozen(kw_only=True)
class RuleDocument:
    """One rule of a spec document: a trigger and the Lago event it builds.

    >>> RuleDocument(
    ...     name="api_calls",
    ...     when='type = "track" and event = "API Call"',
    ...     code="api_calls",
    ...     external_subscription_id={"@path": "$.context.groupId"},
    ... ).name
    'api_calls'
    """

    name: str
    """Unique within the spec: 1-64 letters, digits, ``_``, ``.``, ``-``."""
    when: str
    """The FQL trigger, e.g. ``type = "track" and event = "API Call"``."""
    code: Any
    """The Lago billable metric code (a mapping-kit value)."""
    external_subscription_id: Any
    """The Lago subscription to bill (a mapping-kit value)."""
    description: str | None = None
    """Free text for humans."""
    transaction_id: Any = None
    """Default (``None``): the Segment ``messageId``."""
    timestamp: Any = None
    """Default (``None``): the event's effective timestamp."""
    properties: Mapping[str, Any] | None = None
    """Property name to mapping-kit value, or one directive resolving to an object."""
    precise_total_amount_cents: Any = None
    """A decimal amount for dynamic pricing (use ``@decimal``)."""


@attrs.frozen(kw_only=True)
class MappingDocument:
    """A whole spec document: its rules, in order, and the format version.

    >>> doc = MappingDocument(rules=(RuleDocument(
    ...     name="r", when='type = "track"', code="c", external_subscription_id="s"),))
    >>> doc.version
    1
    """

    rules: tuple[RuleDocument, ...] = attrs.field(converter=tuple)
    """The rules, in spec order (a list is accepted and stored as a tuple)."""
    version: int = 1
    """The spec format version; only 1 exists."""
