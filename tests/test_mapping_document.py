"""The spec as a typed document: built in Python, written out, read back equal; cattrs lazily."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lago_segment import MappingError
from lago_segment.errors import SpecError
from lago_segment.mapping import MappingDocument, MappingSpec, RuleDocument

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "lago-mapping.toml"

API_CALL = {
    "type": "track",
    "event": "API Call",
    "userId": "u-1",
    "messageId": "m-1",
    "timestamp": "2024-05-01T12:00:00Z",
    "context": {"groupId": "ws-1"},
    "properties": {"endpoint": "/v1/Users"},
}


def api_rule(**changes: Any) -> RuleDocument:
    rule = RuleDocument(
        name="api",
        when='type = "track" and event = "API Call"',
        code="api_calls",
        external_subscription_id={"@path": "$.context.groupId"},
        properties={"endpoint": {"@path": "$.properties.endpoint"}},
    )
    return attrs.evolve(rule, **changes)


def test_a_spec_built_in_python_maps_like_a_loaded_one() -> None:
    built = MappingSpec.from_document(MappingDocument(rules=[api_rule()]))
    loaded = MappingSpec.from_dict(
        {
            "rules": [
                {
                    "name": "api",
                    "when": 'type = "track" and event = "API Call"',
                    "code": "api_calls",
                    "external_subscription_id": {"@path": "$.context.groupId"},
                    "properties": {"endpoint": {"@path": "$.properties.endpoint"}},
                }
            ]
        }
    )
    assert built == loaded
    assert [e.to_dict() for e in built.map(API_CALL)] == [
        e.to_dict() for e in loaded.map(API_CALL)
    ]
    assert built.document.rules[0].name == "api"


def test_a_built_spec_is_checked_like_a_loaded_one() -> None:
    document = MappingDocument(rules=[api_rule(when="tpye = 1"), api_rule(name="bad name")])
    with pytest.raises(SpecError) as info:
        MappingSpec.from_document(document)
    assert info.value.errors[0].startswith('rules[0].when (rule "api"): column 1: unknown field')
    assert info.value.errors[1].startswith("rules[1].name: must be 1-64 characters")


def test_to_dict_is_the_normalized_document() -> None:
    spec = MappingSpec.from_dict(
        {
            "rules": [
                {
                    **MappingSpec.from_document(MappingDocument(rules=[api_rule()])).to_dict()[
                        "rules"
                    ][0],
                    "description": None,
                }
            ]
        }
    )
    assert spec.to_dict() == {
        "version": 1,
        "rules": [
            {
                "name": "api",
                "when": 'type = "track" and event = "API Call"',
                "code": "api_calls",
                "external_subscription_id": {"@path": "$.context.groupId"},
                "properties": {"endpoint": {"@path": "$.properties.endpoint"}},
            }
        ],
    }


def test_a_string_field_refuses_an_object_instead_of_writing_it_as_text() -> None:
    # cattrs' default str hook would structure {"a": 1} as "{'a': 1}".
    with pytest.raises(SpecError) as info:
        MappingSpec.from_dict({"rules": [{**attrs.asdict(api_rule()), "description": {"a": 1}}]})
    assert info.value.errors == ['rules[0].description (rule "api"): must be a string']


def test_the_example_spec_round_trips_through_toml_and_json() -> None:
    spec = MappingSpec.load(EXAMPLE)
    assert MappingSpec.from_toml(spec.to_toml()) == spec
    assert MappingSpec.from_json(spec.to_json()) == spec
    assert MappingSpec.from_dict(spec.to_dict()) == spec


def test_toml_cannot_write_a_null_and_says_so() -> None:
    spec = MappingSpec.from_document(
        MappingDocument(
            rules=[api_rule(properties={"x": {"@default": {"value": None, "fallback": 1}}})]
        )
    )
    with pytest.raises(
        SpecError, match=r"rules\[0\]\.properties\.x\.@default\.value: null cannot"
    ):
        spec.to_toml()
    assert MappingSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_check_format_prints_a_spec_that_loads_back_equal(tmp_path: Path, fmt: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lago_segment", "check", str(EXAMPLE), "--format", fmt],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = tmp_path / f"normalized.{fmt}"
    written.write_text(result.stdout, encoding="utf-8")
    assert MappingSpec.load(written) == MappingSpec.load(EXAMPLE)


def test_errors_in_a_toml_file_give_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(
        textwrap.dedent(
            """\
            version = 1

            [[rules]]
            name = "api"
            when = 'type = "track"'
            code = "c"
            external_subscription_id = { "@path" = "$.userId" }

            [[rules]]
            name = "storage"
            when = 'type = "identify"'
            code = "c"
            external_subscription_id = { "@path" = "$.userId" }
            colour = 1

            [rules.properties]
            bytes = { "@intger" = { "@path" = "$.traits.bytes" } }
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as info:
        MappingSpec.load(path)
    assert info.value.errors == [
        f'{path}:14:1: rules[1].colour (rule "storage"): unknown key',
        f'{path}:17:1: rules[1].properties.bytes (rule "storage"): unknown directive '
        '"@intger" (did you mean "@integer"?)',
    ]


def test_errors_in_a_json_file_give_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    text = json.dumps(
        {"rules": [{**MappingSpec.load(EXAMPLE).to_dict()["rules"][0], "when": 'type = "x" and'}]},
        indent=2,
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        MappingSpec.load(path)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if '"when"' in t)
    column = text.splitlines()[line - 1].index('"type') + 1
    assert info.value.errors[0].startswith(
        f'{path}:{line}:{column}: rules[0].when (rule "track-events"): column 15:'
    )


# --- round trip, property-based ------------------------------------------------------

_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)
_text = st.text(max_size=12)
_keys = _text.filter(lambda k: k.strip() != "" and not k.startswith("@"))
_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_literals = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)
_values = (
    _literals
    | _text.map(lambda t: {"@template": t.replace("{", "").replace("}", "")})
    | st.sampled_from(["$.userId", "$.properties.x", '$.properties["a.b"]']).map(
        lambda p: {"@path": p}
    )
)
_triggers = st.sampled_from(
    [
        'type = "track"',
        'type = "identify" and traits.plan = "pro"',
        "properties.price >= 10.5",
        '(event = "a" or event = "b") and !contains(event, "x")',
        'match(event, "API*")',
        "properties.value != 5",
        "userId != null",
    ]
)


@st.composite
def _documents(draw: st.DrawFn) -> MappingDocument:
    names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    rules = [
        RuleDocument(
            name=name,
            when=draw(_triggers),
            code=draw(_text | st.just({"@path": "$.event"})),
            external_subscription_id=draw(_values),
            description=draw(st.none() | _text),
            transaction_id=draw(st.none() | _values),
            properties=draw(st.none() | st.dictionaries(_keys, _values, max_size=4)),
        )
        for name in names
    ]
    return MappingDocument(rules=rules)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_any_spec_round_trips_through_toml_json_and_dict(document: MappingDocument) -> None:
    spec = MappingSpec.from_document(document)
    assert spec.document == document
    assert MappingSpec.from_toml(spec.to_toml()) == spec
    assert MappingSpec.from_json(spec.to_json()) == spec
    assert MappingSpec.from_dict(spec.to_dict()) == spec


# --- cattrs only when a spec is loaded ------------------------------------------------

_NO_CATTRS = """
import sys
import lago_segment
import lago_segment.testing._pytest_plugin
from lago_segment import LagoEvent, parse_event
from lago_segment.client import BatchResult
from lago_segment.forwarder import Forwarder

class Client:
    def send_batch(self, events):
        return BatchResult(delivered=tuple(events))

class OneRule:
    def map(self, event):
        return [LagoEvent(event.message_id, "sub", "c", 1714564860)]

with Forwarder(Client(), spec=OneRule(), flush_at_exit=False) as forwarder:
    event = {"type": "track", "event": "e", "userId": "u", "messageId": "m"}
    forwarder.forward(parse_event(event))
    forwarder.flush()
assert "cattrs" not in sys.modules, "cattrs imported without a spec"
from lago_segment.mapping import MappingSpec
assert "cattrs" not in sys.modules, "importing the mapping package imported cattrs"
MappingSpec.from_dict({"rules": [{"name": "r", "when": 'type = "track"', "code": "c",
                                  "external_subscription_id": "s"}]})
assert "cattrs" in sys.modules
print("ok")
"""


def test_cattrs_is_imported_only_when_a_spec_is_loaded() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_CATTRS],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        timeout=60,
        check=False,
    )
    assert result.stdout == "ok\n", result.stderr
