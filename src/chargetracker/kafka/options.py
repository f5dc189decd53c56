"""Batching, end-of-stream and monitoring options of a Kafka worker."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["WorkerOptions"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Batching, end-of-stream and monitoring options of a worker (units in names)."""

    #: Commit when this many message bytes are buffered ...
    max_batch_bytes: int = 32 * 1024 * 1024
    #: ... or this many messages ...
    max_batch_messages: int = 200_000
    #: ... or when the oldest buffered message has waited this long, s. A worker that has
    #: read every partition to its end commits at once (live streams: low latency).
    commit_interval_s: float = 0.5
    #: Longest wait in one poll, s.
    poll_timeout_s: float = 0.05
    #: Write raw measurements to the store (the dashboard's raw view); off when a
    #: Parquet archive holds them.
    store_raw: bool = True
    #: With ``store_raw``: keep at most one raw row per cell per this many seconds in
    #: the store (the dashboard's raw view; the Parquet archive keeps every sample, so
    #: give ``archive_dir`` too). None: every accepted sample.
    raw_every_s: float | None = None
    #: Exit after receiving nothing for this long, s, flushing partitions that have not
    #: seen an end-of-stream marker. None: run until stopped.
    until_idle_s: float | None = None
    #: Serve Prometheus metrics on this port (0: any free port; None: off).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: Also append accepted raw rows to this Parquet archive (the batch layer's input),
    #: one file set per partition and batch, written before the store commit and
    #: replaced by a replay of the same batch.
    archive_dir: str | None = None
    #: fsync archive files before the store commit (durable across power loss). Off:
    #: a process crash still loses nothing (the page cache survives it), a power loss
    #: may lose archived rows whose results were committed.
    archive_fsync: bool = True
    #: Commit on a writer thread while the next micro-batch is polled and processed
    #: (one commit in flight, in order; offsets after the durable writes, as without).
    pipeline_commits: bool = True
    #: Reject rows whose cell id murmur2-hashes to another partition.
    partition_check: bool = True
    #: Raise limit alerts (voltage, temperature, coulombic efficiency) from cycles.
    alerts: bool = True
    #: Create the topic on start with this many partitions when it does not exist
    #: (development; None, the default: a missing topic is an error with a hint --
    #: production topics are created on purpose, ``chargetracker topics create``).
    create_topic_partitions: int | None = None
    create_topic_replication: int = 1
    #: Store back-off while unreachable: first and longest wait, s.
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_batch_bytes < 1 or self.max_batch_messages < 1:
            raise ConfigError("max_batch_bytes and max_batch_messages must be >= 1")
        if self.commit_interval_s < 0 or self.poll_timeout_s <= 0:
            raise ConfigError("commit_interval_s must be >= 0 and poll_timeout_s > 0")
        if self.raw_every_s is not None and not self.raw_every_s > 0:
            raise ConfigError("raw_every_s must be > 0")
        if self.create_topic_partitions is not None and self.create_topic_partitions < 1:
            raise ConfigError("create_topic_partitions must be >= 1")
        if self.create_topic_replication < 1:
            raise ConfigError("create_topic_replication must be >= 1")
        if self.until_idle_s is not None and self.until_idle_s <= 0:
            raise ConfigError("until_idle_s must be > 0")
