"""Mapping-kit directives and the billing conversions, compiled and resolved."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lago_segment.mapping import DIRECTIVE_NAMES
from lago_segment.mapping._conversions import Unconvertible
from lago_segment.mapping._directives import Compiler
from lago_segment.mapping._paths import MISSING

EVENT: dict[str, Any] = {
    "type": "track",
    "event": "API Call",
    "userId": "user-1",
    "properties": {
        "name": "Ada",
        "count": 3,
        "ratio": 2.0,
        "zero": 0,
        "off": False,
        "empty": "",
        "nothing": None,
        "text_number": " 42 ",
        "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
        "nested": {"a": {"b": 1}, "c": [1, 2]},
        "json": '{"k": [1, 2]}',
        "dotted.key": "yes",
    },
    "traits": {"plan": "Pro Annual"},
}


def resolve(value: Any, payload: Any = EVENT) -> Any:
    compiler = Compiler()
    fn = compiler.compile(value, "v")
    assert compiler.errors == []
    return fn(payload)


def errors_of(value: Any) -> list[str]:
    compiler = Compiler()
    compiler.compile(value, "v")
    return compiler.errors


def test_literals_resolve_to_themselves() -> None:
    assert resolve("x") == "x"
    assert resolve(3) == 3
    assert resolve(None) is None
    assert resolve({"a": 1, "b": [True]}) == {"a": 1, "b": [True]}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.event", "API Call"),
        ("event", "API Call"),
        ("$.properties.count", 3),
        ("properties.items[1].sku", "b"),
        ("properties.items.0.qty", 1),
        ('properties["dotted.key"]', "yes"),
        ("$.properties.absent", MISSING),
        ("$.properties.items[9]", MISSING),
        ("$.event.length", MISSING),
    ],
)
def test_path(path: str, expected: Any) -> None:
    assert resolve({"@path": path}) == expected


def test_path_dollar_dot_is_the_whole_event() -> None:
    assert resolve({"@path": "$."}) is EVENT


def test_path_never_reaches_python_attributes() -> None:
    assert resolve({"@path": "$.event.__class__"}) is MISSING
    assert resolve({"@path": "$.properties.items.__len__"}) is MISSING


def test_unresolved_object_keys_are_omitted() -> None:
    assert resolve({"a": {"@path": "$.nope"}, "b": 1}) == {"b": 1}


def test_template_renders_values_and_missing_ones_as_empty() -> None:
    assert resolve({"@template": "{{properties.name}} ({{ userId }})"}) == "Ada (user-1)"
    assert resolve({"@template": "Hi {{traits.fullName}}!"}) == "Hi !"
    assert resolve({"@template": "{{properties.nothing}}|{{properties.off}}"}) == "|false"
    assert resolve({"@template": "{{properties.ratio}}"}) == "2"
    assert resolve({"@template": "{{properties.nested.c}}"}) == "[1,2]"


def test_template_never_html_escapes_and_accepts_triple_braces() -> None:
    payload = {"properties": {"path": "/v1/a&b"}}
    assert resolve({"@template": "{{properties.path}}"}, payload) == "/v1/a&b"
    assert resolve({"@template": "{{{ properties.path }}}!"}, payload) == "/v1/a&b!"


def test_template_placeholder_with_a_bad_path_is_a_load_error() -> None:
    assert errors_of({"@template": "x {{a..b}}"}) == [
        "v.@template {{a..b}}: invalid path 'a..b' at character 2"
    ]


def test_template_without_placeholders_is_constant() -> None:
    assert resolve({"@template": "plain {text}"}) == "plain {text}"


def test_literal_resolves_its_value() -> None:
    assert resolve({"@literal": True}) is True
    assert resolve({"@literal": {"x": {"@path": "$.event"}}}) == {"x": "API Call"}


def test_if_exists_picks_then_or_else() -> None:
    spec = {"@if": {"exists": {"@path": "$.userId"}, "then": "yes", "else": "no"}}
    assert resolve(spec) == "yes"
    spec["@if"]["exists"] = {"@path": "$.properties.nothing"}
    assert resolve(spec) == "no"


def test_if_without_the_chosen_branch_is_unresolved() -> None:
    assert resolve({"@if": {"exists": {"@path": "$.nope"}, "then": 1}}) is MISSING


@pytest.mark.parametrize("key", ["zero", "off", "empty", "nothing", "absent"])
def test_if_blank_treats_zero_false_empty_and_null_as_blank(key: str) -> None:
    spec = {"@if": {"blank": {"@path": f"$.properties.{key}"}, "then": "filled", "else": "blank"}}
    assert resolve(spec) == "blank"


def test_if_blank_takes_then_for_a_value() -> None:
    spec = {"@if": {"blank": {"@path": "$.properties.name"}, "then": "filled", "else": "blank"}}
    assert resolve(spec) == "filled"


def test_case_lower_and_upper_leave_non_strings_alone() -> None:
    assert resolve({"@case": {"operator": "lower", "value": {"@path": "$.traits.plan"}}}) == (
        "pro annual"
    )
    assert resolve({"@case": {"operator": "upper", "value": "abc"}}) == "ABC"
    assert resolve({"@case": {"operator": "upper", "value": 3}}) == 3


def test_replace_is_literal_not_a_regex() -> None:
    spec = {"@replace": {"pattern": ".", "replacement": "-", "value": "a.b.c"}}
    assert resolve(spec) == "a-b-c"


def test_replace_options_global_ignorecase_and_second_pattern() -> None:
    once = {"@replace": {"pattern": "a", "replacement": "x", "value": "aAa", "global": False}}
    assert resolve(once) == "xAa"
    icase = {
        "@replace": {"pattern": "a", "replacement": "\\1", "value": "aAa", "ignorecase": True}
    }
    assert resolve(icase) == "\\1\\1\\1"
    two = {
        "@replace": {
            "pattern": " ",
            "replacement": "_",
            "pattern2": "Pro",
            "replacement2": "pro",
            "value": {"@path": "$.traits.plan"},
        }
    }
    assert resolve(two) == "pro_Annual"


def test_replace_converts_numbers_and_booleans_to_text() -> None:
    assert resolve({"@replace": {"pattern": "0", "replacement": "9", "value": 100}}) == "199"
    assert resolve({"@replace": {"pattern": "ue", "value": True}}) == "tr"


def test_merge_right_lets_later_objects_win_and_left_earlier() -> None:
    objects = [{"a": 1, "b": 1}, {"b": 2}, {"@path": "$.nope"}]
    assert resolve({"@merge": {"objects": objects, "direction": "right"}}) == {"a": 1, "b": 2}
    assert resolve({"@merge": {"objects": objects, "direction": "left"}}) == {"a": 1, "b": 1}


def test_json_encode_and_decode() -> None:
    assert resolve({"@json": {"mode": "encode", "value": {"@path": "$.properties.nested.c"}}}) == (
        "[1,2]"
    )
    assert resolve({"@json": {"mode": "decode", "value": {"@path": "$.properties.json"}}}) == {
        "k": [1, 2]
    }
    assert resolve({"@json": {"mode": "encode", "value": {"@path": "$.nope"}}}) is MISSING


def test_json_decode_of_invalid_json_returns_the_string() -> None:
    # As mapping-kit (see tests/test_mapping_fidelity.py).
    assert resolve({"@json": {"mode": "decode", "value": "{oops"}}) == "{oops"


def test_flatten_joins_keys_with_the_separator() -> None:
    spec = {"@flatten": {"value": {"@path": "$.properties.nested"}, "separator": "_"}}
    assert resolve(spec) == {"a_b": 1, "c_0": 1, "c_1": 2}
    assert resolve({"@flatten": {"value": {"x": {"y": 1}}}}) == {"x.y": 1}
    assert resolve({"@flatten": {"value": "scalar"}}) == {"": "scalar"}  # as mapping-kit


def test_array_path_maps_each_item_through_the_shape() -> None:
    spec = {"@arrayPath": ["$.properties.items", {"id": {"@path": "$.sku"}, "n": 1}]}
    assert resolve(spec) == [{"id": "a", "n": 1}, {"id": "b", "n": 1}]
    assert resolve({"@arrayPath": ["$.properties.items"]}) == EVENT["properties"]["items"]
    single = {"@arrayPath": ["$.properties.nested.a", {"v": {"@path": "$.b"}}]}
    assert resolve(single) == [{"v": 1}]


def test_transform_maps_against_the_applied_payload() -> None:
    spec = {
        "@transform": {
            "apply": {"who": {"@path": "$.userId"}},
            "mapping": {"@template": "user={{who}}"},
        }
    }
    assert resolve(spec) == "user=user-1"


def test_exclude_when_null_omits_a_null() -> None:
    assert resolve({"@excludeWhenNull": {"@path": "$.properties.nothing"}}) is MISSING
    assert resolve({"@excludeWhenNull": {"@path": "$.properties.zero"}}) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (2.5, 2.5), ("42", 42), (" 1.5 ", 1.5), ("-3e2", -300.0), (None, MISSING)],
)
def test_number_converts_numeric_text(value: Any, expected: Any) -> None:
    assert resolve({"@number": {"@literal": value}}) == expected


@pytest.mark.parametrize("value", ["abc", True, "1_000", "nan", [1], {"a": 1}, "9" * 200])
def test_number_refuses_what_is_not_a_number(value: Any) -> None:
    with pytest.raises(Unconvertible, match="@number"):
        resolve({"@number": {"@literal": value}})


@pytest.mark.parametrize(
    ("value", "expected"), [(3, 3), (4.0, 4), ("12", 12), ("12.0", 12), ("2.5e3", 2500)]
)
def test_integer_converts_whole_numbers(value: Any, expected: int) -> None:
    result = resolve({"@integer": {"@literal": value}})
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [2.5, "12.5", False, "x", "1e99999"])
def test_integer_refuses_fractions_rather_than_truncating(value: Any) -> None:
    with pytest.raises(Unconvertible, match="@integer"):
        resolve({"@integer": {"@literal": value}})


def test_decimal_keeps_every_digit() -> None:
    assert resolve({"@decimal": "0.1"}) == Decimal("0.1")
    assert resolve({"@decimal": 0.1}) == Decimal("0.1")
    assert resolve({"@decimal": 7}) == Decimal(7)
    with pytest.raises(Unconvertible, match="@decimal"):
        resolve({"@decimal": "ten"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "true"), (False, "false"), (3, "3"), (2.0, "2"), (0.5, "0.5"), ("s", "s")],
)
def test_string_converts_scalars_as_javascript_would(value: Any, expected: str) -> None:
    assert resolve({"@string": {"@literal": value}}) == expected


def test_string_of_null_is_unresolved_and_of_an_object_is_refused() -> None:
    assert resolve({"@string": None}) is MISSING
    with pytest.raises(Unconvertible, match="@json"):
        resolve({"@string": {"@literal": {"a": 1}}})


def test_default_replaces_unresolved_and_null() -> None:
    spec: dict[str, Any] = {"@default": {"value": {"@path": "$.nope"}, "fallback": "dflt"}}
    assert resolve(spec) == "dflt"
    spec = {"@default": {"value": {"@path": "$.properties.nothing"}, "fallback": 0}}
    assert resolve(spec) == 0
    spec = {"@default": {"value": {"@path": "$.properties.zero"}, "fallback": 9}}
    assert resolve(spec) == 0


def test_every_directive_is_tested_here() -> None:
    text = Path(__file__).read_text(encoding="utf-8")
    assert {name for name in DIRECTIVE_NAMES if f'"{name}"' not in text} == set()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"@pathh": "$.x"}, 'v: unknown directive "@pathh" (did you mean "@path"?)'),
        ({"@path": "$.x", "y": 1}, "v: a directive object has exactly one @ key"),
        ({"@path": 3}, "v.@path: expects a path string"),
        ({"@path": "a..b"}, "v.@path: invalid path"),
        ({"@template": 3}, "v.@template: expects a template string"),
        ({"@template": "x" * 3000}, "v.@template: template longer than"),
        ({"@if": {"exists": 1}}, 'v.@if: needs a "then" or an "else" branch'),
        ({"@if": {"then": 1}}, 'v.@if: needs exactly one condition: "exists" or "blank"'),
        ({"@if": {"exist": 1, "then": 1}}, 'v.@if.exist: unknown option "exist"'),
        ({"@case": {"operator": "title", "value": "x"}}, "v.@case.operator: must be one of"),
        ({"@case": {"value": "x"}}, 'v.@case: missing option "operator"'),
        ({"@replace": {"pattern": "", "value": "x"}}, "v.@replace.pattern: must be a non-empty"),
        ({"@replace": {"pattern": "a", "value": "x", "global": "yes"}}, "v.@replace.global"),
        ({"@merge": {"objects": {}, "direction": "right"}}, "v.@merge.objects: must be a list"),
        ({"@json": {"value": 1, "mode": "pretty"}}, "v.@json.mode: must be one of"),
        ({"@flatten": {"value": 1, "separator": 1}}, "v.@flatten.separator: must be a string"),
        ({"@arrayPath": "x"}, "v.@arrayPath: expects"),
        ({"@arrayPath": ["$.x", 3]}, "v.@arrayPath[1]: the item shape must be an object"),
        ({"@transform": {"apply": {}}}, 'v.@transform: missing option "mapping"'),
        ({"@default": {"value": 1}}, 'v.@default: missing option "fallback"'),
        ({"@number": {"@nope": 1}}, 'v.@number: unknown directive "@nope"'),
    ],
)
def test_invalid_directives_are_reported_with_their_location(value: Any, message: str) -> None:
    assert any(e.startswith(message) for e in errors_of(value)), errors_of(value)


def test_nesting_is_bounded() -> None:
    value: Any = "x"
    for _ in range(40):
        value = {"@literal": value}
    assert any("nested deeper than" in e for e in errors_of(value))


def test_flatten_survives_deep_nesting_without_recursion() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = {"k": deep}
    flat = resolve({"@flatten": {"value": {"@path": "$.d"}}}, {"d": deep})
    assert flat == {".".join(["k"] * 5000): 1}
