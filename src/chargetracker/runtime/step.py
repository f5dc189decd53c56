"""The one micro-batch step every driver runs: validate -> engine -> alerts -> commit.

``state, commit, result = step(state, frame, context)`` validates the batch exactly once
(the kind's :meth:`~chargetracker.kinds.TelemetryKind.validate`), advances the kind's
engine state, applies the alert policy (one switch per rule) and assembles the
:class:`~chargetracker.stores.base.CommitBatch` -- results, raw records, dead letters,
counters and, when the context names one, the checkpoint of the new state with the
input position. The drivers differ only in how they read input and where they keep
positions:

========================  =============================================================
driver                    input -> position
========================  =============================================================
``runtime.Pipeline``      sources / API batches -> one checkpoint per pipeline
``kafka.Worker``          partition messages -> one checkpoint per partition (offset)
``api`` publish path      HTTP body -> Kafka (the worker steps it); dead letters here
``api`` file upload       reader chunks -> the pipeline
``batch.backfill``        archive -> the kind's batch form (:func:`summarize_commit`)
========================  =============================================================

Alert rules that read history (the cell kind's group outliers) must see every earlier
batch committed, so a driver that overlaps the engine with the store (the Pipeline's
prepare/write) calls :func:`advance` first and :func:`raise_alerts` at write time;
:func:`step` is the two in one.

The engine state is advanced in place (see :func:`chargetracker.engine.update`): the
returned state is the same object, and a driver undoes a batch whose commit failed by
reloading its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from ..config import AlertConfig
from ..engine.alerts import JUDGED_SCHEMA
from ..episodes import (
    EpisodeKeys,
    EpisodePolicy,
    EpisodeState,
    episode_frame,
    notification_frame,
    observations,
    update_episodes,
)
from ..frames import conform_frame
from ..kinds.base import AlertContext, AlertRule, KindOutput, TelemetryKind
from ..schema import DEAD_LETTER_SCHEMA, Validated
from ..stores.base import Checkpoint, CommitBatch, ReadPort
from ..vocabulary import ALERT_SCHEMA
from .screening import reject_future, split_already_stored

__all__ = [
    "AlertPolicy",
    "IngestResult",
    "StepOutcome",
    "StepContext",
    "advance",
    "alerts_for",
    "combine",
    "episode_checkpoint",
    "episode_keys_of",
    "episode_policy_from",
    "judge_for",
    "finish",
    "raise_alerts",
    "reject_future",
    "screen",
    "step",
]

#: Alert rows' columns for episodes: the entity, the rule, the cycle as position.
CELL_EPISODE_KEYS = EpisodeKeys(subject="cell_id", rule="rule", position="cycle", ts="ts")

#: The cell kind's result tables, which CommitBatch carries as named fields.
_NAMED_TABLES = ("steps", "cycles")


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Which of a kind's alert rules run: one visible switch per rule name, and whether
    their hits become alert episodes (docs/alerts.md).

    A rule not named is on. ``AlertPolicy(limits=True, outliers=False)`` reads as what
    it does; :meth:`none` turns every rule off. ``episodes``: ``True`` (default) takes the
    :class:`~chargetracker.episodes.EpisodePolicy` from the kind's ``settings.alerts``
    (on unless ``episodes = false`` there), an EpisodePolicy sets it, ``False`` raises one
    alert per hit as the rules report them.
    """

    switches: Mapping[str, bool] = field(default_factory=dict)
    all_off: bool = False
    episodes: EpisodePolicy | bool = True

    def __init__(self, switches: Mapping[str, bool] | None = None, *, all_off: bool = False,
                 episodes: EpisodePolicy | bool = True, **rules: bool) -> None:
        object.__setattr__(self, "switches", {**(switches or {}), **rules})
        object.__setattr__(self, "all_off", all_off)
        object.__setattr__(self, "episodes", episodes)

    @classmethod
    def none(cls) -> AlertPolicy:
        return cls(all_off=True)

    def enabled(self, rule: str) -> bool:
        return not self.all_off and bool(self.switches.get(rule, True))

    def episode_policy(self, settings: Any) -> EpisodePolicy | None:
        """The episode policy in force (None: episodes off)."""
        if isinstance(self.episodes, EpisodePolicy):
            return self.episodes
        if not self.episodes:
            return None
        return episode_policy_from(getattr(settings, "alerts", None))


def episode_policy_from(config: AlertConfig | None) -> EpisodePolicy | None:
    """The :class:`EpisodePolicy` of an AlertConfig (None when its episodes are off)."""
    if config is None:
        return EpisodePolicy()
    if not config.episodes:
        return None
    return EpisodePolicy(resolve_after=config.resolve_after_cycles,
                         max_new_per_window=config.max_new_episodes_per_hour,
                         window_s=3600.0, notify_resolved=config.notify_resolved)


def episode_checkpoint(name: str) -> str:
    """Checkpoint name of the alert-episode state beside the engine checkpoint ``name``
    (a prefix of its own, so prefix loads of engine checkpoints never see it)."""
    return f"{EPISODE_CHECKPOINT_PREFIX}{name}"


#: Prefix of the alert-episode checkpoints.
EPISODE_CHECKPOINT_PREFIX = "alert-episodes/"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Outcome of one batch: accepted count and the rejected rows with reasons."""

    accepted: int
    rejected: pl.DataFrame
    closed_cycles: int = 0
    alerts: int = 0
    latency_s: float = 0.0
    #: Rows that were exact copies of already stored samples (re-sends), acknowledged.
    already_stored: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected.height,
            "already_stored": self.already_stored,
            "errors": self.rejected.select("row", "field", "reason").to_dicts(),
            "closed_cycles": self.closed_cycles,
            "alerts": self.alerts,
        }


@dataclass(frozen=True, slots=True)
class StepContext:
    """Everything a step needs besides the state and the batch.

    ``source`` names the input in dead letters and counters (``counter`` overrides the
    counter's name). ``checkpoint`` + ``position``: the commit carries a checkpoint of
    the new state under that name. ``rejected``: dead letters the source produced itself
    (a reader's unparseable lines), committed and counted with the batch.
    ``row_positions``: input position of each batch row (e.g. Kafka offsets); dead
    letters then name the position instead of the row. ``entities``: metadata rows of
    the kind's entities (cells) that arrived with the batch. ``store_raw``: put accepted
    raw records in the commit.
    """

    kind: TelemetryKind
    source: str = "input"
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    groups: Mapping[str, str | None] = field(default_factory=dict)
    history: ReadPort | None = None
    checkpoint: str | None = None
    position: Mapping[str, Any] | None = None
    rejected: pl.DataFrame | None = None
    entities: pl.DataFrame | None = None
    row_positions: np.ndarray | None = None
    store_raw: bool = True
    counter: str | None = None
    #: The clock that judges "implausibly far ahead": s since the epoch (the wall clock,
    #: or a simulated / replayed source's own clock). The engine is pure and takes no
    #: clock, so the driver passes it here. None: no horizon check.
    now: float | None = None
    #: Rows stamped more than this after ``now`` are dead letters, s (None: no check).
    future_horizon_s: float | None = None
    #: The alert-episode state to advance (a driver that keeps it in memory between
    #: steps, e.g. one per Kafka partition); None: loaded from ``history`` by checkpoint.
    episodes: EpisodeState | None = None


@dataclass(slots=True)
class StepOutcome:
    """A step's commit and what it did. ``alerts_raised`` is False until
    :func:`raise_alerts` ran (the commit then carries the alerts)."""

    commit: CommitBatch
    output: KindOutput
    accepted: int
    rejected: pl.DataFrame
    raw: pl.DataFrame | None = None
    alerts_raised: bool = False
    #: New alert episodes the rate limit kept from notifying in this step.
    episodes_suppressed: int = 0
    #: Rows that were exact copies of stored samples (a re-send): acknowledged, not
    #: accepted again and not dead letters.
    already_stored: int = 0
    #: The alert-episode state after :func:`raise_alerts` (None: episodes off or untouched).
    episode_state: EpisodeState | None = None

    @property
    def closed(self) -> int:
        return self.output.closed("cycles")

    def result(self, latency_s: float = 0.0) -> IngestResult:
        n_alerts = self.commit.alerts.height if self.commit.alerts is not None else 0
        return IngestResult(self.accepted, self.rejected, self.closed, n_alerts, latency_s,
                            self.already_stored)


def _dead_letters(ctx: StepContext, engine: pl.DataFrame) -> pl.DataFrame:
    if ctx.row_positions is not None and engine.height:
        rows = engine.get_column("row").to_numpy()
        engine = engine.with_columns(pl.Series("row", ctx.row_positions[rows], dtype=pl.Int64))
    if ctx.rejected is None or ctx.rejected.height == 0:
        return engine
    own = ctx.rejected.select(list(DEAD_LETTER_SCHEMA)).cast(DEAD_LETTER_SCHEMA)  # type: ignore[arg-type]
    return pl.concat([own, engine])


def put_tables(commit: CommitBatch, tables: Mapping[str, pl.DataFrame]) -> CommitBatch:
    """Place a kind's result tables in a commit (the cell kind's in their named fields)."""
    for name, frame in tables.items():
        if name in _NAMED_TABLES:
            setattr(commit, name, frame)
        else:
            commit.tables[name] = frame
    return commit


def _assemble(state: Any, ctx: StepContext, out: KindOutput, accepted: int,
              dead: pl.DataFrame, raw: pl.DataFrame | None) -> StepOutcome:
    commit = put_tables(CommitBatch(dead_letters=dead, cells=ctx.entities), out.tables)
    if raw is not None:
        raw_table = ctx.kind.raw_table
        if raw_table is not None and raw_table.name != "measurements":
            commit.tables[raw_table.name] = raw
        else:
            commit.measurements = raw
    if ctx.checkpoint is not None:
        commit.checkpoints.append(Checkpoint(ctx.checkpoint, ctx.kind.state_to_bytes(state),
                                             dict(ctx.position or {})))
    commit.counters[ctx.counter or ctx.source] = {"accepted": accepted, "rejected": dead.height}
    return StepOutcome(commit, out, accepted, dead, raw)


def advance(state: Any, frame: pl.DataFrame, ctx: StepContext) -> tuple[Any, StepOutcome]:
    """Validate ``frame`` once (the kind's rules, then the future horizon), run the
    kind's engine and assemble the commit (alerts still to be raised by
    :func:`raise_alerts`)."""
    checked = reject_future(ctx.kind.validate(frame, source=ctx.source), ctx)
    state, out = ctx.kind.update(state, checked, source=ctx.source, entities=ctx.entities)
    raw = None
    if out.accepted and ctx.store_raw and ctx.kind.raw_table is not None:
        good = checked.good
        raw = good if len(out.accepted_rows) == good.height else good[out.accepted_rows]
    engine_rejected, stored = split_already_stored(out.rejected, checked, ctx)
    s = _assemble(state, ctx, out, out.accepted, _dead_letters(ctx, engine_rejected), raw)
    s.already_stored = stored
    return state, s


def finish(state: Any, ctx: StepContext) -> tuple[Any, StepOutcome]:
    """End of a finite stream: flush the kind's engine and assemble the commit."""
    state, out = ctx.kind.flush(state)
    step_ = _assemble(state, replace(ctx, entities=None), out, 0, out.rejected, None)
    step_.commit.counters.clear()  # flushing accepts nothing new
    step_.commit.dead_letters = out.rejected if out.rejected.height else None
    return state, step_


def alerts_for(tables: Mapping[str, pl.DataFrame], ctx: StepContext) -> pl.DataFrame:
    """The enabled alert rules of ``ctx.kind`` on result ``tables`` (ALERT_SCHEMA), one
    row per hit as the rules report them (no episodes).

    Rules that read history see ``ctx.history`` (the store with every earlier batch);
    without history they are skipped.
    """
    parts = [rule.evaluate(tables, _alert_context(ctx)) for rule in _rules(ctx)]
    return _concat_or_empty(parts, ALERT_SCHEMA)


def judge_for(tables: Mapping[str, pl.DataFrame],
              ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The enabled rules' verdicts for alert episodes: (judged positions, hits).

    A rule with a ``judge`` reports every position it evaluated and all its hits; a rule
    without one reports its alerts, which are then its only judged positions.
    """
    actx = _alert_context(ctx)
    judged, hits = [], []
    for rule in _rules(ctx):
        if rule.judge is not None:
            j, h = rule.judge(tables, actx)
            judged.append(j)
        else:
            h = rule.evaluate(tables, actx)
        hits.append(h)
    return _concat_or_empty(judged, JUDGED_SCHEMA), _concat_or_empty(hits, ALERT_SCHEMA)


def _alert_context(ctx: StepContext) -> AlertContext:
    return AlertContext(getattr(ctx.kind, "settings", None), ctx.groups, ctx.history)


def _rules(ctx: StepContext) -> list[AlertRule]:
    return [rule for rule in ctx.kind.alert_rules
            if ctx.alerts.enabled(rule.name) and (ctx.history is not None or not rule.needs_history)]


def _concat_or_empty(parts: Sequence[pl.DataFrame], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    parts = [conform_frame(p, schema, table="alerts") for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema=schema)
    return parts[0] if len(parts) == 1 else pl.concat(parts)


def raise_alerts(step_: StepOutcome, ctx: StepContext) -> StepOutcome:
    """Evaluate the alert policy on the step's results; the commit then carries them.

    With episodes (the default), the rules' verdicts advance the alert-episode state:
    the commit carries the episodes the batch opened, updated or resolved, one alert per
    notified new episode (its first hit), and -- when the context names a checkpoint --
    the new episode state beside the engine's (loaded from ``ctx.history``, the store,
    which holds every earlier commit when this runs). Without a checkpoint the episode
    state lives for this batch only; a driver that holds the state itself passes it as
    ``ctx.episodes`` (and finds the new one in ``StepOutcome.episode_state``). The kind's
    ``episode_keys`` name the subject and position columns (cells: cell_id and cycle;
    meters: the reading ts as position); hits without them bypass the episodes.
    """
    tables = dict(step_.output.tables)
    raw_table = ctx.kind.raw_table
    if raw_table is not None and step_.raw is not None:
        tables[raw_table.name] = step_.raw  # e.g. spike rules look at the readings
    policy = ctx.alerts.episode_policy(getattr(ctx.kind, "settings", None))
    if policy is None:
        step_.commit.alerts = alerts_for(tables, ctx)
        step_.alerts_raised = True
        return step_
    keys = episode_keys_of(ctx.kind)
    adjust = getattr(ctx.kind, "adjust_episode_policy", None)
    if adjust is not None:
        policy = adjust(policy)
    judged, hits = judge_for(tables, ctx)
    placed = (pl.col(keys.position).is_not_null() & pl.col(keys.ts).is_not_null()
              & pl.col(keys.subject).is_not_null())
    plain, hits = hits.filter(~placed), hits.filter(placed)
    if hits.height == 0 and judged.height == 0:
        step_.commit.alerts = plain
        step_.alerts_raised = True
        return step_
    state = ctx.episodes if ctx.episodes is not None else _load_episode_state(ctx)
    state, update = update_episodes(state, observations(hits, judged, keys=keys), policy)
    # A kind whose position is the ts itself (meter readings) has no cycle column.
    notes = conform_frame(notification_frame(update.notifications, keys), ALERT_SCHEMA,
                          table="alerts")
    step_.commit.alerts = pl.concat([notes, plain])
    step_.commit.alert_episodes = episode_frame(update.episodes, keys)
    step_.episodes_suppressed = update.suppressed
    step_.episode_state = state
    if ctx.checkpoint is not None:
        step_.commit.checkpoints.append(Checkpoint(
            episode_checkpoint(ctx.checkpoint), state.to_bytes(),
            {"episodes_open": state.open_count}))
    step_.alerts_raised = True
    return step_


def episode_keys_of(kind: TelemetryKind) -> EpisodeKeys:
    """The alert-row columns a kind's episodes are tracked by: the kind's own
    ``episode_keys`` (meters: the reading ts as position), else the cells' (the cycle)."""
    keys = getattr(kind, "episode_keys", None)
    return keys if isinstance(keys, EpisodeKeys) else CELL_EPISODE_KEYS


def _load_episode_state(ctx: StepContext) -> EpisodeState:
    load = getattr(ctx.history, "load_checkpoint", None)
    if ctx.checkpoint is None or load is None:
        return EpisodeState()
    cp = load(episode_checkpoint(ctx.checkpoint))
    return EpisodeState() if cp is None else EpisodeState.from_bytes(cp.state)


def step(state: Any, frame: pl.DataFrame, ctx: StepContext) -> tuple[Any, CommitBatch, IngestResult]:
    """One micro-batch: ``(state, commit, result)``; the caller commits ``commit``."""
    state, s = advance(state, frame, ctx)
    raise_alerts(s, ctx)
    return state, s.commit, s.result()


def screen(frame: pl.DataFrame, ctx: StepContext) -> tuple[Validated, CommitBatch | None]:
    """The first part of a step for a driver that hands the engine work on (the API's
    Kafka publish path: the workers step the good rows): validate once; the commit
    holds the dead letters and their count (None when every row is good)."""
    checked = reject_future(ctx.kind.validate(frame, source=ctx.source), ctx)
    dead = _dead_letters(ctx, checked.rejected)
    if dead.height == 0:
        return checked, None
    return checked, CommitBatch(dead_letters=dead, counters={
        ctx.counter or ctx.source: {"accepted": 0, "rejected": dead.height}})


def combine(commits: Iterable[CommitBatch]) -> CommitBatch:
    """Several commits (e.g. one per Kafka partition) as one transaction's batch: frames
    concatenated, checkpoints listed, counters added."""
    commits = list(commits)
    out = CommitBatch()
    for name in ("measurements", "steps", "cycles", "dead_letters", "alerts", "alert_episodes",
                 "cells"):
        setattr(out, name, _concat([getattr(c, name) for c in commits]))
    names = {n for c in commits for n in c.tables}
    for n in sorted(names):
        frame = _concat([c.tables.get(n) for c in commits])
        if frame is not None:
            out.tables[n] = frame
    for c in commits:
        out.checkpoints.extend(c.checkpoints)
        for src, counts in c.counters.items():
            tot = out.counters.setdefault(src, {"accepted": 0, "rejected": 0})
            for k, v in counts.items():
                tot[k] = tot.get(k, 0) + v
    return out


def _concat(frames: Sequence[pl.DataFrame | None]) -> pl.DataFrame | None:
    present = [f for f in frames if f is not None and f.height]
    if not present:
        return None
    return present[0] if len(present) == 1 else pl.concat(present, how="vertical")
