"""Untrusted spec input raises only the library's errors (issue 10, section 4).

``MappingSpec.load``/``from_json``/``from_toml``/``from_dict`` take text from
config files, environment and users: whatever they are given, the only
exception that escapes is a :class:`~lago_segment.errors.SpecError` (a
``MappingError``, so a ``LagoSegmentError``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lago_segment.errors import LagoSegmentError, MappingError, SpecError
from lago_segment.mapping import AmbiguousFQLWarning, MappingSpec


def _only_our_errors(call: Any, *args: Any, **kwargs: Any) -> None:
    """Call the loader: it returns a spec or raises SpecError, nothing else."""
    error: LagoSegmentError | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AmbiguousFQLWarning)
        try:
            call(*args, **kwargs)
        except LagoSegmentError as exc:
            error = exc
    assert error is None or isinstance(error, SpecError), type(error)


@pytest.mark.parametrize("depth", [990, 5000])
def test_deeply_nested_json_is_a_spec_error(depth: int) -> None:
    # Up to Python 3.12 the json module's recursion fails on such input; from
    # 3.13 it parses it, and the document is then refused for its shape.
    with pytest.raises(SpecError, match=r"invalid JSON: nested too deeply|must be an object"):
        MappingSpec.from_json("[" * depth + "]" * depth)


@pytest.mark.parametrize("depth", [500, 3000])
def test_deeply_nested_toml_is_a_spec_error(depth: int) -> None:
    with pytest.raises(SpecError, match="invalid TOML: nested too deeply"):
        MappingSpec.from_toml("a = " + "[" * depth + "]" * depth)


@pytest.mark.parametrize("loader", [MappingSpec.from_json, MappingSpec.from_toml])
def test_bytes_that_are_not_utf8_are_a_spec_error(loader: Any) -> None:
    with pytest.raises(SpecError, match=r"spec: not UTF-8 text \(byte 2\)"):
        loader(b"{\xff}")


def test_a_deep_value_in_a_dict_is_reported_not_a_recursion_error() -> None:
    value: dict[str, Any] = {}
    for _ in range(50_000):
        value = {"a": value}
    rule = {"name": "r", "when": 'type = "track"', "code": "c", "external_subscription_id": "s"}
    with pytest.raises(SpecError, match="nested deeper than 32 levels"):
        MappingSpec.from_dict({"rules": [{**rule, "properties": {"x": value}}]})


def test_a_spec_error_is_still_a_mapping_error() -> None:
    with pytest.raises(MappingError):
        MappingSpec.from_dict({"rules": []})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_spec_errors(data: bytes) -> None:
    _only_our_errors(MappingSpec.from_json, data)
    _only_our_errors(MappingSpec.from_toml, data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_spec_errors(text: str) -> None:
    _only_our_errors(MappingSpec.from_json, text)
    _only_our_errors(MappingSpec.from_toml, text)


# Text that looks like a spec: valid JSON/TOML, wrong in every possible way.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "rules",
                    "version",
                    "name",
                    "when",
                    "code",
                    "external_subscription_id",
                    "properties",
                    "timestamp",
                    "@path",
                    "@template",
                    "@if",
                    "@json",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values)
def test_arbitrary_documents_raise_only_spec_errors(data: Any) -> None:
    _only_our_errors(MappingSpec.from_dict, data)
    _only_our_errors(MappingSpec.from_json, json.dumps(data))


@settings(
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=200), st.sampled_from([".json", ".toml"]))
def test_load_of_arbitrary_file_content_raises_only_spec_errors(
    tmp_path: Path, data: bytes, suffix: str
) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_bytes(data)
    _only_our_errors(MappingSpec.load, path)
