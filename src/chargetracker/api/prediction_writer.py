"""Write-behind of single HTTP alarm predictions: a bounded queue and one writer thread
that commits queued predictions in groups (one store commit per group).

Why: a store commit (DuckDB: one transaction, WAL write) costs ~10 ms, more than the
prediction itself; a request that waits for it cannot reach a p99 of 20 ms. With
``api.alarm_write = "grouped"`` (the default) ``POST /api/v1/alarms/predict`` replies
once its prediction is *queued*; the writer commits every few ms, many predictions per
commit.

Guarantees (docs/alarms.md, "Stored predictions and durability"):

* **Read-your-writes.** Every reader of ``alarm_predictions`` in this process (the
  prediction list, batch scoring and pack-record ingest before their own writes, the
  dashboard's Fleet-alarms page) calls :meth:`PredictionWriter.flush` first, which
  commits what is queued and waits for it (or raises
  :class:`~chargetracker.errors.StoreUnavailable` when the store refuses it).
* **Order.** Rows are committed in the order they were queued (a failed group is
  retried at the head of the queue), so the latest scoring of a (vin, date,
  model_version) still wins.
* **Never dropped silently.** When the queue is full the request waits for room
  (back-pressure) for up to ``wait_s`` and then fails with 503 (the prediction is
  answered as not stored); a store failure in the writer is logged and counted, the rows
  stay queued (the queue is the bounded retry buffer) and are retried with back-off.
* **Shutdown drains** the queue (:meth:`close`, from the server's lifespan); rows that a
  failing store still refuses at the drain deadline are logged as lost, with their count.
* **Durability trade-off:** a crash (SIGKILL, power loss) loses at most the predictions
  queued and not yet committed -- one group, a few ms of requests.

The writer knows nothing of HTTP or of the store: it calls ``write(rows)`` with a list of
:data:`Row` tuples, which the route module turns into one store commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, StoreUnavailable

__all__ = ["Backlogged", "PredictionWriter", "ROW_FIELDS", "Row", "WriterLimits",
           "flush_pending"]

log = logging.getLogger("chargetracker.api.alarms")

#: One stored prediction: (vin, date, probability, alarm, threshold, model_version,
#: source, request_id) -- the columns of ``alarm_predictions`` the caller supplies.
Row = tuple[str, dt.date, float, bool, float, str, str, str | None]
ROW_FIELDS: tuple[str, ...] = ("vin", "date", "probability", "alarm", "threshold",
                               "model_version", "source", "request_id")


@dataclass(frozen=True, slots=True)
class WriterLimits:
    """Sizes and times of the write-behind (rows; seconds)."""

    #: Rows queued at most (also the retry buffer while the store fails).
    queue_rows: int = 4096
    #: Rows committed at most per group (one commit).
    group_rows: int = 256
    #: A group is committed when its oldest row is this old, s (or when full / flushed).
    max_age_s: float = 0.02
    #: How long a request waits for room in a full queue before it fails with 503, s.
    wait_s: float = 5.0
    #: Back-off after a failed commit: first and largest delay, s (doubling).
    retry_min_s: float = 0.05
    retry_max_s: float = 2.0
    #: How long :meth:`PredictionWriter.flush` waits at most, s.
    flush_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.queue_rows < 1 or self.group_rows < 1:
            raise ConfigError("alarm write queue and group sizes must be >= 1 row")
        for name in ("max_age_s", "wait_s", "retry_min_s", "retry_max_s", "flush_timeout_s"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"alarm write {name} must be >= 0 s")


class Backlogged(StoreUnavailable):
    """The queue stayed full for ``wait_s``: the prediction was not stored."""


@dataclass(slots=True)
class _Stats:
    commits_ok: int = 0
    commits_failed: int = 0
    rows_written: int = 0
    backpressure_waits: int = 0
    backpressure_timeouts: int = 0


#: Writers of this process by store URL, for in-process readers that do not hold the
#: app (the dashboard): :func:`flush_pending`.
_registry: weakref.WeakValueDictionary[str, PredictionWriter] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def flush_pending(store_url: str | None) -> None:
    """Commit the predictions queued for the store at ``store_url`` (no-op when this
    process queues none); raises :class:`StoreUnavailable` when they cannot be stored."""
    if store_url is None:
        return
    with _registry_lock:
        writer = _registry.get(store_url)
    if writer is not None:
        writer.flush()


class PredictionWriter:
    """A bounded FIFO of prediction rows and the one thread that commits them in groups.

    ``write(rows)`` must store all rows atomically or raise; it runs on the writer
    thread only (one writer per store, as the store expects).
    """

    def __init__(self, write: Callable[[list[Row]], None], limits: WriterLimits | None = None,
                 *, key: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self.limits = limits or WriterLimits()
        self._clock = clock
        self._cond = threading.Condition()
        #: (monotonic enqueue time s, row), oldest first.
        self._pending: deque[tuple[float, Row]] = deque()
        self._submitted = 0     # rows ever queued
        self._written = 0       # rows committed (always a prefix of the queued ones)
        self._in_flight = 0     # rows taken by the running commit
        self._started = 0       # commit attempts started
        self._failed_at = 0     # number of the latest failed attempt (0: none)
        self._last_error: str | None = None
        self._urgent = 0        # flushes waiting
        self._flush_gen = 0     # flushes ever asked (wakes a back-off early)
        self._closing = False
        self._deadline = float("inf")
        self.stats = _Stats()
        self._key = key
        if key is not None:
            with _registry_lock:
                _registry[key] = self
        self._thread = threading.Thread(target=self._run, name="alarm-writer", daemon=True)
        self._thread.start()

    # -- producers ---------------------------------------------------------------------
    def submit(self, rows: list[Row]) -> None:
        """Queue rows; returns at once when there is room, else waits up to
        ``limits.wait_s`` for it and raises :class:`Backlogged` (nothing queued)."""
        if not rows:
            return
        n = len(rows)
        cap = self.limits.queue_rows
        with self._cond:
            if self._closing:
                raise StoreUnavailable("the server is shutting down: prediction not stored")
            if self._queued() and self._queued() + n > cap:
                self.stats.backpressure_waits += 1
                end = self._clock() + self.limits.wait_s
                while self._queued() and self._queued() + n > cap:
                    left = end - self._clock()
                    if left <= 0 or self._closing:
                        self.stats.backpressure_timeouts += 1
                        raise Backlogged(
                            f"{self._queued()} predictions are waiting for the store "
                            f"(queue of {cap} full for {self.limits.wait_s:g} s"
                            + (f"; last store error: {self._last_error}" if self._last_error
                               else "") + "): prediction not stored")
                    self._cond.wait(left)
            now = self._clock()
            was_empty = not self._pending
            self._pending.extend((now, r) for r in rows)
            self._submitted += n
            # Wake the writer only when it waits for a first row or its group is full
            # (it times the group's age itself): no thread switch per queued row.
            if was_empty or len(self._pending) >= self.limits.group_rows:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> None:
        """Commit every row queued before this call and wait for it, s at most
        ``timeout`` (default ``limits.flush_timeout_s``). Raises
        :class:`StoreUnavailable` when a commit attempted after this call fails (the
        rows stay queued) or on timeout. Costs nothing when nothing is queued."""
        with self._cond:
            target = self._submitted
            if self._written >= target:
                return
            # A commit already running may not hold all of the target rows; only a
            # failure of an attempt started from now on answers this flush.
            first = self._started + 1
            end = self._clock() + (self.limits.flush_timeout_s if timeout is None else timeout)
            self._urgent += 1
            self._flush_gen += 1
            self._cond.notify_all()
            try:
                while self._written < target:
                    if self._failed_at >= first:
                        raise StoreUnavailable(f"{target - self._written} predictions are not "
                                               f"stored yet: {self._last_error}")
                    left = end - self._clock()
                    if left <= 0:
                        raise StoreUnavailable(f"{target - self._written} predictions are not "
                                               "stored yet (the store is slow)")
                    self._cond.wait(left)
            finally:
                self._urgent -= 1

    def close(self, timeout: float = 10.0) -> int:
        """Stop taking rows, drain the queue (retrying a failing store until ``timeout``
        s have passed) and stop the thread. Returns the rows left unstored (logged)."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = self._clock() + timeout
            self._cond.notify_all()
        self._thread.join(timeout + 1.0)
        with self._cond:
            lost = self._queued()
            self._deadline = float("-inf")  # a thread still in a commit gives up after it
            self._cond.notify_all()
        if self._key is not None:
            with _registry_lock:
                if _registry.get(self._key) is self:
                    del _registry[self._key]
        if lost:
            log.error("alarm predictions: %d predictions could not be stored before "
                      "shutdown (last store error: %s)", lost, self._last_error)
        return lost

    # -- state -------------------------------------------------------------------------
    def _queued(self) -> int:
        return len(self._pending) + self._in_flight

    def pending_rows(self) -> int:
        """Rows queued and not yet committed (including a commit in progress)."""
        with self._cond:
            return self._queued()

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics: commits ok/failed, rows written, rows pending,
        back-pressure waits and timeouts."""
        with self._cond:
            s = self.stats
            return {"commits_ok": s.commits_ok, "commits_failed": s.commits_failed,
                    "rows_written": s.rows_written, "pending": self._queued(),
                    "backpressure_waits": s.backpressure_waits,
                    "backpressure_timeouts": s.backpressure_timeouts}

    # -- the writer thread -------------------------------------------------------------
    def _take(self) -> list[tuple[float, Row]] | None:
        """The next group (None: stop). Waits for rows, then for the group to fill or
        its oldest row to reach ``max_age_s``, unless a flush or shutdown is waiting."""
        lim = self.limits
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            while (len(self._pending) < lim.group_rows and not self._urgent
                   and not self._closing):
                left = self._pending[0][0] + lim.max_age_s - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            k = min(lim.group_rows, len(self._pending))
            group = [self._pending.popleft() for _ in range(k)]
            self._in_flight = k
            self._started += 1
            return group

    def _run(self) -> None:
        delay = self.limits.retry_min_s
        while True:
            group = self._take()
            if group is None:
                return
            try:
                self._write([r for _, r in group])
                error = None
            except Exception as exc:  # noqa: BLE001 - any store failure: keep the rows, retry
                error = f"{type(exc).__name__}: {exc}"[:500]
            with self._cond:
                self._in_flight = 0
                if error is None:
                    self._written += len(group)
                    self.stats.commits_ok += 1
                    self.stats.rows_written += len(group)
                    self._last_error = None
                    delay = self.limits.retry_min_s
                    self._cond.notify_all()
                    continue
                self._pending.extendleft(reversed(group))  # back at the head: order kept
                self._failed_at = self._started
                self._last_error = error
                self.stats.commits_failed += 1
                self._cond.notify_all()
            log.error("alarm predictions: storing %d queued predictions failed (kept for "
                      "retry in %.2f s, %d queued): %s", len(group), delay,
                      self.pending_rows(), error)
            if not self._back_off(delay):
                return
            delay = min(self.limits.retry_max_s, max(delay * 2, 1e-3))

    def _back_off(self, delay: float) -> bool:
        """Wait ``delay`` s before a retry (a new flush wakes it early); False when the
        shutdown deadline has passed (stop retrying)."""
        with self._cond:
            if self._urgent:  # a reader is waiting for these rows: retry now
                return self._clock() < self._deadline
            gen = self._flush_gen
            end = self._clock() + delay
            while self._flush_gen == gen:
                now = self._clock()
                if now >= self._deadline:
                    return False
                left = min(end, self._deadline) - now
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._clock() < self._deadline
