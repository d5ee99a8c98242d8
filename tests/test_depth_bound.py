"""A mapping given to forward() is not walked for depth when parsed: what guards the rest.

Nothing downstream (mapping, ``to_dict``, the request body, the spool) may end
in a ``RecursionError``; a too-deep value a rule uses is a mapping error, and a
too-deep value no rule uses does not stop the event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support_forwarder import FakeSender

from lago_segment.errors import InvalidEventPayload, MappingError
from lago_segment.events import parse_event
from lago_segment.forwarder import Forwarder, ForwardingFailure
from lago_segment.mapping import MappingSpec

# Deeper than Python's recursion limit, and just past MAX_DEPTH.
DEPTHS = [70, 5_000]


def deep(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"k": value} if kind == "object" else [value]
    return value


def message(depth: int, kind: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "API Call",
        "messageId": "m1",
        "userId": "u1",
        "timestamp": "2024-01-01T00:00:00Z",
        "properties": {"calls": 3, "deep": deep(depth, kind)},
        "context": {"deep": deep(depth, kind)},
    }


def spec(value: Any) -> MappingSpec:
    return MappingSpec.from_dict(
        {
            "rules": [
                {
                    "name": "calls",
                    "when": 'type = "track"',
                    "code": "api_calls",
                    "external_subscription_id": {"@path": "$.userId"},
                    "properties": {"v": value},
                }
            ]
        }
    )


USES_THE_DEEP_VALUE = {
    "path": {"@path": "$.properties.deep"},
    "json-encode": {"@json": {"mode": "encode", "value": {"@path": "$.properties.deep"}}},
    "template": {"@template": "{{properties.deep}}"},
    "string": {"@string": {"@path": "$.properties.deep"}},
    "number": {"@number": {"@path": "$.properties.deep"}},
    "replace": {
        "@replace": {"value": {"@path": "$.properties.deep"}, "pattern": "a", "replacement": "b"}
    },
}


@pytest.mark.parametrize("kind", ["object", "array"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_to_dict_of_a_too_deep_mapping_raises_invalid_event_payload(depth: int, kind: str) -> None:
    event = parse_event(message(depth, kind))
    with pytest.raises(InvalidEventPayload, match="nests deeper than 64 levels"):
        event.to_dict()


@pytest.mark.parametrize("kind", ["object", "array"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_a_too_deep_value_no_rule_uses_is_delivered(depth: int, kind: str, tmp_path: Path) -> None:
    sender = FakeSender()
    failures: list[ForwardingFailure] = []
    forwarder = Forwarder(
        sender,
        spec=spec({"@path": "$.properties.calls"}),
        on_error=failures.append,
        spool=tmp_path / "spool.db",
        flush_at_exit=False,
    )
    forwarder.forward(message(depth, kind))
    assert forwarder.close(timeout=None)
    assert failures == []
    assert sender.stored == ["m1"]
    assert [e.properties for e in sender.batches[0]] == [{"v": 3}]


@pytest.mark.parametrize("rule", sorted(USES_THE_DEEP_VALUE))
@pytest.mark.parametrize("kind", ["object", "array"])
def test_a_too_deep_value_a_rule_uses_is_a_mapping_error(kind: str, rule: str) -> None:
    # 5,000 levels: deeper than json.dumps, repr() or Python's stack go.
    mapper = spec(USES_THE_DEEP_VALUE[rule])
    event = message(5_000, kind)
    with pytest.raises(MappingError, match=r'rule "calls": properties\.v'):
        mapper.map(event)
    assert "properties.v" in str(mapper.explain(event))

    sender = FakeSender()
    failures: list[ForwardingFailure] = []
    forwarder = Forwarder(
        sender,
        spec=mapper,
        on_error=failures.append,
        mapping_errors="report",
        flush_at_exit=False,
    )
    forwarder.forward(event)
    assert forwarder.close(timeout=None)
    assert [(f.stage, type(f.error)) for f in failures] == [("mapping", MappingError)]
    assert sender.batches == []
