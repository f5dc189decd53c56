"""The embedded driver of the micro-batch step: one batch in -> :mod:`step
<chargetracker.runtime.step>` (validate, engine, alerts) -> one atomic commit.

Every accepted batch is committed together with the engine state and the position of
its source, so a process killed at any point restarts from the last commit: nothing
accepted is lost and nothing is counted twice (results are idempotent upserts, raw
rows are keyed by (cell_id, ts)). Sources, pacing and back-pressure live in
:mod:`chargetracker.runtime.runner`; this class only turns batches into commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from ..config import Settings
from ..episodes import EpisodeState
from ..errors import StoreError
from ..frames import conform_frame
from ..kinds import TelemetryKind, cell_kind
from ..kinds.cell import CellKind
from ..schema import CELL_SCHEMA
from ..stores.base import Checkpoint, CommitBatch, Store, all_cells
from .step import (
    AlertPolicy,
    IngestResult,
    StepContext,
    StepOutcome,
    advance,
    finish,
    put_tables,
    raise_alerts,
)

__all__ = ["IngestResult", "Pipeline", "PreparedStep"]


@dataclass(slots=True)
class PreparedStep:
    """A batch the engine has processed, waiting for :meth:`Pipeline.write`.

    ``ticket`` orders the writes: batches are committed in the order they were prepared.
    """

    ticket: int
    step: StepOutcome
    started: float

    @property
    def commit(self) -> CommitBatch:
        return self.step.commit

    @property
    def accepted(self) -> int:
        """Samples the engine took in."""
        return self.step.accepted

    @property
    def rejected(self) -> pl.DataFrame:
        """Dead letters of the batch (the source's own, then the engine's)."""
        return self.step.rejected


class Pipeline:
    """Owns the engine state of one pipeline (``name``) and writes through a store.

    Thread-safe: the API's request threads and a runner may call :meth:`ingest`
    concurrently; batches are serialized under a lock (the engine is sequential).

    :meth:`ingest` is :meth:`prepare` (engine step, state and position snapshot) followed
    by :meth:`write` (alerts, one atomic store commit). A runner may prepare the next
    batch while the previous one is being written (the engine and the store then work
    at the same time); writes always happen in the order of the prepares, so every
    checkpoint follows the one before it. If a write fails, the in-memory engine state
    (already past that batch) is discarded: batches prepared after it are refused and the
    next :meth:`prepare` reloads the state and positions of the last commit.
    """

    def __init__(self, store: Store, settings: Settings | None = None, *,
                 name: str = "embedded", kind: TelemetryKind | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.name = name
        self.kind: TelemetryKind = kind or cell_kind(self.settings)
        #: The alert rules this pipeline raises (one switch per rule).
        self.alert_policy = AlertPolicy(outliers=self.settings.alerts.outliers)
        #: The data's own clock (s since the epoch) when a source has one (a simulated
        #: fleet); the future horizon is judged against the later of it and the wall
        #: clock. Set by the :class:`~chargetracker.runtime.Runner`.
        self.source_clock: Callable[[], float] | None = None
        self._lock = threading.Lock()
        self._turn = threading.Condition()
        self._next_ticket = 0          # next ticket to hand out (under _lock)
        self._written = -1             # last ticket written or abandoned (under _turn)
        self._failed: BaseException | None = None   # a write failed: state must be reloaded
        # The alert-episode state as of the last commit (under _turn); None: load it from
        # the store's checkpoint at the next write (at start, and after a failed write).
        # Kept here it is not read back and decoded from the store on every batch.
        self._episodes: EpisodeState | None = None
        self._load_checkpoint()
        self._groups: dict[str, str | None] = {}
        if isinstance(self.kind, CellKind):
            self._learn_groups(all_cells(self.store))

    def _load_checkpoint(self) -> None:
        cp = self.store.load_checkpoint(self.name)
        if cp is None:
            self.state: Any = self.kind.new_state()
            self._positions: dict[str, Any] = {}
        else:
            self.state = self.kind.state_from_bytes(cp.state)
            self._positions = dict(cp.position)

    # -- positions ------------------------------------------------------------------
    def position(self, source: str) -> Any:
        """The committed position of ``source`` (None when it has never committed)."""
        return self._positions.get(source)

    # -- cells ----------------------------------------------------------------------
    def _learn_groups(self, cells: pl.DataFrame) -> None:
        self._groups.update(zip(cells.get_column("cell_id").to_list(),
                                cells.get_column("group").to_list(), strict=True))

    def register_cells(self, cells: pl.DataFrame) -> None:
        """Store cell metadata (defines groups and nominal capacities)."""
        cells = conform_frame(cells, CELL_SCHEMA, table="cells")
        with self._lock:
            self.store.upsert_cells(cells)
            self._learn_groups(cells)
            if isinstance(self.kind, CellKind):
                self.kind.register(self.state, cells)

    # -- ingest ---------------------------------------------------------------------
    def ingest(self, frame: pl.DataFrame, *, source: str = "input",
               position: Any = None, cells: pl.DataFrame | None = None,
               rejected: pl.DataFrame | None = None) -> IngestResult:
        """Run one batch through the engine and commit results, state and position.

        ``rejected``: dead letters the source produced itself (e.g. a reader's unparseable
        lines, DEAD_LETTER_SCHEMA); they are committed and counted with the batch.
        """
        return self.write(self.prepare(frame, source=source, position=position, cells=cells,
                                       rejected=rejected))

    def now(self) -> float:
        """The clock that judges the future horizon, s since the epoch: the wall clock,
        or a source's own clock when it runs ahead of it (an accelerated simulation)."""
        wall = time.time()
        if self.source_clock is None:
            return wall
        own = self.source_clock()
        return max(wall, own) if own == own else wall  # noqa: PLR0124 - NaN check

    def _context(self, source: str, **kw: Any) -> StepContext:
        return StepContext(self.kind, source, self.alert_policy, self._groups, self.store,
                           checkpoint=self.name, position=self._positions, now=self.now(),
                           future_horizon_s=self.settings.runtime.future_horizon_s, **kw)

    def prepare(self, frame: pl.DataFrame, *, source: str = "input",
                position: Any = None, cells: pl.DataFrame | None = None,
                rejected: pl.DataFrame | None = None) -> PreparedStep:
        """The engine step of :meth:`ingest`; the batch is committed by :meth:`write`."""
        t0 = time.perf_counter()
        with self._lock:
            self._recover_if_failed()
            if cells is not None and cells.height:
                cells = conform_frame(cells, CELL_SCHEMA, table="cells")
                self._learn_groups(cells)
            else:
                cells = None
            if position is not None:
                self._positions[source] = position
            self.state, prepared = advance(self.state, frame, self._context(
                source, rejected=rejected, entities=cells))
            return PreparedStep(self._take_ticket(), prepared, t0)

    def write(self, prepared: PreparedStep) -> IngestResult:
        """Raise the batch's alerts and commit it, after every batch prepared before it."""
        with self._turn:
            self._turn.wait_for(lambda: self._written == prepared.ticket - 1)
            try:
                if self._failed is not None:
                    raise StoreError(
                        "an earlier batch failed to commit; this batch was prepared from engine "
                        "state that was never committed and is not written (re-read it from the "
                        "last committed position)") from self._failed
                # Alerts read the store, which now holds every earlier batch.
                raise_alerts(prepared.step, self._context("input", episodes=self._episodes))
                self.store.commit(prepared.step.commit)
                if prepared.step.episode_state is not None:
                    self._episodes = prepared.step.episode_state
            except BaseException as exc:
                self._episodes = None
                if self._failed is None:
                    self._failed = exc
                raise
            finally:
                self._written = prepared.ticket
                self._turn.notify_all()
        return prepared.step.result(time.perf_counter() - prepared.started)

    def discard(self, prepared: PreparedStep) -> None:
        """Give up a prepared batch without writing it. The engine state already went past
        it, so the next :meth:`prepare` reloads the last committed state."""
        with self._turn:
            self._turn.wait_for(lambda: self._written == prepared.ticket - 1)
            if self._failed is None:
                self._failed = StoreError("a prepared batch was discarded")
            self._written = prepared.ticket
            self._turn.notify_all()

    def amend(self, change: Callable[[Any], Mapping[str, pl.DataFrame]]) -> None:
        """Change the engine state outside a batch -- entity metadata, thresholds from a
        batch layer -- and commit the rows ``change(state)`` returns (by table name) with
        a checkpoint of the changed state, after every batch prepared before it."""
        with self._lock:
            self._recover_if_failed()
            with self._turn:
                self._turn.wait_for(lambda: self._written == self._next_ticket - 1)
                tables = dict(change(self.state))
                commit = put_tables(CommitBatch(), tables)
                commit.checkpoints.append(Checkpoint(
                    self.name, self.kind.state_to_bytes(self.state), dict(self._positions)))
                try:
                    self.store.commit(commit)
                except BaseException as exc:
                    # The state has the change, the store has not: reload at the next batch.
                    self._failed = exc
                    raise

    def finish(self, *, source: str = "input", position: Any = None) -> IngestResult:
        """End of a finite stream: settle pending samples and commit."""
        t0 = time.perf_counter()
        with self._lock:
            self._recover_if_failed()
            if position is not None:
                self._positions[source] = position
            self.state, flushed = finish(self.state, self._context(source))
            prepared = PreparedStep(self._take_ticket(), flushed, t0)
        result = self.write(prepared)
        return IngestResult(0, flushed.rejected, 0, result.alerts)

    def _take_ticket(self) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    def _recover_if_failed(self) -> None:
        """After a failed write, once every prepared batch is settled, reload the last
        committed engine state and positions (called under ``_lock``)."""
        if self._failed is None:
            return
        with self._turn:
            self._turn.wait_for(lambda: self._written == self._next_ticket - 1)
            self._load_checkpoint()
            self._episodes = None
            self._failed = None
