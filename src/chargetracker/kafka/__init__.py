"""Scale-out over Kafka: message formats, sink, source, the worker and a test broker.

* :mod:`.codec`        -- the topic's message formats (JSON per sample, Arrow batches,
  cell metadata, end-of-stream markers; ``ct-format`` / ``ct-type`` headers).
* :mod:`.partitioner`  -- cell_id -> partition, identical to Kafka's default (murmur2).
* :mod:`.sink`         -- :class:`KafkaSink`, the producer (simulator, API, scripts).
* :mod:`.source`       -- :class:`KafkaSource`, a runtime source for the embedded pipeline.
* :mod:`.worker`       -- :class:`Worker`, one consumer-group member of ``chargetracker worker``.
* :mod:`.broker`       -- :class:`TansuBroker`, a memory-only broker for tests and demos.

Importing this package needs ``confluent-kafka`` (the ``scale`` extra).
"""

from __future__ import annotations

from .partitioner import Partitioner, partition_for
from .sink import KafkaSink, parse_kafka_url

__all__ = ["KafkaSink", "Partitioner", "parse_kafka_url", "partition_for"]
