"""The live runner: sources -> bounded queue -> engine -> store commits.

One thread per source polls it in micro-batches (at most ``max_batch_rows`` rows; a
source with nothing ready is polled again after ``poll_interval_s``) and puts each batch
on a bounded queue of ``max_queue_batches``. The runner's thread takes batches off the
queue, in order, and runs the engine on them (:meth:`Pipeline.prepare`); a writer thread
commits each prepared batch (:meth:`Pipeline.write`: results, engine state and the
source's position in one transaction) while the engine works on the next one, so the
engine and the store use both cores. Writes happen strictly in order.

Back-pressure: when the store is slower than the sources, the writer hand-over (one
batch) and then the queue fill up, and ``put`` blocks the source threads. At most
``max_queue_batches`` + 4 batches are alive at any time (one being polled per source, the
queued ones, one in the engine, one handed over, one being written), however long the
run and however slow the store.

Restart: :meth:`Runner.run` first seeks every source to the position committed with the
pipeline's checkpoint (:meth:`Pipeline.position`), so a process killed at any point
resumes exactly after its last commit.

Stop: SIGINT/SIGTERM (or :meth:`Runner.stop`) lets the in-flight batch finish and commit,
then the runner returns; batches still queued were never committed, so their positions
were not either, and they are read again on the next start. When every source is finite
and done, the engine is flushed (:meth:`Pipeline.finish`, settling pending samples and
the last runs) and a marker is committed so that a later start does not flush again.

Retention: every ``retention_interval_s`` the raw measurements older than
``raw_retention_days`` before the retention clock are pruned, and dead letters older than
``dead_letter_retention_days`` of wall time. The retention clock is a source's own clock
when it has one (a simulated fleet: its simulated now), else the progress of the data
capped by the wall clock: the median timestamp of the newest committed batch (a replay of
old files keeps its recent raw data), never the newest single row, so one sample with a
wrong clock cannot delete the others. The store never deletes raw samples its results do
not yet cover (the open step or cycle of a cell, samples still pending in the engine).
"""

from __future__ import annotations

import math
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import polars as pl

from ..config import RuntimeConfig
from ..errors import ChargeTrackerError, ConfigError, SourceError
from ..sources.base import Batch, Source
from .pipeline import IngestResult, Pipeline, PreparedStep


def source_clock(source: Source) -> Callable[[], float] | None:
    """A source's own clock (s since the epoch) when it has one: a simulated fleet's
    start plus the simulated time delivered so far. None for sources of real data."""
    sim_time = getattr(type(source), "sim_time_s", None)
    config = getattr(source, "config", None)
    start = getattr(config, "start_epoch", None)
    if sim_time is None or start is None:
        return None
    return lambda: float(start) + float(source.sim_time_s)  # type: ignore[attr-defined]

__all__ = ["RUNNER_KEY", "RunStats", "Runner", "Snapshot", "source_clock"]

#: Position key under which the runner records that a finite run was flushed.
RUNNER_KEY = "__runner__"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the live summary shows (one line every few seconds)."""

    wall_s: float              # seconds since the runner started
    cells: int                 # cells known to the engine
    samples_total: int         # accepted this run
    samples_per_s: float       # accepted per wall second since the previous snapshot
    rejected_total: int        # dead letters this run
    closed_cycles: int         # cycles closed this run
    open_alerts: int           # unacknowledged alerts in the store (capped at 10,000)
    lag_s: float | None        # wall time from polling the last batch to its commit
    queue: int                 # batches waiting
    positions: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        if self.samples_total == 0 and self.lag_s is None and self.rejected_total == 0:
            return (f"[{self.wall_s:7.1f} s] waiting for the first commit (a first run on this "
                    "machine compiles the engine and simulator kernels once: ~10-30 s)")
        lag = "-" if self.lag_s is None else f"{self.lag_s:.2f} s"
        return (f"[{self.wall_s:7.1f} s] cells {self.cells}  samples {self.samples_total:,} "
                f"({self.samples_per_s:,.0f}/s)  rejected {self.rejected_total:,}  "
                f"closed cycles {self.closed_cycles:,}  open alerts {self.open_alerts:,}  "
                f"lag {lag}  queue {self.queue}")


@dataclass(slots=True)
class RunStats:
    """Counters of one :meth:`Runner.run` (this process only)."""

    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    closed_cycles: int = 0
    alerts: int = 0
    pruned: int = 0
    pruned_dead_letters: int = 0
    max_queue: int = 0
    finished: bool = False
    stopped: bool = False
    resumed: dict[str, Any] = field(default_factory=dict)
    last_lag_s: float | None = None
    wall_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _Item:
    source: str
    batch: Batch | None          # None: the source is done
    polled_at: float
    error: BaseException | None = None


class Runner:
    """Drive ``sources`` into ``pipeline`` until they are done or the runner is stopped.

    Parameters
    ----------
    pipeline:
        The pipeline (engine state + store) to commit through.
    sources:
        Sources with distinct names.
    config:
        Polling, batch size and queue bound (default: ``pipeline.settings.runtime``).
    raw_retention_days:
        Keep raw measurements this long (data time); None keeps them forever. Default:
        ``pipeline.settings.raw_retention_days``.
    retention_interval_s:
        How often to prune, wall s.
    summary:
        Called with a :class:`Snapshot` every ``summary_interval_s`` (e.g.
        :func:`print_summary`); None for no summary.
    on_commit:
        Called after every commit with (source name, batch, result), in the committing
        thread (tests, benchmarks, a log of commits).
    finish_when_done:
        Flush the engine when every source is done (finite runs).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        sources: Sequence[Source],
        config: RuntimeConfig | None = None,
        *,
        raw_retention_days: float | None | object = ...,
        retention_interval_s: float = 60.0,
        summary: Callable[[Snapshot], None] | None = None,
        summary_interval_s: float = 5.0,
        on_commit: Callable[[str, Batch, IngestResult], None] | None = None,
        finish_when_done: bool = True,
    ) -> None:
        names = [s.name for s in sources]
        if not sources:
            raise ConfigError("a pipeline needs at least one source")
        if len(set(names)) != len(names):
            raise ConfigError(f"source names must be unique, got {names}")
        if RUNNER_KEY in names:
            raise ConfigError(f"{RUNNER_KEY!r} is reserved")
        self.pipeline = pipeline
        self.sources = list(sources)
        self.config = config or pipeline.settings.runtime
        if self.config.max_batch_rows < 1 or self.config.max_queue_batches < 1:
            raise ConfigError("max_batch_rows and max_queue_batches must be >= 1")
        self.raw_retention_days: float | None = (
            pipeline.settings.raw_retention_days if raw_retention_days is ...
            else raw_retention_days)  # type: ignore[assignment]
        self.retention_interval_s = float(retention_interval_s)
        self.summary = summary
        self.summary_interval_s = float(summary_interval_s)
        self.on_commit = on_commit
        self.finish_when_done = finish_when_done
        self.stats = RunStats()
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=self.config.max_queue_batches)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        # Progress of the data: max over committed batches of their median ts (one row
        # with a wrong clock cannot move it).
        self._data_now = -math.inf
        self._source_clocks = [c for c in (source_clock(s) for s in self.sources) if c is not None]
        if self._source_clocks and pipeline.source_clock is None:
            clocks = self._source_clocks
            pipeline.source_clock = lambda: max(c() for c in clocks)
        self._positions: dict[str, Any] = {}
        self.started = threading.Event()
        # Engine -> store hand-over: one batch prepared ahead of the one being written.
        self._writes: queue.Queue[tuple[_Item, PreparedStep] | None] = queue.Queue(maxsize=1)
        self._writer_error: BaseException | None = None
        self._prepared_count = 0

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the runner to stop after the in-flight batch (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def queue_size(self) -> int:
        return self._queue.qsize()

    def start(self) -> threading.Thread:
        """Run in a background thread (no signal handlers); see :meth:`join`."""
        def target() -> None:
            try:
                self.run(install_signals=False)
            except BaseException as exc:  # surfaced by join()
                self._error = exc
        self._thread = threading.Thread(target=target, name="chargetracker-runner", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> RunStats:
        """Wait for a :meth:`start`-ed runner; re-raises its error."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.stats

    # -- the loop -----------------------------------------------------------------------
    def run(self, *, install_signals: bool = True) -> RunStats:
        """Resume every source, then commit batches until done or stopped (blocking)."""
        t0 = time.monotonic()
        restore = self._install_signals() if install_signals else None
        try:
            self._resume()
            if self._already_finished():
                self.stats.finished = True
                return self.stats
            for src in self.sources:
                t = threading.Thread(target=self._poll_loop, args=(src,),
                                     name=f"source-{src.name}", daemon=True)
                self._threads.append(t)
                t.start()
            self.started.set()
            self._commit_loop(t0)
        finally:
            self._stop.set()
            self._drain()
            for t in self._threads:
                t.join(timeout=30)
            self._threads = []
            if restore is not None:
                restore()
            self.stats.wall_s = time.monotonic() - t0
            self.started.set()
        return self.stats

    def _install_signals(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            self.stop()
            # A second Ctrl-C interrupts at once.
            signal.signal(signal.SIGINT, signal.default_int_handler)

        for s in old:
            signal.signal(s, handler)

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)
        return restore

    def _resume(self) -> None:
        for src in self.sources:
            pos = self.pipeline.position(src.name)
            src.seek(pos)
            self.stats.resumed[src.name] = pos
            self._positions[src.name] = pos

    def _already_finished(self) -> bool:
        marker = self.pipeline.position(RUNNER_KEY)
        return bool(isinstance(marker, dict) and marker.get("finished")
                    and all(s.done for s in self.sources))

    def _put(self, item: _Item) -> bool:
        """Block while the queue is full (back-pressure); False when stopping."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _poll_loop(self, src: Source) -> None:
        cfg = self.config
        try:
            while not self._stop.is_set():
                if src.done:
                    self._put(_Item(src.name, None, time.monotonic()))
                    return
                t = time.monotonic()
                batch = src.poll(cfg.max_batch_rows)
                if batch is not None:
                    if not self._put(_Item(src.name, batch, t)):
                        return
                    if batch.rows * 2 >= cfg.max_batch_rows:
                        continue        # a backlog: poll again at once
                if src.done:
                    continue
                self._stop.wait(max(0.0, cfg.poll_interval_s - (time.monotonic() - t)))
        except BaseException as exc:
            self._put(_Item(src.name, None, time.monotonic(), error=exc))

    def _commit_loop(self, t0: float) -> None:
        """Take batches off the queue and run the engine on them; a writer thread commits
        each one while the engine works on the next (the store and the engine overlap)."""
        done: set[str] = set()
        names = {s.name for s in self.sources}
        last_prune = time.monotonic()
        last_summary = time.monotonic()
        last_accepted = 0
        writer = threading.Thread(target=self._write_loop, name="chargetracker-writer", daemon=True)
        writer.start()
        finished = False
        try:
            while True:
                self._raise_writer_error()
                if self._stop.is_set():
                    self.stats.stopped = True
                    break
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    item = None
                now = time.monotonic()
                if item is not None:
                    if item.error is not None:
                        exc = item.error
                        if isinstance(exc, ChargeTrackerError):
                            raise exc
                        raise SourceError(f"source {item.source!r} failed: {exc!r}") from exc
                    if item.batch is None:
                        done.add(item.source)
                    else:
                        self._prepare(item)
                if now - last_prune >= self.retention_interval_s:
                    last_prune = now
                    self._prune()
                if self.summary is not None and now - last_summary >= self.summary_interval_s:
                    snap = self.snapshot(t0, rate=(self.stats.accepted - last_accepted) / (now - last_summary))
                    last_summary, last_accepted = now, self.stats.accepted
                    self.summary(snap)
                if done == names:
                    finished = True
                    break
        finally:
            # Batches already through the engine are written (the in-flight work of a
            # graceful stop); nothing new is started.
            self._stop_writer(writer)
        self._raise_writer_error()
        if not finished:
            return
        marker = self.pipeline.position(RUNNER_KEY)
        flushed = isinstance(marker, dict) and marker.get("finished")
        if self.finish_when_done and not (flushed and self._prepared_count == 0):
            self.pipeline.finish(source=RUNNER_KEY, position={"finished": True})
            self.stats.finished = True
        self._prune()
        if self.summary is not None:
            now = time.monotonic()
            self.summary(self.snapshot(t0, rate=(self.stats.accepted - last_accepted)
                                       / max(now - last_summary, 1e-9)))

    def _prepare(self, item: _Item) -> None:
        batch = item.batch
        assert batch is not None
        prepared = self.pipeline.prepare(batch.frame, source=item.source, position=batch.position,
                                         cells=batch.cells, rejected=batch.rejected)
        self._prepared_count += 1
        self._writes.put((item, prepared))      # bounded: waits while the store is busy

    def _write_loop(self) -> None:
        while True:
            entry = self._writes.get()
            if entry is None:
                return
            item, prepared = entry
            if self._writer_error is not None:
                self.pipeline.discard(prepared)
                continue
            try:
                result = self.pipeline.write(prepared)
            except BaseException as exc:
                self._writer_error = exc
                self._stop.set()
                continue
            self._after_commit(item, result)

    def _stop_writer(self, writer: threading.Thread) -> None:
        if writer.is_alive():
            self._writes.put(None)
            writer.join()

    def _raise_writer_error(self) -> None:
        if self._writer_error is not None:
            raise self._writer_error

    def _after_commit(self, item: _Item, result: IngestResult) -> None:
        batch = item.batch
        assert batch is not None
        st = self.stats
        st.batches += 1
        st.accepted += result.accepted
        st.rejected += result.rejected.height
        st.closed_cycles += result.closed_cycles
        st.alerts += result.alerts
        st.max_queue = max(st.max_queue, self._queue.qsize())
        st.last_lag_s = time.monotonic() - item.polled_at
        self._positions[item.source] = batch.position
        if batch.frame.height and "ts" in batch.frame.columns:
            mid = batch.frame.get_column("ts").cast(pl.Float64, strict=False).median()
            if mid is not None and mid > self._data_now:  # type: ignore[operator]
                self._data_now = float(mid)  # type: ignore[arg-type]
        if self.on_commit is not None:
            self.on_commit(item.source, batch, result)

    def retention_clock(self) -> float | None:
        """The clock raw retention counts back from, s since the epoch (see the module
        docstring); None before anything is known."""
        if self._source_clocks:
            return min(c() for c in self._source_clocks)
        if not math.isfinite(self._data_now):
            return None
        return min(time.time(), self._data_now)

    def _prune(self) -> None:
        store = self.pipeline.store
        dl_days = self.pipeline.settings.dead_letter_retention_days
        if dl_days is not None:
            self.stats.pruned_dead_letters += store.prune_dead_letters(time.time() - dl_days * 86400.0)
        clock = self.retention_clock()
        if self.raw_retention_days is None or clock is None or not math.isfinite(clock):
            return
        self.stats.pruned += store.prune_measurements(clock - self.raw_retention_days * 86400.0)

    def _drain(self) -> None:
        # Queued batches were never committed; their sources re-read them after a restart.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def snapshot(self, t0: float | None = None, *, rate: float = 0.0) -> Snapshot:
        """The current :class:`Snapshot` (reads the open-alert count from the store)."""
        try:
            open_alerts = self.pipeline.store.alerts(acknowledged=False, limit=10_000).height
        except ChargeTrackerError:
            open_alerts = -1
        return Snapshot(
            wall_s=time.monotonic() - t0 if t0 is not None else 0.0,
            cells=self.pipeline.state.n_cells,
            samples_total=self.stats.accepted,
            samples_per_s=rate,
            rejected_total=self.stats.rejected,
            closed_cycles=self.stats.closed_cycles,
            open_alerts=open_alerts,
            lag_s=self.stats.last_lag_s,
            queue=self._queue.qsize(),
            positions=dict(self._positions),
        )


def print_summary(stream: TextIO | None = None) -> Callable[[Snapshot], None]:
    """A summary callback printing one line per snapshot to ``stream`` (stderr)."""
    def emit(snap: Snapshot) -> None:
        out = stream or sys.stderr
        print(snap.line(), file=out, flush=True)
    return emit
