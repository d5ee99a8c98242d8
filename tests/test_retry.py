"""The one retry vocabulary (stamina's): the clients' RetryPolicy, the handlers' HandlerRetry."""

from __future__ import annotations

import pytest

from lago_segment.client import RetryPolicy
from lago_segment.errors import ConfigurationError
from lago_segment.forwarder import HandlerRetry


@pytest.mark.parametrize("schedule", [RetryPolicy, HandlerRetry])
@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("attempts", 0),
        ("attempts", None),
        ("attempts", "3"),
        ("timeout", -1),
        ("timeout", True),
        ("wait_initial", -0.1),
        ("wait_initial", None),
        ("wait_max", "5"),
        ("wait_jitter", -1),
        ("wait_exp_base", 0.5),
        ("wait_exp_base", "2"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(
    schedule: type[RetryPolicy | HandlerRetry], field: str, bad: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        schedule(**{field: bad})  # type: ignore[arg-type]
    assert caught.value.option == field
