"""The public names of lago_segment.kafka, each written once (see lago_segment/_lazy.py)."""

from ._consumer import (
    SegmentConsumer as SegmentConsumer,
)
from ._offsets import (
    OffsetTracker as OffsetTracker,
    Ticket as Ticket,
)
from ._sink import (
    KafkaDeliveryError as KafkaDeliveryError,
    RawEventsSink as RawEventsSink,
    raw_event_message as raw_event_message,
)
from ._stats import (
    ConsumerStats as ConsumerStats,
)
