"""FQL triggers: every operator, Segment's comparison quirks, precedence, errors with columns."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lago_segment import MappingError
from lago_segment.mapping import AmbiguousFQLWarning, MappingSpec
from lago_segment.mapping._fql import FQLSyntaxError, compile_fql

EVENT: dict[str, Any] = {
    "type": "track",
    "event": "API Call",
    "userId": "user-1",
    "messageId": "m-1",
    "properties": {
        "price": 150,
        "ratio": 0.5,
        "count_text": "5",
        "active": True,
        "nothing": None,
        "tags": ["a", "b"],
        "plan": "pro-annual",
    },
    "traits": {"email": "ada@example.com"},
    "context": {"groupId": "ws-1", "library": {"name": "analytics.js"}},
}


def matches(fql: str, event: dict[str, Any] = EVENT) -> bool:
    return compile_fql(fql).test(event)


@pytest.mark.parametrize(
    ("fql", "expected"),
    [
        ('type = "track"', True),
        ("type = 'track'", True),
        ('type = "identify"', False),
        ('type != "identify"', True),
        ('event = "API Call"', True),
        ('userId = "user-1"', True),
        ('anonymousId = "x"', False),
        ('context.groupId = "ws-1"', True),
        ('context.library.name = "analytics.js"', True),
        ('traits.email = "ada@example.com"', True),
        ('name = "x"', False),
        ('groupId = "ws-1"', False),
    ],
)
def test_equality_on_each_field(fql: str, expected: bool) -> None:
    assert matches(fql) is expected


# Typed equality, as Segment's trigger evaluator has it today: the cases below come from
# segmentio/action-destinations packages/destination-subscriptions/src/__tests__/validate.test.ts
# ("operators - equals (boolean true|false)", "equals (strings)", "number_equals (numbers)",
# "not equals (numbers)", "number_not_equals (numbers)") and the parser that produces those
# operators, packages/destination-subscriptions/src/parse-fql.ts.


def _with(value: Any) -> dict[str, Any]:
    return {"type": "track", "properties": {"value": value}}


@pytest.mark.parametrize(
    ("fql", "value", "expected"),
    [
        # is_true / is_false: only a JSON boolean.
        ("properties.value = true", True, True),
        ("properties.value = true", False, False),
        ("properties.value = true", "true", False),
        ("properties.value = false", False, True),
        ("properties.value = false", True, False),
        ("properties.value = false", "false", False),
        # = "123": actual === "123".
        ('properties.value = "123"', "123", True),
        ('properties.value = "123"', 123, False),
        ('properties.value = "123"', 0, False),
        # number_equals: typeof actual === "number".
        ("properties.value = 123", 123, True),
        ("properties.value = 123", 123.0, True),
        ("properties.value = 123", "123", False),
        ("properties.value = 123", 0, False),
        # != "123": actual !== "123" (so the number 123 differs from it).
        ('properties.value != "123"', 123, True),
        ('properties.value != "123"', "123", False),
        ('properties.value != "123"', 456, True),
        ('properties.value != "123"', "456", True),
        # number_not_equals: a number, and a different one.
        ("properties.value != 456", 123, True),
        ("properties.value != 456", "456", False),
        ("properties.value != 456", 0, True),
        ("properties.value != 456", 456, False),
    ],
)
def test_equality_is_typed_as_in_segment_today(fql: str, value: Any, expected: bool) -> None:
    assert matches(fql, _with(value)) is expected


def test_type_null_reads_as_absent_which_is_what_segment_does_for_a_string_type() -> None:
    assert matches("type != null")
    assert not matches("type = null")


def test_a_boolean_is_never_a_number() -> None:
    assert not matches("properties.value = 1", _with(True))
    assert not matches("properties.value != 0", _with(True))


def test_number_not_equals_is_false_when_the_field_is_absent() -> None:
    # number_not_equals needs typeof actual === "number"; undefined is not one.
    assert not matches("properties.absent != 5")


def test_not_equals_a_string_matches_an_absent_field() -> None:
    # validate.ts '!=': undefined !== "x".
    assert matches('properties.absent != "x"')


def test_top_level_fields_compare_a_number_as_its_text() -> None:
    # parse-fql.ts: for type, event, name and userId the value is String(token value).
    assert matches("event = 5", {"type": "track", "event": "5"})
    assert not matches("event = 5", {"type": "track", "event": 5})
    assert matches("userId != 5", {"type": "track", "userId": 5})


@pytest.mark.parametrize(
    ("fql", "reason"),
    [
        # parse-fql.ts maps only `= true|false` to is_true/is_false; `!= true` stays
        # '!=' with String(true), i.e. actual !== "true": the boolean true matches.
        ("properties.value != true", 'the text "true"'),
        ("traits.flag != false", 'the text "false"'),
        ("userId != true", 'the text "true"'),
        # type and event: every value is String(token), so null is the text "null" (for
        # type, which is always a string, that reads the same as "absent or null").
        ("event = null", 'the text "null"'),
        ("event != null", 'the text "null"'),
        ("event = true", 'the text "true"'),
        ("name = false", 'the text "false"'),
    ],
)
def test_comparisons_segment_reads_as_text_are_refused(fql: str, reason: str) -> None:
    with pytest.raises(FQLSyntaxError, match=f"is refused: Segment compares .* with {reason}"):
        compile_fql(fql)


def test_the_refusal_names_the_rule_when_a_spec_loads() -> None:
    rule = {
        "name": "trial",
        "when": "properties.trial != true",
        "code": "x",
        "external_subscription_id": "s",
    }
    with pytest.raises(
        MappingError, match=r"rules\[0\]\.when \(rule \"trial\"\): column 21: .*refused"
    ):
        MappingSpec.from_dict({"rules": [rule]})


def test_the_issue_s_examples_no_longer_bill_what_segment_would_not_send() -> None:
    assert not matches("properties.trial = false", {"properties": {"trial": "false"}})
    assert not matches("properties.value = 123", {"properties": {"value": "123"}})
    assert matches('properties.value != "123"', {"properties": {"value": 123}})


def test_equals_null_means_absent_or_null() -> None:
    assert matches("properties.absent = null")
    assert matches("properties.nothing = null")
    assert not matches("properties.price = null")


def test_not_equals_null_means_present() -> None:
    assert matches("userId != null")
    assert not matches("anonymousId != null")
    assert not matches("properties.nothing != null")


@pytest.mark.parametrize(
    ("fql", "expected"),
    [
        ("properties.price > 100", True),
        ("properties.price >= 150", True),
        ("properties.price < 150", False),
        ("properties.price <= 150", True),
        ("properties.ratio < 1", True),
        ("properties.ratio > 0.25", True),
        ("properties.price > -1.5e2", True),
    ],
)
def test_numeric_comparisons(fql: str, expected: bool) -> None:
    assert matches(fql) is expected


def test_numbers_compare_only_when_the_value_is_a_number() -> None:
    assert not matches("properties.count_text < 10")
    assert not matches("properties.active > 0")
    assert not matches("properties.absent < 10")


def test_ordering_against_a_string_is_a_load_time_error() -> None:
    with pytest.raises(FQLSyntaxError, match="column 20"):
        compile_fql('properties.price > "100"')


def test_contains_is_a_substring_test_on_strings_only() -> None:
    assert matches('contains(event, "Call")')
    assert not matches('contains(event, "call")')
    assert not matches('contains(properties.price, "15")')


def test_match_supports_wildcards_anywhere() -> None:
    # Leading and trailing * as in packages/destination-subscriptions/src/__tests__/fql.test.ts
    # ('match(event, "X*")', 'match(event, "*X")'); a * inside is our documented extension.
    assert matches('match(event, "API*")')
    assert matches('match(event, "*Call")')
    assert matches('match(properties.plan, "pro*ann*")')
    assert matches('match(event, "API Call")')
    assert not matches('match(event, "API")')
    assert not matches('match(properties.plan, "*basic*")')


@pytest.mark.parametrize(
    ("pattern", "column", "what"),
    [
        ('"API?all"', 18, "'\\?'"),
        ('"API [CD]all"', 19, r"'\[\.\.\.\]'"),
        ('"API\\*"', 18, "a backslash escape"),
    ],
)
def test_match_refuses_the_wildcards_segment_does_not_evaluate(
    pattern: str, column: int, what: str
) -> None:
    # The FQL reference documents ?, [abc], [a-z] and \x; parse-fql.ts only turns a
    # trailing * into starts_with and anything else into ends_with.
    with pytest.raises(
        FQLSyntaxError, match=f"column {column}: match\\(\\) supports only"
    ) as info:
        compile_fql(f"match(event, {pattern})")
    assert re.search(what, str(info.value))
    assert "Segment does not evaluate it" in str(info.value)


def test_match_wildcard_does_not_overlap_head_and_tail() -> None:
    assert not matches('match(event, "ab*ba")', {"event": "aba"})


def test_bang_negates_functions_and_groups() -> None:
    assert matches('!contains(event, "Page")')
    assert not matches('!match(event, "API*")')
    assert matches('!(type = "identify" or type = "page")')


def test_and_or_and_parentheses() -> None:
    assert matches('type = "track" and event = "API Call"')
    assert not matches('type = "track" and event = "Other"')
    assert matches('type = "identify" or event = "API Call"')
    assert matches('type = "track" and (event = "x" or properties.price > 100)')


def test_and_binds_tighter_than_or() -> None:
    # (identify and x) or track: true. Segment would read all three as "or" too,
    # but for 'track or identify and x' it would use "and" for the whole level.
    with pytest.warns(AmbiguousFQLWarning):
        cond = compile_fql('type = "track" or type = "identify" and event = "nope"')
    assert cond.test(EVENT)


def test_mixing_and_or_without_parentheses_warns() -> None:
    with pytest.warns(AmbiguousFQLWarning, match="parentheses"):
        compile_fql('type = "a" and event = "b" or event = "c"')


def test_parenthesised_mixing_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile_fql('(type = "a" and event = "b") or event = "c"')
        compile_fql('(type = "a") and event = "b" and (event = "c" or name = "d")')


def test_spec_warns_with_the_rule_location_at_the_callers_line() -> None:
    with pytest.warns(AmbiguousFQLWarning, match=r"rules\[0\]\.when") as record:
        MappingSpec.from_dict(
            {
                "rules": [
                    {
                        "name": "r",
                        "when": 'type = "a" and event = "b" or event = "c"',
                        "code": "c",
                        "external_subscription_id": "s",
                    }
                ]
            }
        )
    assert record[0].filename == __file__


@pytest.mark.parametrize(
    ("fql", "column", "problem"),
    [
        ('type = "track" and', 19, "expected a field"),
        ('type "track"', 6, "expected an operator"),
        ("type = ", 8, "expected a value"),
        ('tpye = "track"', 1, 'did you mean "type"'),
        ('type = "track', 8, "unterminated string"),
        ('(type = "track"', 16, "expected ')'"),
        ('type = "a" event = "b"', 12, "expected 'and', 'or'"),
        ("type = #", 8, "unexpected character"),
        ('contains(event "x")', 16, "expected ','"),
        ("contains(event, 3)", 17, "takes a quoted string"),
        ("properties.x < null", 16, "null can only be compared"),
        ('type.sub = "x"', 1, "has no sub-fields"),
        ("", 1, "empty trigger"),
    ],
)
def test_syntax_errors_name_the_column(fql: str, column: int, problem: str) -> None:
    with pytest.raises(FQLSyntaxError) as info:
        compile_fql(fql)
    assert info.value.column == column
    assert problem in info.value.problem


def test_overlong_and_overnested_triggers_are_refused() -> None:
    with pytest.raises(FQLSyntaxError, match="longer than"):
        compile_fql('type = "' + "x" * 3000 + '"')
    with pytest.raises(FQLSyntaxError, match="nested deeper"):
        compile_fql("(" * 40 + 'type = "x"' + ")" * 40)


def test_first_failure_names_the_failing_condition_and_its_value() -> None:
    cond = compile_fql('type = "track" and properties.price > 200')
    assert cond.first_failure(EVENT) == "properties.price > 200  (properties.price is 150)"
    assert cond.first_failure({**EVENT, "properties": {"price": 300}}) is None


FQL_ALPHABET = st.sampled_from(
    [
        "type",
        "event",
        "properties.x",
        "context.a.b",
        "traits",
        "=",
        "!=",
        "<",
        ">=",
        "!",
        "(",
        ")",
        "and",
        "or",
        "null",
        "true",
        '"x"',
        "'y'",
        "3",
        "-2.5",
        "contains",
        "match",
        ",",
        " ",
        '"',
        "*",
        "#",
        "\\",
    ]
)


@given(st.one_of(st.text(max_size=60), st.lists(FQL_ALPHABET, max_size=20).map(" ".join)))
def test_arbitrary_triggers_compile_or_raise_mapping_error(fql: str) -> None:
    rule = {"name": "r", "when": fql, "code": "c", "external_subscription_id": "s"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AmbiguousFQLWarning)
        try:
            spec = MappingSpec.from_dict({"rules": [rule]})
        except MappingError as exc:
            errors = exc.errors
        else:
            assert spec.rules[0].matches(EVENT) in (True, False)
            return
    assert errors[0].startswith('rules[0].when (rule "r"): ')
