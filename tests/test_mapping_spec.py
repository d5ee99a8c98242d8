"""MappingSpec: loading, validation with locations, map, defaults, transaction ids, explain."""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lago_segment import InvalidEventPayload, LagoSegmentError, MappingError
from lago_segment.events import Track, parse_event
from lago_segment.mapping import (
    MAX_PROPERTIES,
    MAX_RULES,
    AmbiguousFQLWarning,
    Explanation,
    MappingSpec,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

API_CALL: dict[str, Any] = {
    "type": "track",
    "event": "API Call",
    "userId": "user-1",
    "messageId": "msg-1",
    "timestamp": "2024-05-01T12:00:00.250Z",
    "sentAt": "2024-05-01T12:00:01Z",
    "context": {"groupId": "ws-1"},
    "properties": {"endpoint": "/v1/Users", "status": 200, "invoice_id": "inv-1", "gb": "1.5"},
}
T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)


def rule(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "api",
        "when": 'type = "track" and event = "API Call"',
        "code": "api_calls",
        "external_subscription_id": {"@path": "$.context.groupId"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def spec_of(*rules: dict[str, Any]) -> MappingSpec:
    return MappingSpec.from_dict({"rules": list(rules)})


def load_errors(data: Any) -> list[str]:
    with pytest.raises(MappingError) as info:
        MappingSpec.from_dict(data)
    return info.value.errors


# --- loading ----------------------------------------------------------------

SPEC_DICT = {"rules": [rule(properties={"endpoint": {"@path": "$.properties.endpoint"}})]}
SPEC_TOML = """
[[rules]]
name = "api"
when = 'type = "track" and event = "API Call"'
code = "api_calls"
external_subscription_id = { "@path" = "$.context.groupId" }
properties.endpoint = { "@path" = "$.properties.endpoint" }
"""


def test_dict_json_and_toml_load_the_same_spec() -> None:
    specs = [
        MappingSpec.from_dict(SPEC_DICT),
        MappingSpec.from_json(json.dumps(SPEC_DICT)),
        MappingSpec.from_json(json.dumps(SPEC_DICT).encode()),
        MappingSpec.from_toml(SPEC_TOML),
    ]
    results = [[e.to_dict() for e in s.map(API_CALL)] for s in specs]
    assert all(r == results[0] for r in results)
    assert results[0][0]["properties"] == {"endpoint": "/v1/Users"}


@pytest.mark.parametrize("suffix", [".json", ".toml", ".TOML"])
def test_load_picks_the_format_by_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_text(json.dumps(SPEC_DICT) if suffix == ".json" else SPEC_TOML, encoding="utf-8")
    assert [r.name for r in MappingSpec.load(path).rules] == ["api"]


def test_load_refuses_an_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("rules: []", encoding="utf-8")
    with pytest.raises(MappingError, match=r"unknown spec format '\.yaml'"):
        MappingSpec.load(path)


def test_load_of_a_missing_file_is_a_mapping_error(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read the spec"):
        MappingSpec.load(tmp_path / "absent.toml")


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    text = json.dumps({"rules": [rule(code={"@pathh": "$.event"})]})
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        MappingSpec.load(path)
    column = text.index('{"@pathh"') + 1
    assert info.value.errors == [
        f'{path}:1:{column}: rules[0].code (rule "api"): unknown directive "@pathh" '
        '(did you mean "@path"?)'
    ]


@pytest.mark.parametrize(
    ("loader", "text", "message"),
    [
        (MappingSpec.from_json, "{oops", "spec:1:2: invalid JSON"),
        (MappingSpec.from_toml, "rules = [\nx = = 1", "spec:2:1: invalid TOML"),
    ],
)
def test_syntax_errors_in_the_file_are_mapping_errors(
    loader: Any, text: str, message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        loader(text)


# --- validation -------------------------------------------------------------


def test_every_load_error_is_reported_at_once_with_its_location() -> None:
    errors = load_errors(
        {
            "rules": [
                rule(nmae="x", when='type = "track" and'),
                rule(
                    name="api",
                    properties={"gb": {"@pathh": "$.properties.gb"}, "ok": {"@path": "$.x"}},
                    external_subscription_id=None,
                ),
            ],
            "extra": 1,
        }
    )
    assert errors == [
        "extra: unknown key",
        'rules[0].nmae (rule "api"): unknown key (did you mean "name"?)',
        'rules[0].when (rule "api"): column 19: expected a field, found end of input in '
        "'type = \"track\" and'",
        'rules[1] (rule "api"): missing required key "external_subscription_id"',
        'rules[1].name (rule "api"): duplicate rule name "api"',
        'rules[1].properties.gb (rule "api"): unknown directive "@pathh" (did you mean "@path"?)',
    ]


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(MappingError) as info:
        spec_of(rule(code={"@x": 1}), rule(name="b", when="tpye = 1"))
    text = str(info.value)
    assert text.startswith("2 errors:")
    assert 'rules[0].code (rule "api"): unknown directive "@x"' in text
    assert "rules[1].when (rule \"b\"): column 1: unknown field 'tpye'" in text


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], 'spec: must be an object with a "rules" list'),
        ({}, "rules: must be a non-empty list of rules"),
        ({"rules": []}, "rules: must be a non-empty list of rules"),
        ({"rules": [rule()], "version": 2}, "version: unsupported version 2 (expected 1)"),
        ({"rules": ["x"]}, "rules[0]: must be an object, not str"),
        ({"rules": [rule(code=None)]}, 'rules[0] (rule "api"): missing required key "code"'),
        ({"rules": [rule(when=None)]}, 'rules[0] (rule "api"): missing required key "when"'),
        ({"rules": [rule(name="has space")]}, "rules[0].name: must be 1-64 characters"),
        ({"rules": [rule(name="x" * 65)]}, "rules[0].name: must be 1-64 characters"),
        ({"rules": [rule(description=3)]}, 'rules[0].description (rule "api"): must be a string'),
        ({"rules": [rule(when=3)]}, 'rules[0].when (rule "api"): must be an FQL string'),
        ({"rules": [rule(properties=[1])]}, 'rules[0].properties (rule "api"): must be an object'),
        (
            {"rules": [rule(properties={" ": 1})]},
            'rules[0].properties (rule "api"): property names must',
        ),
        (
            {"rules": [rule(timestamp={"@path": "a..b"})]},
            'rules[0].timestamp.@path (rule "api"): invalid',
        ),
        (
            {"rules": [rule(properties={"@path": 1})]},
            'rules[0].properties.@path (rule "api"): expects a path string',
        ),
        (
            {"rules": [rule(properties={f"p{i}": 1 for i in range(MAX_PROPERTIES + 1)})]},
            f'rules[0].properties (rule "api"): more than {MAX_PROPERTIES} properties',
        ),
        ({"rules": [rule()] * (MAX_RULES + 1)}, f"rules: more than {MAX_RULES} rules"),
    ],
)
def test_each_load_error_names_its_location(data: Any, error: str) -> None:
    with pytest.raises(MappingError) as info:
        MappingSpec.from_dict(data)
    assert any(e.startswith(error) for e in info.value.errors), info.value.errors


# --- mapping ----------------------------------------------------------------


def test_defaults_transaction_id_is_message_id_and_timestamp_the_events() -> None:
    (event,) = spec_of(rule()).map(API_CALL)
    assert event.transaction_id == "msg-1"
    assert event.timestamp == T0
    assert event.code == "api_calls"
    assert event.external_subscription_id == "ws-1"
    assert event.properties == {}


def test_default_timestamp_falls_back_to_original_timestamp() -> None:
    data = {k: v for k, v in API_CALL.items() if k != "timestamp"}
    data["originalTimestamp"] = "2024-05-01T11:00:00Z"
    (event,) = spec_of(rule()).map(data)
    assert event.timestamp == datetime(2024, 5, 1, 11, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
        ("2024-05-01T12:00:00.5+02:00", datetime(2024, 5, 1, 10, 0, 0, 500000, timezone.utc)),
        ("2024-05-01 10:00:00", datetime(2024, 5, 1, 10, tzinfo=timezone.utc)),
        ("1714557600.5", Decimal("1714557600.5")),
        (1714557600, 1714557600),
    ],
)
def test_mapped_timestamp_accepts_iso_and_unix_seconds(value: Any, expected: Any) -> None:
    data = {**API_CALL, "properties": {"at": value}}
    (event,) = spec_of(rule(timestamp={"@path": "$.properties.at"})).map(data)
    assert event.timestamp == expected


def test_unresolved_mapped_timestamp_falls_back_to_the_default() -> None:
    (event,) = spec_of(rule(timestamp={"@path": "$.properties.absent"})).map(API_CALL)
    assert event.timestamp == T0


@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T10:00:00Z", True, [1]])
def test_unusable_mapped_timestamp_is_a_mapping_error(value: Any) -> None:
    data = {**API_CALL, "properties": {"at": value}}
    with pytest.raises(MappingError) as info:
        spec_of(rule(timestamp={"@path": "$.properties.at"})).map(data)
    assert info.value.field == "timestamp"


def test_properties_and_amount_are_mapped() -> None:
    spec = spec_of(
        rule(
            properties={
                "endpoint": {
                    "@case": {"operator": "lower", "value": {"@path": "$.properties.endpoint"}}
                },
                "status": {"@string": {"@path": "$.properties.status"}},
                "gb": {"@number": {"@path": "$.properties.gb"}},
                "absent": {"@path": "$.properties.absent"},
            },
            precise_total_amount_cents={"@decimal": {"@path": "$.properties.gb"}},
        )
    )
    (event,) = spec.map(API_CALL)
    assert event.properties == {"endpoint": "/v1/users", "status": "200", "gb": 1.5}
    assert event.precise_total_amount_cents == Decimal("1.5")


def test_properties_can_be_one_directive_resolving_to_an_object() -> None:
    spec = spec_of(rule(properties={"@path": "$.properties"}))
    (event,) = spec.map({**API_CALL, "properties": {"a": "x", "n": 2}})
    assert event.properties == {"a": "x", "n": 2}


def test_no_matching_rule_maps_to_nothing() -> None:
    assert spec_of(rule()).map({**API_CALL, "event": "Other"}) == []


def test_map_takes_a_segment_event_a_dict_str_or_bytes() -> None:
    spec = spec_of(rule())
    text = json.dumps(API_CALL)
    events = [
        spec.map(parse_event(API_CALL)),
        spec.map(API_CALL),
        spec.map(text),
        spec.map(text.encode()),
    ]
    assert all(e == events[0] for e in events)


def test_map_takes_an_event_built_in_code() -> None:
    event = Track(
        event="API Call",
        user_id="user-1",
        message_id="m-9",
        timestamp=T0,
        context={"groupId": "ws-9"},
    )
    (lago,) = spec_of(rule()).map(event)
    assert (lago.transaction_id, lago.external_subscription_id) == ("m-9", "ws-9")


def test_a_malformed_raw_event_raises_invalid_event_payload() -> None:
    with pytest.raises(InvalidEventPayload):
        spec_of(rule()).map({"type": "track", "userId": "u"})


# --- map-time errors --------------------------------------------------------


def test_missing_subscription_id_names_rule_field_and_message_id() -> None:
    data = {**API_CALL, "context": {}}
    with pytest.raises(MappingError) as info:
        spec_of(rule()).map(data)
    err = info.value
    assert (err.rule, err.field, err.message_id) == ("api", "external_subscription_id", "msg-1")
    assert str(err) == (
        'rule "api": external_subscription_id: {"@path": "$.context.groupId"} '
        "resolved to nothing (messageId 'msg-1')"
    )


def test_a_null_property_is_refused_not_dropped() -> None:
    spec = spec_of(rule(properties={"x": {"@path": "$.properties.x"}}))
    with pytest.raises(MappingError) as info:
        spec.map({**API_CALL, "properties": {"x": None}})
    assert info.value.field == "properties.x"
    assert "@string" in str(info.value)


def test_a_boolean_property_is_refused_unless_converted() -> None:
    spec = spec_of(rule(properties={"x": {"@path": "$.properties.x"}}))
    with pytest.raises(MappingError, match=r"properties\.x"):
        spec.map({**API_CALL, "properties": {"x": True}})
    spec = spec_of(rule(properties={"x": {"@string": {"@path": "$.properties.x"}}}))
    assert spec.map({**API_CALL, "properties": {"x": True}})[0].properties == {"x": "true"}


def test_an_unconvertible_value_names_the_property() -> None:
    spec = spec_of(rule(properties={"gb": {"@number": {"@path": "$.properties.gb"}}}))
    with pytest.raises(MappingError) as info:
        spec.map({**API_CALL, "properties": {"gb": "lots"}})
    assert info.value.field == "properties.gb"
    assert '@number: cannot convert "lots" to a number' in str(info.value)


def test_a_non_string_code_is_refused() -> None:
    with pytest.raises(MappingError) as info:
        spec_of(rule(code={"@path": "$.properties.status"})).map(API_CALL)
    assert info.value.field == "code"


def test_an_event_without_message_id_needs_an_explicit_transaction_id() -> None:
    data = {k: v for k, v in API_CALL.items() if k != "messageId"}
    with pytest.raises(MappingError, match="no messageId") as info:
        spec_of(rule()).map(data)
    assert info.value.field == "transaction_id"
    spec = spec_of(rule(transaction_id={"@template": "{{userId}}-{{timestamp}}"}))
    assert spec.map(data)[0].transaction_id == "user-1-2024-05-01T12:00:00.250Z"


def test_map_is_all_or_nothing_when_one_matching_rule_fails() -> None:
    spec = spec_of(
        rule(name="ok", when='type = "track"', code="tracks"),
        rule(name="broken", external_subscription_id={"@path": "$.properties.absent"}),
    )
    with pytest.raises(MappingError) as info:
        spec.map(API_CALL)
    assert info.value.rule == "broken"


# --- transaction ids with several rules ---------------------------------------


def test_a_single_match_keeps_the_message_id() -> None:
    spec = spec_of(rule(), rule(name="other", when='event = "Other"'))
    assert [e.transaction_id for e in spec.map(API_CALL)] == ["msg-1"]


def test_several_matches_get_distinct_deterministic_ids() -> None:
    spec = spec_of(rule(), rule(name="all-tracks", when='type = "track"', code="tracks"))
    first = spec.map(API_CALL)
    assert [e.transaction_id for e in first] == ["msg-1:api", "msg-1:all-tracks"]
    assert spec.map(API_CALL) == first


def test_an_explicit_transaction_id_is_kept_on_several_matches() -> None:
    spec = spec_of(
        rule(transaction_id={"@path": "$.messageId"}),
        rule(name="all-tracks", when='type = "track"', code="tracks"),
    )
    assert [e.transaction_id for e in spec.map(API_CALL)] == ["msg-1", "msg-1:all-tracks"]


def test_clashing_explicit_ids_for_one_subscription_are_refused() -> None:
    tid = {"@path": "$.messageId"}
    spec = spec_of(
        rule(transaction_id=tid), rule(name="b", when='type = "track"', transaction_id=tid)
    )
    with pytest.raises(MappingError, match='also the transaction_id of rule "api"') as info:
        spec.map(API_CALL)
    assert info.value.rule == "b"


# --- explain ----------------------------------------------------------------


def test_explain_reports_matches_failures_and_fields() -> None:
    spec = spec_of(
        rule(properties={"endpoint": {"@path": "$.properties.endpoint"}}),
        rule(name="big", when="properties.status > 400", code="errors"),
    )
    explanation = spec.explain(API_CALL)
    assert isinstance(explanation, Explanation)
    assert explanation.matched == ["api"]
    api, big = explanation.rules
    assert api.failed_condition is None
    assert api.event is not None
    assert api.event.transaction_id == "msg-1"
    assert [(f.name, f.value) for f in api.fields] == [
        ("code", "api_calls"),
        ("external_subscription_id", "ws-1"),
        ("properties.endpoint", "/v1/Users"),
    ]
    assert big.failed_condition == "properties.status > 400  (properties.status is 200)"
    assert big.event is None


def test_explain_shows_a_failing_rule_instead_of_raising() -> None:
    explanation = spec_of(rule()).explain({**API_CALL, "context": {}})
    (only,) = explanation.rules
    assert only.matched
    assert only.event is None
    assert only.error is not None
    assert "external_subscription_id" in only.error
    (sub,) = [f for f in only.fields if f.name == "external_subscription_id"]
    assert not sub.resolved
    assert sub.reason == "required, but resolved to nothing"


def test_explain_uses_the_multi_match_ids() -> None:
    spec = spec_of(rule(), rule(name="all", when='type = "track"', code="tracks"))
    assert [e.transaction_id for e in spec.explain(API_CALL).events] == ["msg-1:api", "msg-1:all"]


def test_explain_renders_a_readable_report() -> None:
    spec = spec_of(rule(), rule(name="big", when="properties.status > 400", code="errors"))
    text = str(spec.explain(API_CALL))
    assert (
        text.splitlines()[0]
        == 'event msg-1 (track "API Call"): 1 of 2 rules matched, 1 Lago event'
    )
    assert 'rule "api": MATCHED' in text
    assert 'rule "big": no match' in text
    assert "failed: properties.status > 400  (properties.status is 200)" in text
    assert 'external_subscription_id = "ws-1"    <- {"@path": "$.context.groupId"}' in text


def test_rule_matches_reads_an_event_or_its_dict() -> None:
    (api,) = spec_of(rule()).rules
    assert api.matches(API_CALL)
    assert api.matches(parse_event(API_CALL))
    assert not api.matches({**API_CALL, "type": "page"})


# --- the shipped examples -----------------------------------------------------


def test_the_example_spec_maps_the_example_events_as_documented() -> None:
    spec = MappingSpec.load(EXAMPLES / "lago-mapping.toml")
    outcomes = {"mapped": 0, "unmatched": 0, "failed": 0}
    lago_events = []
    failures = []
    for name in ("segment-events.jsonl", "segment-events-unmappable.jsonl"):
        with (EXAMPLES / name).open("rb") as lines:
            for line in lines:
                try:
                    mapped = spec.map(line)
                except MappingError as exc:
                    outcomes["failed"] += 1
                    failures.append((name, exc.rule, exc.field, exc.message_id))
                    continue
                outcomes["mapped" if mapped else "unmatched"] += 1
                lago_events.extend(mapped)
    assert outcomes == {"mapped": 19, "unmatched": 9, "failed": 3}
    assert len(lago_events) == 25
    # Every failure is in the file meant for them: the main examples map cleanly.
    assert {name for name, *_ in failures} == {"segment-events-unmappable.jsonl"}
    assert sorted(failure[1:] for failure in failures) == [
        ("storage", "properties.bytes", "7f780056-b2cd-410d-b1ad-edbc5c915e93"),
        ("track-events", "external_subscription_id", "7ef992a8-3e47-4134-8a4b-cd42101034a8"),
        (
            "track-events",
            "external_subscription_id",
            "ajs-next-1714564000015-93bce856-ca08-43dd-804f-d65ce1181284",
        ),
    ]
    codes = sorted({e.code for e in lago_events})
    assert codes == [
        "API Call",
        "Export Started",
        "Feature Used",
        "Invoice Paid",
        "Report Exported",
        "Seat Added",
        "api_calls",
        "storage_gb",
    ]
    ids = [(e.transaction_id, e.external_subscription_id) for e in lago_events]
    assert len(set(ids)) == len(ids)


def test_the_example_api_call_becomes_two_lago_events() -> None:
    spec = MappingSpec.load(EXAMPLES / "lago-mapping.toml")
    line = (EXAMPLES / "segment-events.jsonl").read_bytes().splitlines()[2]
    seed, api = spec.map(line)
    assert seed.to_dict()["transaction_id"] == "8698e95f-b8d0-48ea-97da-1b729ffe1d99"
    assert api.to_dict() == {
        "transaction_id": "8698e95f-b8d0-48ea-97da-1b729ffe1d99:api-calls",
        "external_subscription_id": "ws-1",
        "code": "api_calls",
        "timestamp": "1714564980.021",
        "properties": {"endpoint": "/v1/events", "method": "GET", "status": "500"},
    }


# --- fuzzing ----------------------------------------------------------------

FUZZ_SPEC = MappingSpec.load(EXAMPLES / "lago-mapping.toml")
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
segment_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "group", "page", "x", 3]),
        "event": st.one_of(st.sampled_from(["API Call", "Invoice Paid"]), json_values),
        "userId": st.one_of(st.text(max_size=5), json_values),
        "anonymousId": st.text(max_size=5),
        "groupId": json_values,
        "messageId": st.one_of(st.text(max_size=5), json_values),
        "timestamp": st.one_of(st.just("2024-05-01T12:00:00Z"), json_values),
        "properties": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"invoice_id": json_values, "endpoint": json_values}
            ),
            json_values,
        ),
        "traits": st.one_of(
            st.fixed_dictionaries({}, optional={"storage_bytes": json_values}), json_values
        ),
        "context": st.one_of(
            st.fixed_dictionaries({}, optional={"groupId": json_values}), json_values
        ),
    },
)


P = {"@path": "$.properties.endpoint"}
KITCHEN_SINK = MappingSpec.from_dict(
    {
        "rules": [
            {
                "name": "everything",
                "when": "type != null",
                "code": {"@template": "{{event}}{{{properties.endpoint}}}x"},
                "external_subscription_id": {
                    "@default": {"value": {"@path": "$.userId"}, "fallback": "s"}
                },
                "timestamp": {"@path": "$.properties.endpoint"},
                "precise_total_amount_cents": {"@decimal": {"@path": "$.properties.invoice_id"}},
                "properties": {
                    "a": {"@if": {"exists": P, "then": {"@string": P}}},
                    "b": {"@if": {"blank": P, "then": "x", "else": "y"}},
                    "c": {"@case": {"operator": "upper", "value": {"@string": P}}},
                    "d": {"@replace": {"pattern": "a", "value": {"@excludeWhenNull": P}}},
                    "e": {"@json": {"mode": "encode", "value": P}},
                    "f": {
                        "@json": {
                            "mode": "decode",
                            "value": {"@json": {"mode": "encode", "value": P}},
                        }
                    },
                    "g": {"@flatten": {"value": {"@path": "$."}}},
                    "h": {"@arrayPath": ["$.properties", {"x": {"@path": "$.endpoint"}}]},
                    "i": {"@merge": {"objects": [P, {"@path": "$.context"}], "direction": "left"}},
                    "j": {
                        "@transform": {"apply": {"k": P}, "mapping": {"@number": {"@path": "k"}}}
                    },
                    "k": {"@integer": P},
                    "l": {"@literal": {"@number": P}},
                },
            }
        ]
    }
)


@pytest.mark.parametrize("spec", [FUZZ_SPEC, KITCHEN_SINK], ids=["example", "every-directive"])
@settings(max_examples=200, deadline=None)
@given(data=segment_like)
def test_arbitrary_events_map_or_raise_our_errors(spec: MappingSpec, data: dict[str, Any]) -> None:
    try:
        events = spec.map(data)
    except LagoSegmentError:
        return
    for event in events:
        json.dumps(event.to_dict())


@pytest.mark.parametrize("spec", [FUZZ_SPEC, KITCHEN_SINK], ids=["example", "every-directive"])
@settings(max_examples=100, deadline=None)
@given(data=segment_like)
def test_explain_never_raises_for_a_valid_event(spec: MappingSpec, data: dict[str, Any]) -> None:
    try:
        parsed = parse_event(data)
    except InvalidEventPayload:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        str(spec.explain(parsed))


def test_ambiguous_trigger_in_a_spec_still_loads() -> None:
    with pytest.warns(AmbiguousFQLWarning):
        spec = spec_of(rule(when='type = "track" and event = "x" or event = "API Call"'))
    assert spec.map(API_CALL)


def test_routing_by_type_keeps_spec_order_and_untyped_rules() -> None:
    spec = spec_of(
        rule(name="any-api", when='event = "API Call"', code="a"),
        rule(name="typed", code="b"),
        rule(name="grouped", when='(type = "track") and context.groupId != null', code="c"),
        rule(name="either", when='type = "page" or event = "API Call"', code="d"),
        rule(name="identify", when='type = "identify"', code="e"),
    )
    assert [e.code for e in spec.map(API_CALL)] == ["a", "b", "c", "d"]
    page = {**API_CALL, "type": "page", "name": "Home"}
    assert [e.code for e in spec.map(page)] == ["a", "d"]
