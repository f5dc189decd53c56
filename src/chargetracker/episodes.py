"""Alert episodes (pure): one episode per (subject, rule) for as long as a condition lasts.

An alert rule judges a subject (a cell, a meter, a vehicle) at a *position* (a cycle
number, a reading's ts, a day): the condition holds there (a *hit*, an alert row) or it
does not (a *clean* observation). Raising one alert per hit floods the operator (a cell
that stays an outlier for eight cycles raised eight warnings); an episode instead

* **opens** at the first hit of a (subject, rule) with no episode open,
* is **updated** by every later hit (last seen position and ts, occurrences counted once
  per position, the worst value: farthest from its threshold),
* **resolves** at the ``resolve_after``-th consecutive clean position after its last hit,
* yields **one notification** when it opens (an alert row, the episode's first hit) and,
  optionally, one when it resolves.

Identity is deterministic from the data: (subject, rule, start ts), the ts of the first
hit; the notification is that hit's alert row. A store that upserts episodes and inserts
alerts unless present therefore holds the same rows after a replay of the same data, and a
restart that reloads the :class:`EpisodeState` checkpointed with the rest of a commit
neither repeats a notification nor loses an episode.

Positions are judged in order per (subject, rule): an observation before the last
position judged is stale and ignored (a late re-evaluation cannot reopen an old episode);
at the last position a hit still counts (e.g. a group outlier confirmed once more cells
closed that cycle), a clean verdict does not undo one.

New episodes are rate-limited per rule: at most ``max_new_per_window`` notified per
fixed window of data time (``window_s``, default one hour, by the episode's start ts, so
replays decide alike); the rest are *suppressed*: kept as episodes with ``notified``
false and counted, never notified.

The module is general: :class:`EpisodeKeys` names the subject, rule, position and ts
columns of the alert rows (cells: ``cell_id``, ``rule``, ``cycle``, ``ts``; meters would
use ``meter_id`` and the reading's ts as position). Vectorized with Polars: no Python loop
per observation.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

import polars as pl

from .errors import ConfigError, SchemaError

__all__ = [
    "ALERT_EPISODE_KEY",
    "ALERT_EPISODE_SCHEMA",
    "EPISODE_SCHEMA",
    "EpisodeKeys",
    "EpisodePolicy",
    "EpisodeState",
    "EpisodeUpdate",
    "episode_frame",
    "notification_frame",
    "observations",
    "update_episodes",
]

#: Byte form of :class:`EpisodeState`: magic, version (bumped when the layout changes).
STATE_MAGIC = b"CTEP"
STATE_VERSION = 1

_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_RANK_SEVERITY = {v: k for k, v in _SEVERITY_RANK.items()}

#: Episode rows in canonical names (:func:`episode_frame` renames them for a subject kind).
#: Positions are float64 here (cycle numbers are exact in it). ``state`` is open | resolved;
#: ``worst_*`` describe the occurrence farthest from its threshold; ``notified`` is false for
#: an episode the rate limit suppressed.
EPISODE_SCHEMA: dict[str, pl.DataType] = {
    "subject": pl.Utf8(),
    "rule": pl.Utf8(),
    "start_ts": pl.Float64(),
    "start_pos": pl.Float64(),
    "group": pl.Utf8(),
    "severity": pl.Utf8(),
    "state": pl.Utf8(),
    "last_ts": pl.Float64(),
    "last_pos": pl.Float64(),
    "resolved_ts": pl.Float64(),
    "resolved_pos": pl.Float64(),
    "occurrences": pl.Int64(),
    "worst_value": pl.Float64(),
    "threshold": pl.Float64(),
    "message": pl.Utf8(),
    "notified": pl.Boolean(),
}

#: Episodes of cells as stored (``alert_episodes``): EPISODE_SCHEMA with the subject as
#: ``cell_id`` and cycle numbers as positions; keyed by (cell_id, rule, start_ts).
ALERT_EPISODE_SCHEMA: dict[str, pl.DataType] = {
    {"subject": "cell_id"}.get(c, c.replace("_pos", "_cycle")): (pl.Int64() if c.endswith("_pos") else t)
    for c, t in EPISODE_SCHEMA.items()
}
ALERT_EPISODE_KEY: tuple[str, ...] = ("cell_id", "rule", "start_ts")

#: Per (subject, rule): the last position judged, the clean run since the last hit and,
#: while an episode is open, its fields. A resolved episode leaves a row with ``open``
#: false (the position guard against stale re-evaluations).
_STATE_SCHEMA: dict[str, pl.DataType] = {
    "subject": pl.Utf8(), "rule": pl.Utf8(), "judged_pos": pl.Float64(), "clean": pl.Int64(),
    "open": pl.Boolean(), "start_ts": pl.Float64(), "start_pos": pl.Float64(),
    "group": pl.Utf8(), "sev": pl.Int64(), "last_ts": pl.Float64(), "last_pos": pl.Float64(),
    "occurrences": pl.Int64(), "worst_value": pl.Float64(), "threshold": pl.Float64(),
    "dist": pl.Float64(), "message": pl.Utf8(), "notified": pl.Boolean(),
}
#: Per rule: the newest rate window seen, episodes notified and suppressed in it, and
#: every suppression so far.
_RATE_SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.Utf8(), "window": pl.Int64(), "notified": pl.Int64(), "suppressed": pl.Int64(),
    "suppressed_total": pl.Int64(),
}
_OBS_SCHEMA: dict[str, pl.DataType] = {
    "subject": pl.Utf8(), "rule": pl.Utf8(), "pos": pl.Float64(), "ts": pl.Float64(),
    "hit": pl.Boolean(), "value": pl.Float64(), "threshold": pl.Float64(), "group": pl.Utf8(),
    "severity": pl.Utf8(), "message": pl.Utf8(),
}
_G = ["subject", "rule"]
_INT64 = pl.Int64()


@dataclass(frozen=True, slots=True)
class EpisodeKeys:
    """Column names of the alert rows: the subject, the rule, the position (orders the
    observations of a subject: cycle, ts, day number) and the ts (s since epoch)."""

    subject: str = "cell_id"
    rule: str = "rule"
    position: str = "cycle"
    ts: str = "ts"


@dataclass(frozen=True, slots=True)
class EpisodePolicy:
    """How episodes resolve and how many notifications a rule may send.

    ``resolve_after``: consecutive clean positions (cycles for cells) that resolve an
    episode. ``max_new_per_window``: new episodes notified per rule per ``window_s`` of
    data time (s; None: no limit). ``notify_resolved``: also notify when an episode
    resolves (an ``info`` alert ``<rule>_resolved``).
    """

    resolve_after: int = 3
    max_new_per_window: int | None = 20
    window_s: float = 3600.0
    notify_resolved: bool = False

    def __post_init__(self) -> None:
        if int(self.resolve_after) < 1:
            raise ConfigError("alerts: episodes resolve after at least 1 clean position")
        if self.max_new_per_window is not None and int(self.max_new_per_window) < 0:
            raise ConfigError("alerts: the episode rate limit must be >= 0 (or none)")
        if not float(self.window_s) > 0:
            raise ConfigError("alerts: the episode rate window must be > 0 s")


@dataclass(slots=True)
class EpisodeState:
    """What the episode logic carries between batches (small: one row per (subject, rule)
    that ever had an episode, one per rule for the rate limit); bytes for checkpoints."""

    tracks: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_STATE_SCHEMA))
    rates: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_RATE_SCHEMA))

    @property
    def open_count(self) -> int:
        return int(self.tracks.get_column("open").sum()) if self.tracks.height else 0

    def suppressed_total(self) -> dict[str, int]:
        """Rule -> episodes suppressed by the rate limit so far."""
        return dict(zip(self.rates.get_column("rule").to_list(),
                        self.rates.get_column("suppressed_total").to_list(), strict=True))

    def to_bytes(self) -> bytes:
        parts = []
        for frame in (self.tracks, self.rates):
            buf = io.BytesIO()
            frame.write_ipc(buf, compression="uncompressed")
            parts.append(buf.getvalue())
        head = STATE_MAGIC + struct.pack("<HQQ", STATE_VERSION, len(parts[0]), len(parts[1]))
        return head + parts[0] + parts[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> EpisodeState:
        size = len(STATE_MAGIC) + struct.calcsize("<HQQ")
        if len(data) < size or data[:len(STATE_MAGIC)] != STATE_MAGIC:
            raise SchemaError("not an alert-episode state", source="checkpoint")
        version, n0, n1 = struct.unpack("<HQQ", data[len(STATE_MAGIC):size])
        if version != STATE_VERSION:
            raise SchemaError(f"alert-episode state version {version}, this ChargeTracker "
                              f"reads {STATE_VERSION}", source="checkpoint")
        if len(data) != size + n0 + n1:
            raise SchemaError("truncated alert-episode state", source="checkpoint")
        tracks = pl.read_ipc(io.BytesIO(data[size:size + n0]))
        rates = pl.read_ipc(io.BytesIO(data[size + n0:]))
        return cls(tracks.cast(_STATE_SCHEMA), rates.cast(_RATE_SCHEMA))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class EpisodeUpdate:
    """One batch's result: ``episodes`` (EPISODE_SCHEMA) opened, updated or resolved by
    it; ``notifications`` (alert rows in the keys' names: one per notified new episode,
    plus resolutions when asked); ``suppressed``: new episodes the rate limit held back."""

    episodes: pl.DataFrame
    notifications: pl.DataFrame
    suppressed: int = 0


def observations(alerts: pl.DataFrame, judged: pl.DataFrame | None = None, *,
                 keys: EpisodeKeys = EpisodeKeys()) -> pl.DataFrame:
    """Hits and clean verdicts in one frame for :func:`update_episodes`.

    ``alerts`` are the hits (alert rows: the keys' columns plus value, threshold, group,
    severity, message when present); ``judged`` names every (subject, rule, position, ts)
    a rule evaluated, hit or not (the clean ones resolve episodes).
    """
    parts = [_canonical(alerts, keys, hit=True)]
    if judged is not None and judged.height:
        parts.append(_canonical(judged, keys, hit=False))
    return pl.concat(parts, how="vertical")


def _canonical(frame: pl.DataFrame, keys: EpisodeKeys, *, hit: bool) -> pl.DataFrame:
    missing = [c for c in (keys.subject, keys.rule, keys.position, keys.ts) if c not in frame.columns]
    if missing:
        raise SchemaError(f"alert rows lack column(s) {missing}", field=missing[0], source="alerts")
    names = {"subject": keys.subject, "rule": keys.rule, "pos": keys.position, "ts": keys.ts}
    cols = []
    for name, dtype in _OBS_SCHEMA.items():
        src = names.get(name, name)
        if name == "hit":
            cols.append(pl.lit(hit, pl.Boolean).alias("hit"))
        elif src in frame.columns and not (not hit and name in ("value", "threshold", "message")):
            cols.append(pl.col(src).cast(dtype).alias(name))
        else:
            cols.append(pl.lit(None, dtype).alias(name))
    return frame.select(cols)


def update_episodes(state: EpisodeState, obs: pl.DataFrame,
                    policy: EpisodePolicy = EpisodePolicy()) -> tuple[EpisodeState, EpisodeUpdate]:
    """Advance ``state`` by one batch of observations (:func:`observations`).

    Returns the new state (``state`` is not modified) and the batch's episodes and
    notifications. Feeding the same observations in any split into batches gives the
    same episodes and notifications as one batch.
    """
    n_resolve = int(policy.resolve_after)
    obs = obs.filter(pl.col("pos").is_not_null() & pl.col("rule").is_not_null()
                     & pl.col("ts").is_not_null())
    if obs.height == 0:
        return state, EpisodeUpdate(pl.DataFrame(schema=EPISODE_SCHEMA), _empty_notes())
    df = _per_position(obs)
    tracks = state.tracks
    df = df.join(tracks, on=_G, how="left", suffix="_s")
    # Stale verdicts (before the last position judged) are ignored; at that position a
    # hit still counts, a clean verdict does not undo one.
    judged = pl.col("judged_pos")
    df = df.filter(judged.is_null() | (pl.col("pos") > judged)
                   | ((pl.col("pos") == judged) & pl.col("hit")))
    if df.height == 0:
        return state, EpisodeUpdate(pl.DataFrame(schema=EPISODE_SCHEMA), _empty_notes())
    carried = pl.col("open").fill_null(False)
    # A hit at the position the state judged clean replaces that clean verdict.
    replaced = (pl.col("hit") & (pl.col("pos") == judged) & carried
                & (pl.col("last_pos") != pl.col("pos"))).any().over(_G).cast(pl.Int64)
    df = df.sort(["subject", "rule", "pos"]).with_columns(
        idx=pl.int_range(pl.len()).over(_G),
        c0=pl.col("clean").fill_null(0) - replaced,
        carried=carried,
    ).with_columns(
        prev_hit=pl.when(pl.col("hit")).then(pl.col("idx")).otherwise(None)
        .shift(1).forward_fill().over(_G),
    )
    prev, idx, c0 = pl.col("prev_hit"), pl.col("idx"), pl.col("c0")
    before = (pl.when(prev.is_not_null()).then(idx - prev - 1)
              .when(pl.col("carried")).then(c0 + idx).otherwise(n_resolve))
    run = (pl.when(prev.is_not_null()).then(idx - prev)
           .when(pl.col("carried")).then(c0 + idx + 1).otherwise(None))
    df = df.with_columns(
        new=pl.col("hit") & (before >= n_resolve),
        run=pl.when(pl.col("hit")).then(0).otherwise(run),
        # A hit at the position already counted for the open episode is no new occurrence.
        occ=pl.col("hit") & ~(carried & (pl.col("pos") == pl.col("last_pos")).fill_null(False)),
    ).with_columns(ep=pl.col("new").cast(pl.Int64).cum_sum().over(_G))
    df = df.with_columns(resolves=~pl.col("hit") & (pl.col("run") >= n_resolve).fill_null(False))
    live = df.filter((pl.col("ep") > 0) | pl.col("carried"))

    eg = [*_G, "ep"]
    hits = live.filter(pl.col("hit"))
    agg_hits = hits.group_by(eg).agg(
        b_start_ts=pl.col("ts").first(), b_start_pos=pl.col("pos").first(),
        b_group=pl.col("group").drop_nulls().first(),
        b_first_value=pl.col("value").first(), b_first_threshold=pl.col("threshold").first(),
        b_first_message=pl.col("message").first(), b_first_sev=pl.col("sev").first(),
        b_sev=pl.col("sev").max(),
        b_last_ts=pl.col("ts").last(), b_last_pos=pl.col("pos").last(),
        b_occ=pl.col("occ").sum().cast(pl.Int64),
        b_worst_value=_worst("value"),
        b_threshold=_worst("threshold"),
        b_message=_worst("message"),
        b_dist=_worst("dist"),
    )
    resolved = live.filter(pl.col("resolves")).group_by(eg).agg(
        resolved_ts=pl.col("ts").first(), resolved_pos=pl.col("pos").first())
    touched = live.group_by(eg).agg(
        judged_max=pl.col("pos").max(), trailing=pl.col("run").last(),
        carried=pl.col("carried").first())
    ep = (touched.join(agg_hits, on=eg, how="left").join(resolved, on=eg, how="left")
          .join(tracks.filter(pl.col("open")), on=_G, how="left"))
    is_carried = (pl.col("ep") == 0)
    s_worse = (pl.col("b_dist").is_null()
               | (pl.col("dist").is_not_null() & (pl.col("dist") >= pl.col("b_dist"))))
    keep_state = is_carried & s_worse
    ep = ep.with_columns(
        start_ts=pl.when(is_carried).then(pl.col("start_ts")).otherwise(pl.col("b_start_ts")),
        start_pos=pl.when(is_carried).then(pl.col("start_pos")).otherwise(pl.col("b_start_pos")),
        group=pl.when(is_carried).then(pl.col("group")).otherwise(pl.col("b_group")),
        sev=pl.max_horizontal(pl.when(is_carried).then(pl.col("sev")), pl.col("b_sev")),
        last_ts=pl.coalesce(pl.col("b_last_ts"), pl.col("last_ts")),
        last_pos=pl.coalesce(pl.col("b_last_pos"), pl.col("last_pos")),
        occurrences=(pl.when(is_carried).then(pl.col("occurrences")).otherwise(0)
                     + pl.col("b_occ").fill_null(0)),
        worst_value=pl.when(keep_state).then(pl.col("worst_value")).otherwise(pl.col("b_worst_value")),
        threshold=pl.when(keep_state).then(pl.col("threshold")).otherwise(pl.col("b_threshold")),
        message=pl.when(keep_state).then(pl.col("message")).otherwise(pl.col("b_message")),
        dist=pl.when(keep_state).then(pl.col("dist")).otherwise(pl.col("b_dist")),
        is_new=~is_carried,
        changed=~is_carried | pl.col("b_occ").fill_null(0).gt(0) | pl.col("resolved_ts").is_not_null()
        | (is_carried & ~keep_state),
    )
    ep, rates, suppressed = _rate_limit(ep, state.rates, policy)

    # The new state: per (subject, rule) its latest episode, open or resolved.
    latest = ep.sort("ep").group_by(_G).agg(pl.all().last())
    new_tracks = latest.select(
        "subject", "rule", pl.col("judged_max").alias("judged_pos"),
        pl.when(pl.col("resolved_ts").is_null()).then(pl.col("trailing").fill_null(0))
        .otherwise(0).cast(pl.Int64).alias("clean"),
        pl.col("resolved_ts").is_null().alias("open"),
        *[pl.when(pl.col("resolved_ts").is_null()).then(pl.col(c)).otherwise(None).alias(c)
          for c in ("start_ts", "start_pos", "group", "sev", "last_ts", "last_pos", "occurrences",
                    "worst_value", "threshold", "dist", "message", "notified")],
    ).cast(_STATE_SCHEMA)  # type: ignore[arg-type]
    # Subjects whose verdicts were all stale or clean without an episode keep their row.
    judged_only = df.group_by(_G).agg(judged_max=pl.col("pos").max()).join(
        latest.select(_G), on=_G, how="anti")
    kept = tracks.join(new_tracks.select(_G), on=_G, how="anti")
    # (a resolved episode's row: its position guard moves on; a subject judged without
    # any episode, now or before, needs no row.)
    bumped = kept.join(judged_only, on=_G, how="left").with_columns(
        judged_pos=pl.max_horizontal("judged_pos", "judged_max")).select(list(_STATE_SCHEMA))
    tracks_out = pl.concat([bumped, new_tracks], how="vertical").sort(_G)

    out = ep.filter(pl.col("changed")).select(
        "subject", "rule", "start_ts", "start_pos", "group",
        pl.col("sev").replace_strict(_RANK_SEVERITY, default="warning", return_dtype=pl.Utf8)
        .alias("severity"),
        pl.when(pl.col("resolved_ts").is_null()).then(pl.lit("open")).otherwise(pl.lit("resolved"))
        .alias("state"),
        "last_ts", "last_pos", "resolved_ts", "resolved_pos", "occurrences", "worst_value",
        "threshold", "message", "notified",
    ).cast(EPISODE_SCHEMA).sort(["start_ts", "subject", "rule"])  # type: ignore[arg-type]
    notes = _notifications(ep, policy)
    return EpisodeState(tracks_out, rates), EpisodeUpdate(out, notes, suppressed)


def _worst(column: str) -> pl.Expr:
    """``column`` of the occurrence farthest from its threshold."""
    return pl.col(column).sort_by("dist", descending=True, nulls_last=True).first()


def _per_position(obs: pl.DataFrame) -> pl.DataFrame:
    """One row per (subject, rule, position): a hit if any verdict there is, carrying
    the worst hit's value, threshold and message and the highest severity."""
    value = pl.col("value").fill_nan(None)
    dist = (pl.when(pl.col("threshold").is_not_null() & pl.col("threshold").is_finite())
            .then((value - pl.col("threshold")).abs()).otherwise(value.abs()))
    sev = pl.col("severity").replace_strict(_SEVERITY_RANK, default=1, return_dtype=pl.Int64)
    obs = obs.with_columns(value=value, dist=dist, sev=pl.when(pl.col("hit")).then(sev))
    return (obs.sort(["subject", "rule", "pos", "hit", "dist"],
                     descending=[False, False, False, True, True], nulls_last=True)
            .group_by([*_G, "pos"], maintain_order=True)
            .agg(pl.col("hit").any(), pl.col("ts").min(),
                 pl.col("value", "threshold", "message", "dist").first(),
                 pl.col("group").drop_nulls().first(), pl.col("sev").max()))


def _rate_limit(ep: pl.DataFrame, rates: pl.DataFrame,
                policy: EpisodePolicy) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Decide ``notified`` for the new episodes (per rule, per window of start ts) and
    the rate state after them."""
    limit = policy.max_new_per_window
    window = (pl.col("start_ts") / float(policy.window_s)).floor().cast(pl.Int64)
    new = (ep.filter(pl.col("is_new")).with_columns(window=window)
           .sort(["rule", "start_ts", "subject"])
           .join(rates.select("rule", pl.col("window").alias("r_window"),
                              pl.col("notified").alias("r_notified")), on="rule", how="left"))
    prev = pl.when(pl.col("r_window") == pl.col("window")).then(pl.col("r_notified")).otherwise(0)
    rank = pl.int_range(1, pl.len() + 1).over(["rule", "window"])
    if limit is None:
        new = new.with_columns(notified_new=pl.lit(True))
    else:
        new = new.with_columns(notified_new=(prev.fill_null(0) + rank) <= int(limit))
    ep = ep.join(new.select(*_G, "ep", "notified_new"), on=[*_G, "ep"], how="left").with_columns(
        notified=pl.when(pl.col("is_new")).then(pl.col("notified_new")).otherwise(pl.col("notified")))
    suppressed = int((~new.get_column("notified_new")).sum()) if new.height else 0
    if new.height == 0:
        return ep, rates, 0
    per = new.group_by("rule", "window").agg(
        n=pl.col("notified_new").sum().cast(pl.Int64),
        s=(~pl.col("notified_new")).sum().cast(pl.Int64))
    last = per.sort("window").group_by("rule").agg(pl.all().last())
    total = per.group_by("rule").agg(s_all=pl.col("s").sum())
    merged = (last.join(total, on="rule").join(rates, on="rule", how="full", coalesce=True)
              .with_columns(
                  same=pl.col("window") == pl.col("window_right"),
                  newer=pl.col("window_right").is_null()
                  | (pl.col("window").is_not_null() & (pl.col("window") > pl.col("window_right")))))
    out = merged.select(
        "rule",
        pl.when(pl.col("newer")).then(pl.col("window")).otherwise(pl.col("window_right")).alias("window"),
        pl.when(pl.col("same")).then(pl.col("notified") + pl.col("n"))
        .when(pl.col("newer")).then(pl.col("n")).otherwise(pl.col("notified")).alias("notified"),
        pl.when(pl.col("same")).then(pl.col("suppressed") + pl.col("s"))
        .when(pl.col("newer")).then(pl.col("s")).otherwise(pl.col("suppressed")).alias("suppressed"),
        (pl.col("suppressed_total").fill_null(0) + pl.col("s_all").fill_null(0)).alias("suppressed_total"),
    ).cast(_RATE_SCHEMA).sort("rule")  # type: ignore[arg-type]
    return ep, out, suppressed


def _notifications(ep: pl.DataFrame, policy: EpisodePolicy) -> pl.DataFrame:
    sev = pl.col("b_first_sev").replace_strict(_RANK_SEVERITY, default="warning",
                                               return_dtype=pl.Utf8)
    opened = ep.filter(pl.col("is_new") & pl.col("notified")).select(
        pl.col("start_ts").alias("ts"), "subject", "group", "rule", sev.alias("severity"),
        pl.col("b_first_value").alias("value"), pl.col("b_first_threshold").alias("threshold"),
        pl.col("start_pos").alias("pos"), pl.col("b_first_message").alias("message"))
    parts = [opened]
    if policy.notify_resolved:
        done = ep.filter(pl.col("notified") & pl.col("resolved_ts").is_not_null()).select(
            pl.col("resolved_ts").alias("ts"), "subject", "group",
            (pl.col("rule") + "_resolved").alias("rule"), pl.lit("info").alias("severity"),
            pl.col("worst_value").alias("value"), "threshold", pl.col("resolved_pos").alias("pos"),
            pl.format("{} cleared after {} clean position(s): episode from {} to {}, {} "
                      "occurrence(s), worst value {}", "rule", pl.lit(int(policy.resolve_after)),
                      pl.col("start_pos").cast(pl.Int64), pl.col("last_pos").cast(pl.Int64),
                      "occurrences", pl.col("worst_value").round_sig_figs(4)).alias("message"))
        parts.append(done)
    return pl.concat([p.cast(_NOTE_SCHEMA) for p in parts], how="vertical").sort(  # type: ignore[arg-type]
        ["ts", "subject", "rule"])


_NOTE_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(), "subject": pl.Utf8(), "group": pl.Utf8(), "rule": pl.Utf8(),
    "severity": pl.Utf8(), "value": pl.Float64(), "threshold": pl.Float64(), "pos": pl.Float64(),
    "message": pl.Utf8(),
}


def _empty_notes() -> pl.DataFrame:
    return pl.DataFrame(schema=_NOTE_SCHEMA)


def episode_frame(episodes: pl.DataFrame, keys: EpisodeKeys = EpisodeKeys(), *,
                  position_dtype: pl.DataType = _INT64) -> pl.DataFrame:
    """Episodes in a subject kind's names: ``subject`` -> ``keys.subject`` and
    ``*_pos`` -> ``*_<keys.position>`` cast to ``position_dtype`` (cells: start_cycle,
    last_cycle, resolved_cycle). Where the position is the ts itself (readings), the
    ``*_pos`` columns repeat ``*_ts`` and are dropped."""
    pos_cols = [f"{p}_pos" for p in ("start", "last", "resolved")]
    if keys.position == keys.ts:
        return episodes.drop(pos_cols).rename({"subject": keys.subject})
    renames = {"subject": keys.subject, **{c: c.replace("_pos", f"_{keys.position}") for c in pos_cols}}
    return episodes.with_columns(pl.col(c).cast(position_dtype) for c in pos_cols).rename(renames)


def notification_frame(notes: pl.DataFrame, keys: EpisodeKeys = EpisodeKeys(), *,
                       position_dtype: pl.DataType = _INT64) -> pl.DataFrame:
    """Notifications in a subject kind's alert-row names (``subject`` -> ``keys.subject``,
    ``pos`` -> ``keys.position``, ``ts`` -> ``keys.ts``)."""
    if keys.position == keys.ts:
        return notes.drop("pos").rename({"subject": keys.subject, "ts": keys.ts})
    return notes.with_columns(pl.col("pos").cast(position_dtype)).rename(
        {"subject": keys.subject, "pos": keys.position, "ts": keys.ts})
