"""Structuring spec documents with a private cattrs Converter (imported only when needed).

The converter is strict where cattrs' defaults are lenient: a string field
refuses a number or an object instead of converting it to text. Its errors
(all of them: detailed validation) become ``(path, problem)`` pairs, which
:mod:`._load` turns into one :class:`~lago_segment.MappingError`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._model import MappingDocument, RuleDocument
from ._text import suggest

__all__ = ["Path", "Problem", "structure", "unstructure"]

#: A location in the document: keys and list indices.
Path = tuple["str | int", ...]
Problem = tuple[Path, str]


class _Invalid(ValueError):
    """A value of the wrong shape; the message is the problem, for the user."""


def _strict_str(message: str) -> Any:
    def structure(value: Any, _type: Any) -> str:
        if value.__class__ is not str:
            raise _Invalid(message)
        return value  # type: ignore[no-any-return,unused-ignore]

    return structure


def _optional_str(value: Any, _type: Any) -> str | None:
    if value is None or value.__class__ is str:
        return value  # type: ignore[no-any-return,unused-ignore]
    raise _Invalid("must be a string")


def _anything(value: Any, _type: Any) -> Any:
    return value


def _same(value: Any) -> Any:
    return value


def _properties(value: Any, _type: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Invalid("must be an object of property values, or a directive")
    return dict(value)


def _version(value: Any, _type: Any) -> int:
    if value.__class__ is not int or value != 1:
        raise _Invalid(f"unsupported version {value!r} (expected 1)")
    return 1


@functools.cache
def _converter() -> cattrs.Converter:
    from ._load import MAX_RULES

    c = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    # cattrs' default str hook would turn {"a": 1} into "{'a': 1}": refuse instead.
    c.register_structure_hook(str, _strict_str("must be a string"))
    # Values typed Any (mapping-kit values) pass through: see the overrides below.
    rule_fn = make_dict_structure_fn(
        RuleDocument,
        c,
        _cattrs_forbid_extra_keys=True,
        _cattrs_detailed_validation=True,
        name=override(
            struct_hook=_strict_str("must be 1-64 characters among letters, digits, '_', '.', '-'")
        ),
        when=override(struct_hook=_strict_str("must be an FQL string such as 'type = \"track\"'")),
        description=override(struct_hook=_optional_str),
        properties=override(struct_hook=_properties),
        code=override(struct_hook=_anything),
        external_subscription_id=override(struct_hook=_anything),
        transaction_id=override(struct_hook=_anything),
        timestamp=override(struct_hook=_anything),
        precise_total_amount_cents=override(struct_hook=_anything),
    )

    def rule(value: Any, _type: Any) -> RuleDocument:
        if not isinstance(value, Mapping):
            raise _Invalid(f"must be an object, not {type(value).__name__}")
        return rule_fn(value, RuleDocument)

    c.register_structure_hook(RuleDocument, rule)

    def rules(value: Any, _type: Any) -> tuple[RuleDocument, ...]:
        if not isinstance(value, list) or not value:
            raise _Invalid("must be a non-empty list of rules")
        if len(value) > MAX_RULES:
            raise _Invalid(f"more than {MAX_RULES} rules")
        # As cattrs' own list hook in detailed validation: every rule's errors, by index.
        out: list[RuleDocument] = []
        errors: list[Exception] = []
        for index, item in enumerate(value):
            try:
                out.append(rule(item, RuleDocument))
            except Exception as exc:
                note = IterableValidationNote(f"rules @ index {index}", index, RuleDocument)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined,unused-ignore]
                errors.append(exc)
        if errors:
            raise IterableValidationError("While structuring rules", errors, tuple)
        return tuple(out)

    doc_fn = make_dict_structure_fn(
        MappingDocument,
        c,
        _cattrs_forbid_extra_keys=True,
        _cattrs_detailed_validation=True,
        rules=override(struct_hook=rules),
        version=override(struct_hook=_version),
    )
    c.register_structure_hook(MappingDocument, doc_fn)
    # Values are JSON already: passed through as they are (no walk of a deep value).
    same = override(unstruct_hook=_same)
    c.register_unstructure_hook(
        RuleDocument,
        make_dict_unstructure_fn(
            RuleDocument,
            c,
            _cattrs_omit_if_default=True,
            code=same,
            external_subscription_id=same,
            transaction_id=same,
            timestamp=same,
            properties=same,
            precise_total_amount_cents=same,
        ),
    )
    c.register_unstructure_hook(
        MappingDocument,
        make_dict_unstructure_fn(MappingDocument, c, _cattrs_omit_if_default=True),
    )
    return c


def structure(data: Mapping[str, Any]) -> tuple[MappingDocument | None, list[Problem]]:
    """The typed document, or ``None`` and every structural problem with its path."""
    converter = _converter()
    try:
        return converter.structure(data, MappingDocument), []
    except (ClassValidationError, IterableValidationError, _Invalid) as exc:
        problems: list[Problem] = []
        _walk(exc, (), problems)
        return None, problems


def unstructure(document: MappingDocument) -> dict[str, Any]:
    """The document as plain JSON-like data, optional fields left out when unset."""
    data: dict[str, Any] = _converter().unstructure(document)
    # The version is written out: a normalized spec says which format it is.
    return {"version": document.version, "rules": [_plain(r) for r in data["rules"]]}


_ORDER = (
    "name",
    "description",
    "when",
    "code",
    "external_subscription_id",
    "transaction_id",
    "timestamp",
    "precise_total_amount_cents",
    "properties",
)


def _plain(rule: Mapping[str, Any]) -> dict[str, Any]:
    # An unset optional field is left out; a required one is kept even when null.
    required = ("name", "when", "code", "external_subscription_id")
    return {k: rule[k] for k in _ORDER if k in rule and (rule[k] is not None or k in required)}


def _walk(exc: BaseException, path: Path, out: list[Problem]) -> None:
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", ()):
                if hasattr(note, "name"):
                    sub_path = (*path, note.name)
                elif hasattr(note, "index"):
                    sub_path = (*path, note.index)
            if isinstance(sub, KeyError) and sub_path != path:
                out.append((path, f'missing required key "{sub_path[-1]}"'))
            else:
                _walk(sub, sub_path, out)
    elif isinstance(exc, ForbiddenExtraKeysError):
        allowed = [a.name for a in attrs.fields(exc.cl)]
        for key in sorted(exc.extra_fields, key=str):
            out.append(((*path, key), f"unknown key{suggest(str(key), allowed)}"))
    elif isinstance(exc, _Invalid):
        out.append((path, str(exc)))
    else:
        out.append((path, f"invalid: {exc}"))
