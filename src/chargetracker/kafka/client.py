"""librdkafka client configuration and topic administration, from :class:`KafkaConfig`.

Broker settings stay generic so the same code talks to the Tansu test broker and to a
production Kafka cluster: ``bootstrap.servers`` comes from ``KafkaConfig.brokers`` and
every ``KafkaConfig.extra`` pair (``security.protocol``, ``sasl.*``, ``ssl.*``, tuning
such as ``session.timeout.ms``) is passed to librdkafka verbatim, winning over our
defaults.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from ..config import KafkaConfig
from ..errors import ConfigError, SourceError, SourceUnavailable

log = logging.getLogger("chargetracker.kafka.worker")

__all__ = [
    "client_config",
    "parse_extra",
    "admin",
    "ensure_topic",
    "partition_count",
    "topic_partitions",
    "wait_for_topic",
    "worker_consumer_config",
]

#: Settings only producers or only consumers understand; librdkafka warns about the
#: others, so the shared ``extra`` is split by these prefixes where it matters.
_PRODUCER_ONLY = ("acks", "linger.ms", "batch.", "compression.", "queue.buffering.",
                  "message.send.max.retries", "retries", "enable.idempotence", "partitioner",
                  "delivery.timeout.ms", "request.required.acks", "transactional.id")
_CONSUMER_ONLY = ("group.", "session.timeout.ms", "heartbeat.interval.ms", "auto.offset.reset",
                  "enable.auto.commit", "enable.partition.eof", "fetch.", "max.poll.interval.ms",
                  "partition.assignment.strategy", "isolation.level", "max.partition.fetch.bytes",
                  "queued.", "auto.commit.interval.ms", "enable.auto.offset.store")


def parse_extra(pairs: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``["security.protocol=SASL_SSL", ...]`` (the CLI's ``-X``) -> ``KafkaConfig.extra``."""
    out = []
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"librdkafka setting {item!r}: expected key=value")
        out.append((key.strip(), value))
    return tuple(out)


def client_config(cfg: KafkaConfig, role: str = "common", **defaults: Any) -> dict[str, Any]:
    """librdkafka configuration for ``role`` ("producer", "consumer", "admin", "common").

    ``defaults`` are ChargeTracker's choices for the role; ``cfg.extra`` overrides them.
    """
    conf: dict[str, Any] = {"bootstrap.servers": cfg.brokers}
    conf.update(defaults)
    for key, value in cfg.extra:
        if role in ("admin", "producer") and key.startswith(_CONSUMER_ONLY):
            continue
        if role in ("admin", "consumer") and key.startswith(_PRODUCER_ONLY):
            continue
        conf[key] = value
    return conf


def worker_consumer_config(cfg: KafkaConfig) -> dict[str, Any]:
    """The scale-out worker's consumer: manual offsets (the store's checkpoint is the
    truth), partition EOF events, bounded fetch buffers."""
    return client_config(cfg, "consumer", **{
        "group.id": cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        # Kafka answers a waiting fetch as soon as data arrives; brokers that do not
        # (Tansu) hold it this long, which then bounds the latency.
        "fetch.wait.max.ms": 100,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
    })


def admin(cfg: KafkaConfig) -> AdminClient:
    try:
        return AdminClient(client_config(cfg, "admin"))
    except KafkaException as exc:
        raise ConfigError(f"Kafka admin client: {exc}") from exc


def partition_count(cfg: KafkaConfig, topic: str | None = None, *, timeout_s: float = 10.0) -> int:
    """Number of partitions of ``topic`` (default ``cfg.topic``).

    Raises :class:`SourceUnavailable` when the brokers cannot be reached and
    :class:`SourceError` when the topic does not exist.
    """
    topic = topic or cfg.topic
    client = admin(cfg)
    try:
        # All topics, not list_topics(topic=...): asking for one topic by name makes
        # brokers with auto.create.topics.enable create it with default settings.
        md = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise SourceUnavailable(f"Kafka brokers {cfg.brokers!r} unreachable: {exc}") from exc
    tmd = md.topics.get(topic)
    if tmd is None or tmd.error is not None and tmd.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise SourceError(f"Kafka topic {topic!r} does not exist on {cfg.brokers!r}")
    if tmd.error is not None:
        raise SourceError(f"Kafka topic {topic!r}: {tmd.error}")
    if not tmd.partitions:
        raise SourceError(f"Kafka topic {topic!r} has no partitions")
    return len(tmd.partitions)


def ensure_topic(cfg: KafkaConfig, topic: str | None = None, *, partitions: int = 8,
                 replication_factor: int = 1, timeout_s: float = 15.0,
                 config: dict[str, str] | None = None) -> int:
    """Create ``topic`` with ``partitions`` unless it exists; returns its partition count.

    An existing topic keeps its partition count (changing it would move cells to other
    partitions and split their state, see docs/deployment.md).
    """
    topic = topic or cfg.topic
    client = admin(cfg)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                  config=dict(config or {}))],
        operation_timeout=timeout_s, request_timeout=timeout_s,
    )
    try:
        futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise SourceUnavailable(f"cannot create Kafka topic {topic!r}: {exc}") from exc
    return wait_for_topic(cfg, topic, timeout_s=timeout_s)


def wait_for_topic(cfg: KafkaConfig, topic: str | None = None, *, timeout_s: float = 15.0) -> int:
    """Wait until the topic's metadata is visible; returns its partition count."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return partition_count(cfg, topic, timeout_s=max(1.0, deadline - time.monotonic()))
        except SourceError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def topic_partitions(kafka: KafkaConfig, create_partitions: int | None,
                     replication_factor: int, *, kind: str) -> int:
    """The partitions of a worker's topic; creates the topic when ``create_partitions``
    is given, else a missing topic is an error saying how to create it."""
    if create_partitions is not None:
        n = ensure_topic(kafka, partitions=create_partitions, replication_factor=replication_factor)
        log.info("topic %s: %d partitions", kafka.topic, n)
        return n
    try:
        return partition_count(kafka)
    except SourceError as exc:
        if "does not exist" not in str(exc):
            raise
        raise SourceError(
            f"{exc}. Create it first: `chargetracker topics create --broker "
            f"{kafka.brokers} --kind {kind} --topic {kafka.topic} "
            "--partitions N` (N: the most workers you will run; it cannot shrink), or "
            "start the worker with --create-topic N (development)") from None
