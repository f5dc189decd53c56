"""Produce measurements to the Kafka topic: keyed by cell, JSON per sample or Arrow batches.

::

    from chargetracker.kafka import KafkaSink
    with KafkaSink.from_url("kafka://127.0.0.1:9092/measurements?format=arrow") as sink:
        sink.send_cells(fleet.cells)          # metadata first: it travels with the samples
        for frame in fleet.chunks(seconds=3600):
            sink.send(frame)
        sink.end_of_stream()                  # a finite stream: workers flush at the marker

Every row goes to the partition Kafka's default (Java, murmur2) partitioner picks for
its ``cell_id`` -- computed here and produced with an explicit partition -- so keyed
single messages, Arrow batches and messages from other clients (Java default
partitioner, librdkafka ``murmur2_random``) of one cell all land in one partition, in
produce order. An Arrow batch is split per partition (rows keep their order) and into
messages of at most ``max_rows_per_message`` rows.

The producer is idempotent (``enable.idempotence=true``) so retries can neither reorder
nor duplicate a partition's messages; LZ4 batch compression is on by default.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import polars as pl
from confluent_kafka import KafkaException, Producer

from ..config import KafkaConfig
from ..errors import ConfigError, SourceError, SourceUnavailable
from ..schema import conform
from . import cell_codec, codec
from .client import client_config, ensure_topic, partition_count
from .partitioner import Partitioner

__all__ = ["DeadLetterPublisher", "KafkaSink", "parse_kafka_url"]

log = logging.getLogger("chargetracker.kafka.worker")

_JSON_HEADERS: list[tuple[str, str | bytes | None]] = [(codec.FORMAT_HEADER, b"json")]
_ARROW_HEADERS: list[tuple[str, str | bytes | None]] = [(codec.FORMAT_HEADER, b"arrow")]
_CELL_HEADERS: list[tuple[str, str | bytes | None]] = [(codec.FORMAT_HEADER, b"json"), (codec.TYPE_HEADER, codec.CELL.encode())]
_EOS_HEADERS: list[tuple[str, str | bytes | None]] = [(codec.TYPE_HEADER, codec.END_OF_STREAM.encode())]

_URL_KEYS = {"format", "partitions", "rows_per_message", "compression", "group_id",
             "dead_letter_topic", "key"}
#: What a cell's messages are routed by: its own id, or its pack (``worker --pack-feed``).
KEYS = ("cell", "pack")


def parse_kafka_url(url: str, *, extra: Iterable[tuple[str, str]] = ()) -> tuple[KafkaConfig, dict[str, str]]:
    """``kafka://host:port[,host:port]/topic?format=arrow&partitions=8`` -> (config, options).

    Query keys: ``format`` (json|arrow), ``partitions`` (create the topic with this many
    when absent), ``rows_per_message``, ``compression`` (lz4, zstd, gzip, snappy, none),
    ``key`` (cell|pack), ``group_id``, ``dead_letter_topic``. Other librdkafka settings (security.protocol,
    sasl.*, ssl.*) go in ``extra`` (the CLI's ``-X key=value``), never in the URL, so
    credentials do not end up in process listings.
    """
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"not a Kafka URL {url!r}: expected kafka://host:port/topic")
    brokers = unquote(parts.netloc)
    topic = unquote(parts.path.lstrip("/"))
    if not brokers or not topic or "/" in topic:
        raise ConfigError(f"Kafka URL {url!r}: expected kafka://host:port[,host:port]/topic")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _URL_KEYS)
    if unknown:
        raise ConfigError(f"Kafka URL: unknown parameter(s) {unknown}; known: {sorted(_URL_KEYS)}")
    kw: dict[str, Any] = {"brokers": brokers, "topic": topic, "extra": tuple(extra)}
    if "group_id" in options:
        kw["group_id"] = options.pop("group_id")
    if "dead_letter_topic" in options:
        kw["dead_letter_topic"] = options.pop("dead_letter_topic")
    return KafkaConfig(**kw), options


class KafkaSink:
    """Writes canonical measurement frames, cell metadata and end-of-stream markers.

    Parameters
    ----------
    config:
        Brokers, topic and librdkafka passthrough settings (``extra``).
    format:
        ``"arrow"`` (batches, for throughput) or ``"json"`` (one message per sample).
    create_partitions:
        Create the topic with this many partitions when it does not exist (None: it
        must exist).
    max_rows_per_message:
        Arrow rows per message (keeps messages under the 1 MB default message size).
    key:
        ``"cell"`` (default): a cell's messages go to the partition of its id.
        ``"pack"``: to the partition of its pack (the ``pack_id`` / ``vin`` of the cell
        metadata sent with :meth:`send_cells`, which must come first), so every cell of a
        pack reaches the same worker, as ``worker --pack-feed`` requires; cells without a
        pack stay on their own id's partition.
    """

    def __init__(self, config: KafkaConfig, *, format: str = "arrow",
                 create_partitions: int | None = None, max_rows_per_message: int = 8192,
                 compression: str = "lz4", arrow_compression: str | None = None,
                 key: str = "cell") -> None:
        if key not in KEYS:
            raise ConfigError(f"Kafka sink key {key!r}: one of {list(KEYS)}")
        self.key = key
        #: cell id -> pack id, learned from :meth:`send_cells` (``key="pack"``).
        self._packs: dict[str, str] = {}
        if format not in codec.FORMATS:
            raise ConfigError(f"Kafka sink format {format!r}: one of {list(codec.FORMATS)}")
        if max_rows_per_message < 1:
            raise ConfigError("max_rows_per_message must be >= 1")
        self.config = config
        self.topic = config.topic
        self.format = format
        self.max_rows_per_message = int(max_rows_per_message)
        self.arrow_compression = arrow_compression
        if create_partitions is not None:
            n = ensure_topic(config, partitions=int(create_partitions))
        else:
            n = partition_count(config)
        self.partitions = n
        self.partitioner = Partitioner(n)
        conf = client_config(config, "producer", **{
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": compression,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "batch.size": 1_000_000,
        })
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            raise ConfigError(f"Kafka producer: {exc}") from exc
        self._errors: list[str] = []
        #: Highest delivered offset per partition (from delivery reports).
        self.delivered: dict[int, int] = {}
        self.sent_rows = 0
        self.sent_messages = 0

    @classmethod
    def from_url(cls, url: str, *, extra: Iterable[tuple[str, str]] = (), **kw: Any) -> KafkaSink:
        """A sink from ``kafka://host:port/topic?format=...&partitions=...`` (see
        :func:`parse_kafka_url`); keyword arguments win over URL parameters."""
        cfg, opts = parse_kafka_url(url, extra=extra)
        args: dict[str, Any] = {}
        if "format" in opts:
            args["format"] = opts["format"]
        if "partitions" in opts:
            args["create_partitions"] = _positive_int("partitions", opts["partitions"])
        if "rows_per_message" in opts:
            args["max_rows_per_message"] = _positive_int("rows_per_message", opts["rows_per_message"])
        if "compression" in opts:
            args["compression"] = opts["compression"]
        if "key" in opts:
            args["key"] = opts["key"]
        args.update(kw)
        return cls(cfg, **args)

    # -- producing --------------------------------------------------------------------
    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            if len(self._errors) < 100:
                self._errors.append(f"partition {msg.partition()}: {err}")
            return
        p, off = msg.partition(), msg.offset()
        if off is not None and off > self.delivered.get(p, -1):
            self.delivered[p] = off

    def _produce(self, value: bytes | None, partition: int, key: bytes | None,
                 headers: list[tuple[str, str | bytes | None]]) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, partition=partition,
                                       headers=headers, on_delivery=self._on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room (back-pressure).
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise SourceError(f"producing to Kafka topic {self.topic!r}: {exc}") from exc

    def send(self, frame: pl.DataFrame, *, format: str | None = None) -> int:
        """Produce the rows of a canonical measurement frame; returns the rows sent.

        Rows of one cell keep their order. Rows without a cell id go to partition 0,
        where the worker rejects them as dead letters (nothing is dropped silently).
        """
        fmt = format or self.format
        if fmt not in codec.FORMATS:
            raise ConfigError(f"format {fmt!r}: one of {list(codec.FORMATS)}")
        if frame.height == 0:
            return 0
        df = conform(frame)
        routes = self._routes(df.get_column("cell_id"))
        parts = self.partitioner.of_series(routes)
        parts[parts < 0] = 0
        if fmt == codec.JSON:
            values = codec.encode_json(df)
            keys = routes.to_list()
            produce = self._produce
            for value, key, p in zip(values, keys, parts.tolist(), strict=True):
                produce(value, p, key.encode() if key is not None else None, _JSON_HEADERS)
            self.sent_messages += len(values)
        else:
            by_part = df.with_columns(pl.Series("__p", parts)).partition_by(
                "__p", as_dict=True, maintain_order=True, include_key=False)
            for (p,), sub in by_part.items():
                for start in range(0, sub.height, self.max_rows_per_message):
                    chunk = sub.slice(start, self.max_rows_per_message)
                    self._produce(codec.encode_arrow(chunk, compression=self.arrow_compression),
                                  int(p), None, _ARROW_HEADERS)
                    self.sent_messages += 1
        self.sent_rows += df.height
        self._producer.poll(0)
        self._raise_errors()
        return df.height

    def send_keyed(self, messages: Iterable[tuple[str, bytes]], *, format: str,
                   type: str | None = None) -> int:
        """Produce pre-encoded messages of any kind (e.g. :mod:`.meter_codec`), each to
        the partition of its key (murmur2, like the worker's partition check); ``type``
        is the ``ct-type`` header (None: records). Returns the messages sent."""
        if format not in codec.FORMATS:
            raise ConfigError(f"format {format!r}: one of {list(codec.FORMATS)}")
        headers: list[tuple[str, str | bytes | None]] = [(codec.FORMAT_HEADER, format.encode())]
        if type is not None:
            headers.append((codec.TYPE_HEADER, type.encode()))
        n = 0
        for key, value in messages:
            self._produce(value, self.partitioner(key), key.encode(), headers)
            n += 1
        self.sent_messages += n
        self._producer.poll(0)
        self._raise_errors()
        return n

    def send_cells(self, cells: pl.DataFrame) -> int:
        """Produce cell metadata (CELL_SCHEMA columns), one JSON message per cell, keyed
        and partitioned like the cell's samples so workers see it before them."""
        if self.key == "pack":
            from ..ml.from_cells import pack_of_cells

            packs = pack_of_cells(cells)
            self._packs.update(zip(packs.get_column("cell_id").to_list(),
                                   packs.get_column("vin").to_list(), strict=True))
        n = 0
        for cell_id, value in cell_codec.encode_cells_json(cells):
            route = self._packs.get(cell_id, cell_id)
            self._produce(value, self.partitioner(route), route.encode(), _CELL_HEADERS)
            n += 1
        self._producer.poll(0)
        return n

    def _routes(self, ids: pl.Series) -> pl.Series:
        """The routing key of each row: its cell id, or its cell's pack (``key="pack"``)."""
        if not self._packs:
            return ids
        return ids.replace(self._packs)

    def end_of_stream(self, *, timeout_s: float = 60.0) -> dict[int, int]:
        """Mark the end of a finite stream in every partition and wait for delivery;
        returns the offset of the marker in each partition.

        A worker reaching the marker flushes the engine state of that partition (open
        steps and cycles are settled exactly as :func:`~chargetracker.engine.summarize`
        settles the end of its input) and commits it with the marker's offset.
        """
        for p in range(self.partitions):
            self._produce(None, p, None, _EOS_HEADERS)
        self.flush(timeout_s=timeout_s)
        return {p: self.delivered[p] for p in range(self.partitions)}

    def flush(self, *, timeout_s: float = 60.0) -> None:
        """Wait until every message is delivered; raises :class:`SourceError` on failures."""
        deadline = time.monotonic() + timeout_s
        remaining = self._producer.flush(timeout_s)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(max(0.1, deadline - time.monotonic()))
        self._raise_errors()
        if remaining:
            raise SourceUnavailable(
                f"{remaining} message(s) not delivered to {self.config.brokers!r} within {timeout_s:g} s")

    def _raise_errors(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            raise SourceError(f"Kafka delivery to {self.topic!r} failed: {'; '.join(errors[:5])}")

    def close(self, *, timeout_s: float = 60.0) -> None:
        """Deliver everything, then release the producer (its connections close)."""
        if self._producer is not None:
            try:
                self.flush(timeout_s=timeout_s)
            finally:
                self._producer = None  # type: ignore[assignment]

    def __enter__(self) -> KafkaSink:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        elif self._producer is not None:  # an error is propagating: do not mask it
            self._producer.flush(5.0)
            self._producer = None  # type: ignore[assignment]


class DeadLetterPublisher:
    """Dead letters (DEAD_LETTER_SCHEMA rows as JSON, keyed by cell id, header
    ``ct-type: dead-letter``) to ``kafka.dead_letter_topic``; a full local queue waits for
    deliveries, a broker error is logged (the store holds the dead letters anyway)."""

    def __init__(self, kafka: KafkaConfig) -> None:
        if not kafka.dead_letter_topic:
            raise ConfigError("no dead-letter topic configured")
        self.topic = kafka.dead_letter_topic
        self._producer = Producer(client_config(kafka, "producer", **{"linger.ms": 50}))

    def publish(self, rejected: pl.DataFrame) -> None:
        values = rejected.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
        for cid, value in zip(rejected.get_column("cell_id").to_list(), values, strict=True):
            for _ in range(100):
                try:
                    self._producer.produce(self.topic, value=value.encode(),
                                           key=cid.encode() if cid else None,
                                           headers=[("ct-type", b"dead-letter")])
                    break
                except BufferError:  # local queue full: wait for deliveries, then retry
                    self._producer.poll(0.1)
                except KafkaException as exc:
                    log.warning("dead-letter topic %s: %s", self.topic, exc)
                    return
        self._producer.poll(0)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)


def _positive_int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"Kafka URL parameter {name}={value!r} is not an integer") from None
    if n < 1:
        raise ConfigError(f"Kafka URL parameter {name} must be >= 1")
    return n
