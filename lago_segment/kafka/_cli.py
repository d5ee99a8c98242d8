"""``lago-segment consume``: run one consumer-group member until SIGTERM or Ctrl-C.

Registered by :mod:`lago_segment.cli`; confluent-kafka and the consumer are
imported only when the command runs, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from lago_segment.cli._parser import _add_api_url

if TYPE_CHECKING:
    from ._stats import ConsumerStats

__all__ = ["add_consume_parser", "parse_setting"]

_EPILOG = """\
Delivery: offsets are committed only for messages whose Lago events are all
settled (stored, already stored, dead-lettered, or skipped). SIGTERM or Ctrl-C
settles what is in flight (at most --shutdown-timeout seconds), commits, exits 0.
A group with no committed offset starts at the earliest message; pass
-X auto.offset.reset=latest to start at the end instead.

exit codes: 0 stopped cleanly, 1 the consumer failed (e.g. the dead-letter topic
refused a message), 2 usage errors.

examples:
  export LAGO_API_KEY=...   # the key never goes on the command line
  lago-segment consume lago-mapping.toml --bootstrap-servers kafka:9092 \\
      --topic segment-events --group lago-billing
  lago-segment consume lago-mapping.toml --bootstrap-servers kafka:9093 \\
      --topic segment-events --group lago-billing \\
      -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \\
      -X sasl.username=billing -X sasl.password="$KAFKA_PASSWORD"
  # produce to a self-hosted Lago's raw-events topic instead of its REST API:
  lago-segment consume lago-mapping.toml --bootstrap-servers kafka:9092 \\
      --topic segment-events --group lago-billing \\
      --raw-events-topic events_raw --organization-id "$LAGO_ORG_ID"
"""


def parse_setting(text: str) -> tuple[str, str]:
    """One ``-X key=value`` librdkafka setting (as kcat takes them)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    return key.strip(), value


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return convert


def _add_number(
    parser: Any, flag: str, kind: type[float] | type[int], default: float, what: str
) -> None:
    # A positive number of seconds (float) or a positive count (int), with its default shown.
    parser.add_argument(
        flag,
        type=_positive(kind),
        metavar="SECONDS" if kind is float else "N",
        default=default,
        help=f"{what} (default: %(default)s)",
    )


def add_consume_parser(
    commands: Any, wrap: Callable[[str], str], formatter: type[argparse.HelpFormatter]
) -> None:
    """Add the ``consume`` subcommand to the ``lago-segment`` parser."""
    consume = commands.add_parser(
        "consume",
        help="consume Segment events from Kafka (a consumer group) and deliver them to Lago",
        description=wrap(
            "Join a Kafka consumer group, read Segment events (JSON, one per message) from "
            "the topics, map them with SPEC and deliver them to Lago's REST API (key from "
            "LAGO_API_KEY) or, with --raw-events-topic, to a self-hosted Lago's raw-events "
            "topic. Run more processes with the same --group to share the partitions. "
            "Malformed messages go to the --dead-letter-topic with the reason in headers. "
            "A status line goes to stderr every --status-interval seconds."
        ),
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    consume.add_argument("spec", metavar="SPEC", help="the mapping spec (.toml or .json)")
    consume.add_argument(
        "--bootstrap-servers", metavar="HOSTS", help="Kafka brokers, host:port[,host:port]"
    )
    consume.add_argument(
        "--topic",
        dest="topics",
        action="append",
        required=True,
        metavar="TOPIC",
        help="a topic of Segment events (repeat for several)",
    )
    consume.add_argument("--group", required=True, metavar="GROUP", help="consumer group id")
    consume.add_argument(
        "-X",
        dest="settings",
        action="append",
        type=parse_setting,
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting for the consumer and the dead-letter producer "
        "(security.protocol, sasl.*, session.timeout.ms, auto.offset.reset, ...)",
    )
    consume.add_argument(
        "--dead-letter-topic",
        metavar="TOPIC",
        default="lago-segment-dead-letter",
        help="where malformed messages and events Lago rejects go (default: %(default)s)",
    )
    _add_api_url(consume, "Lago's origin (default: $LAGO_API_URL, else %(default)s)")
    _add_number(consume, "--timeout", float, 10.0, "seconds per HTTP request")
    sink = consume.add_argument_group(
        "Lago's raw-events topic (self-hosted Lago; instead of the REST API)"
    )
    sink.add_argument(
        "--raw-events-topic",
        metavar="TOPIC",
        help="produce Lago events to this topic (lago-api's LAGO_KAFKA_RAW_EVENTS_TOPIC)",
    )
    sink.add_argument("--organization-id", metavar="ID", help="the Lago organization's id")
    sink.add_argument(
        "--sink-bootstrap-servers",
        metavar="HOSTS",
        help="brokers of Lago's Kafka (default: --bootstrap-servers)",
    )
    sink.add_argument(
        "--sink-X",
        dest="sink_settings",
        action="append",
        type=parse_setting,
        default=None,
        metavar="KEY=VALUE",
        help="a librdkafka setting for the raw-events producer (default: the -X settings)",
    )
    tuning = consume.add_argument_group("tuning")
    _add_number(tuning, "--status-interval", float, 10.0, "seconds between status lines")
    _add_number(tuning, "--batch-size", int, 100, "Lago events per request, at most 100")
    _add_number(
        tuning, "--max-unsettled", int, 5000, "pause consumption while N messages are unsettled"
    )
    _add_number(tuning, "--commit-interval", float, 1.0, "seconds between offset commits")
    _add_number(
        tuning,
        "--shutdown-timeout",
        float,
        30.0,
        "on SIGTERM, how long to wait for in-flight events",
    )
    consume.set_defaults(run=run_consume)


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run_consume(args: argparse.Namespace) -> int:
    """Run ``lago-segment consume``; returns the exit code."""
    from lago_segment.cli._commands import load_spec
    from lago_segment.cli._conventions import EXIT_FAILED, EXIT_OK, UsageError
    from lago_segment.errors import LagoSegmentError

    if args.batch_size > 100:
        raise UsageError(f"Lago takes at most 100 events per batch, not {args.batch_size}")
    config: dict[str, Any] = dict(args.settings)
    if args.bootstrap_servers:
        config["bootstrap.servers"] = args.bootstrap_servers
    if "bootstrap.servers" not in config:
        raise UsageError("give --bootstrap-servers (or -X bootstrap.servers=...)")
    spec = load_spec(args.spec)
    if spec is None:
        return EXIT_FAILED
    try:
        client = _client(args, config)
        from ._consumer import SegmentConsumer

        consumer = SegmentConsumer(
            client,
            spec=spec,
            topics=args.topics,
            group=args.group,
            config=config,
            dead_letter_topic=args.dead_letter_topic,
            batch_size=args.batch_size,
            max_unsettled=args.max_unsettled,
            commit_interval=args.commit_interval,
            shutdown_timeout=args.shutdown_timeout,
        )
    except LagoSegmentError as exc:
        raise UsageError(str(exc)) from None

    def stop(signum: int, _frame: FrameType | None) -> None:
        _say(f"{signal.Signals(signum).name}: settling, committing, stopping")
        consumer.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    _say(f"consuming {', '.join(args.topics)} as group {args.group}")

    def status(stats: ConsumerStats) -> None:
        _say(stats.line())

    try:
        consumer.run(status=status, status_interval=args.status_interval)
    except LagoSegmentError as exc:
        _say(f"error: {exc}")
        return EXIT_FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say("stopped")
    return EXIT_OK


def _client(args: argparse.Namespace, config: dict[str, Any]) -> Any:
    from lago_segment.cli._conventions import UsageError

    if args.raw_events_topic is None:
        if args.organization_id is not None:
            raise UsageError("--organization-id goes with --raw-events-topic")
        api_key = os.environ.get("LAGO_API_KEY", "")
        if not api_key:
            raise UsageError("set the LAGO_API_KEY environment variable to your Lago API key")
        from lago_segment.client import LagoClient

        return LagoClient(api_key, api_url=args.api_url, timeout=args.timeout)
    if not args.organization_id:
        raise UsageError("--raw-events-topic needs --organization-id")
    from ._dead_letters import producer_settings
    from ._sink import RawEventsSink

    sink_config = (
        dict(args.sink_settings) if args.sink_settings is not None else producer_settings(config)
    )
    if args.sink_bootstrap_servers:
        sink_config["bootstrap.servers"] = args.sink_bootstrap_servers
    sink_config.setdefault("bootstrap.servers", config["bootstrap.servers"])
    return RawEventsSink(
        sink_config, topic=args.raw_events_topic, organization_id=args.organization_id
    )
