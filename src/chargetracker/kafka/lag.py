"""Consumer lag and the "caught up" signal of a worker.

Two lags per assigned partition, both in messages against the partition's high watermark:

* **fetched lag** -- what this worker has not received yet (high watermark - fetched
  position): how far the consumer trails the log;
* **committed lag** -- what is not yet in the store (high watermark - the offset of the
  store checkpoint): what a replacement worker would have to redo, and the number that
  says "done". Messages fetched and buffered, or processed but not committed, count.

A worker is **caught up** when it is a group member, holds nothing uncommitted, every
assigned partition has reported its end (partition EOF after its last message) and its
committed lag is 0. A member with no partitions (more workers than partitions) is caught
up once it has joined.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition

from .metrics import WorkerMetrics
from .processing import PartitionState

__all__ = ["LagTracker"]

#: Seconds between watermark queries to the broker for a partition whose cached
#: watermark is unknown.
_REFRESH_S = 5.0


class LagTracker:
    """Computes both lags and the readiness of one worker into its metrics."""

    def __init__(self, topic: str, metrics: WorkerMetrics, clock: Callable[[], float]) -> None:
        self.topic = topic
        self.metrics = metrics
        self._clock = clock
        self._checked: dict[int, float] = {}
        #: Committed lag per partition at the last update (None: watermark unknown).
        self.committed: dict[int, int | None] = {}

    def update(self, consumer: Consumer | None, parts: Mapping[int, PartitionState], *,
               force: bool = False) -> None:
        """Refresh both lags from the consumer's (cached) watermarks."""
        if consumer is None:
            return
        fetched: dict[int, int] = {}
        committed: dict[int, int] = {}
        known: dict[int, int | None] = {}
        now = self._clock()
        for p, ps in list(parts.items()):
            tp = TopicPartition(self.topic, p)
            try:
                lo, hi = consumer.get_watermark_offsets(tp, cached=True)
                if (hi is None or hi < 0) and (force or now - self._checked.get(p, 0.0) >= _REFRESH_S):
                    self._checked[p] = now
                    lo, hi = consumer.get_watermark_offsets(tp, timeout=1.0)
            except KafkaException:
                known[p] = None
                continue
            if hi is None or hi < 0:
                known[p] = None
                continue
            done = ps.committed_offset if ps.committed_offset >= 0 else int(lo)
            seen = max(ps.fetched_offset, done)
            committed[p] = known[p] = max(0, int(hi) - done)
            fetched[p] = max(0, int(hi) - seen)
        self.committed = known
        self.metrics.set_lag(fetched, committed)

    def readiness(self, *, joined: bool, recovering: bool, buffered: int,
                  parts: Mapping[int, PartitionState]) -> tuple[bool, str]:
        """(caught up?, reason when not) from the worker's state and the last lags."""
        if recovering:
            return False, "store unavailable; out of the group until it is back"
        if not joined:
            return False, "joining the consumer group"
        if buffered:
            return False, f"{buffered} message(s) fetched, not yet committed"
        behind = {p: n for p, n in self.committed.items() if p in parts and n}
        if behind:
            return False, f"committed lag {sum(behind.values())} message(s) on partition(s) {sorted(behind)}"
        reading = sorted(p for p, ps in parts.items() if not ps.eof)
        if reading:
            return False, f"partition(s) {reading} not read to their end yet"
        return True, ""

    def refresh_ready(self, **state: object) -> bool:
        ready, reason = self.readiness(**state)  # type: ignore[arg-type]
        self.metrics.set_ready(ready, reason)
        return ready
