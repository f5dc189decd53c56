"""``chargetracker topics``: create and inspect the Kafka topics of the scale-out path.

Workers never create production topics on their own (``chargetracker worker`` refuses a
missing topic with this command as the hint; ``--create-topic N`` is for development).
Create each kind's topic once, with as many partitions as the most workers you will run
(a partition is the unit of parallelism; the count cannot shrink, and growing it moves
cells to other partitions, see docs/deployment.md):

    chargetracker topics create --broker kafka1:9092 --kind cell --partitions 12 \\
        --replication 3 --config retention.ms=604800000
    chargetracker topics describe --broker kafka1:9092 --kind cell

``--topic`` defaults to the kind's default topic (cells: ``measurements``).
``--dead-letter-topic NAME`` also creates the dead-letter topic (1 partition per 4 of
the measurements topic is plenty). Security settings go through ``-X key=value``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..config import KafkaConfig
from ..errors import ConfigError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "topics", help="create / describe the Kafka topics of the scale-out path",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["create", "describe"])
    p.add_argument("--broker", "--brokers", dest="broker", default="127.0.0.1:9092",
                   metavar="HOST:PORT[,HOST:PORT]", help="Kafka bootstrap servers")
    p.add_argument("--kind", default="cell", help="telemetry kind (its default topic; default cell)")
    p.add_argument("--topic", help="topic name (default: the kind's default topic)")
    p.add_argument("--partitions", type=int, default=8, help="partitions (create; default 8)")
    p.add_argument("--replication", type=int, default=1,
                   help="replication factor (create; default 1, production clusters: 3)")
    p.add_argument("--config", dest="topic_config", action="append", default=[],
                   metavar="KEY=VALUE", help="topic setting, repeatable (retention.ms, ...)")
    p.add_argument("--dead-letter-topic", dest="dead_letter_topic", metavar="TOPIC",
                   help="also create this dead-letter topic")
    p.add_argument("-X", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="librdkafka setting, repeatable (security.protocol, sasl.*, ssl.*)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..kafka.client import ensure_topic, parse_extra, partition_count
    from ..kafka.kinds import kafka_kind

    plugin = kafka_kind(args.kind)
    topic = args.topic or plugin.default_topic
    cfg = KafkaConfig(brokers=args.broker, topic=topic, extra=parse_extra(args.extra))
    if args.action == "describe":
        n = partition_count(cfg)
        print(json.dumps({"topic": topic, "kind": plugin.name, "partitions": n}))
        return 0
    if args.partitions < 1 or args.replication < 1:
        raise ConfigError("--partitions and --replication must be >= 1")
    settings = dict(parse_extra(args.topic_config))
    topics = [(topic, args.partitions)]
    if args.dead_letter_topic:
        topics.append((args.dead_letter_topic, max(1, args.partitions // 4)))
    for name, wanted in topics:
        n = ensure_topic(cfg, name, partitions=wanted, replication_factor=args.replication,
                         config=settings)
        if n != wanted:
            print(f"chargetracker topics: {name} exists with {n} partitions (left as is: "
                  "changing the count moves cells between partitions)", file=sys.stderr)
        print(json.dumps({"topic": name, "kind": plugin.name, "partitions": n}))
    return 0
