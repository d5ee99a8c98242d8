"""The public names of lago_segment.testing, each written once (see lago_segment/_lazy.py)."""

from ._factory import (
    SegmentEventFactory as SegmentEventFactory,
    segment_event as segment_event,
)
from lago_segment._retry import (
    is_testing as is_testing,
    set_testing as set_testing,
)
from ._fake_lago import (
    FakeLago as FakeLago,
    Fault as Fault,
)
from ._fixture import (
    FakeLagoFixture as FakeLagoFixture,
)
