"""Incremental and batch entry points of the meter engine.

``state, out = update(state, readings)`` consumes any batch of canonical readings (many
meters, any order) and returns the local days that closed, snapshots of the open ones
and spike-episode alerts; ``flush`` ends the stream; ``summarize(frame)`` is the batch
form and equals any split of the same input into ``update`` calls followed by ``flush``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .calendar import day_table
from .config import MeterConfig
from .kernel import accepted, close_episodes, reject_flags, run, scan
from .layout import (
    C_FLOOR,
    C_GAP,
    C_MARGIN,
    C_ZERO,
    D_COUNTER,
    D_COVERED,
    D_ENERGY,
    D_FIRST,
    D_LAST,
    D_LEN,
    D_MAX,
    D_MIN,
    D_PEAK_TS,
    D_START,
    D_ZERO_S,
    DI_CNT_N,
    DI_DATE,
    DI_GAPS,
    DI_N,
    DI_SLOT,
    DI_ZRUNS,
    E_END,
    E_PEAK,
    E_PEAK_TS,
    E_START,
    E_THR,
    EI_CLOSED,
    EI_N,
    EI_SLOT,
    F_COUNTER,
    F_COVERED,
    F_DAY_LEN,
    F_DAY_START,
    F_ENERGY,
    F_FIRST_TS,
    F_LAST_TS,
    F_MAX,
    F_MAX_SEEN,
    F_MIN,
    F_PEAK_TS,
    F_PREV_TS,
    F_THR,
    F_ZERO_S,
    I_CNT_N,
    I_DATE,
    I_GAPS,
    I_HAS_DAY,
    I_HAS_PREV,
    I_N,
    I_TOUCHED,
    I_TZ,
    I_ZRUNS,
    NC,
    ND,
    NDI,
)
from .schema import (
    ALERT_SCHEMA,
    DAY_SCHEMA,
    DEAD_LETTER_SCHEMA,
    ReadingLimits,
    validate_meters,
    validate_readings,
)
from .state import PENDING_FIELDS, MeterState

__all__ = [
    "MeterOutput", "MeterSummary", "new_state", "register_meters", "set_thresholds",
    "update", "update_validated", "flush", "summarize", "as_summary", "process_arrays",
]


@dataclass(frozen=True, slots=True)
class MeterOutput:
    """What one :func:`update` produced.

    ``days`` holds closed days and snapshots of open ones (``status``), ``alerts`` the
    spike episodes that opened or ended; a consumer upserts them by (meter_id, date) and
    (meter_id, start_ts), later rows winning. ``rejected`` are the dead letters.
    """

    days: pl.DataFrame
    alerts: pl.DataFrame
    rejected: pl.DataFrame
    accepted: int
    #: 0-based rows of the input batch that were accepted (for the raw archive), sorted.
    accepted_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class MeterSummary:
    days: pl.DataFrame
    alerts: pl.DataFrame
    rejected: pl.DataFrame


def new_state(config: MeterConfig | None = None) -> MeterState:
    return MeterState(config=config or MeterConfig())


def register_meters(state: MeterState, meters: pl.DataFrame) -> pl.DataFrame:
    """Validate meter metadata and record it in the state; returns the canonical frame."""
    df = validate_meters(meters, default_timezone=state.config.default_timezone)
    for r in df.iter_rows(named=True):  # per meter, not per reading
        state.describe(r["meter_id"], house_id=r["house_id"], zip_code=r["zip"],
                       appliance=r["appliance"], timezone=r["timezone"])
    return df


def set_thresholds(state: MeterState, thresholds: pl.DataFrame, column: str = "p97_w") -> None:
    """Install spike thresholds (W) per meter; a null threshold means "none yet"."""
    ids = thresholds.get_column("meter_id").to_list()
    state.add_meters(ids)
    slots = np.fromiter((state.index[m] for m in ids), dtype=np.int64, count=len(ids))
    state.f[slots, F_THR] = thresholds.get_column(column).cast(pl.Float64).fill_null(np.nan).to_numpy()


def update(state: MeterState, readings: pl.DataFrame, *, source: str = "input",
           limits: ReadingLimits | None = None) -> tuple[MeterState, MeterOutput]:
    """Feed one batch of readings (any meters, arrival order).

    Invalid rows, duplicates (a reading at a timestamp this meter already has) and late
    rows (behind the meter's committed readings) are dead letters; nothing is silently
    dropped. Unknown meters get default metadata (see :func:`register_meters`).
    """
    return _update(state, readings, source=source, limits=limits, final=False)


def update_validated(state: MeterState, good: pl.DataFrame, rows: np.ndarray, *,
                     rejected: pl.DataFrame | None = None,
                     source: str = "input") -> tuple[MeterState, MeterOutput]:
    """:func:`update` for readings already validated (:func:`validate_readings`: ``good``
    in READING_SCHEMA, ``rows`` their 0-based input rows), so a driver that validated a
    batch once does not pay for it twice. ``rejected`` joins the output's dead letters."""
    new = None
    if good.height:
        new = {"slot": _slots(state, good.get_column("meter_id")),
               "ts": good.get_column("ts").to_numpy(),
               "p": good.get_column("power_w").to_numpy(),
               "e": good.get_column("energy_wh").fill_null(np.nan).to_numpy(),
               "row": np.asarray(rows, dtype=np.int64)}
    letters = [rejected] if rejected is not None and rejected.height else []
    return process_arrays(state, new, letters, source=source, final=False)


def flush(state: MeterState) -> tuple[MeterState, MeterOutput]:
    """End of stream: process waiting readings, judge open zero runs, close episodes."""
    return _update(state, None, source="input", limits=None, final=True)


def summarize(readings: pl.DataFrame, config: MeterConfig | None = None, *,
              meters: pl.DataFrame | None = None, thresholds: pl.DataFrame | None = None,
              source: str = "input") -> MeterSummary:
    """Batch analysis: every meter day (the last ones open), every alert, the rejected rows."""
    state = new_state(config)
    if meters is not None:
        register_meters(state, meters)
    if thresholds is not None:
        set_thresholds(state, thresholds)
    state, out = _update(state, readings, source=source, limits=None, final=True)
    return as_summary(out)


def as_summary(out: MeterOutput) -> MeterSummary:
    """A final :class:`MeterOutput` of a fresh state as the batch summary (one row per key)."""
    days = out.days.unique(subset=["meter_id", "date"], keep="last", maintain_order=True)
    alerts = out.alerts.unique(subset=["meter_id", "start_ts"], keep="last", maintain_order=True)
    return MeterSummary(days.sort("meter_id", "date"), alerts.sort("meter_id", "start_ts"),
                        out.rejected)


def _cfg_vector(cfg: MeterConfig) -> np.ndarray:
    v = np.zeros(NC)
    v[C_GAP] = cfg.gap_limit_s
    v[C_ZERO] = cfg.zero_run_limit_s
    v[C_MARGIN] = cfg.spike_margin
    v[C_FLOOR] = cfg.spike_floor_w
    return v


def _slots(state: MeterState, ids: pl.Series) -> np.ndarray:
    n = len(ids)
    prev = state._last_ids
    if prev is not None and len(prev[0]) == n and prev[0].equals(ids):
        return prev[1]  # a live feed sends the same meters in the same order every poll
    slots = _lookup_slots(state, ids)
    state._last_ids = (ids, slots)
    return slots


def _lookup_slots(state: MeterState, ids: pl.Series) -> np.ndarray:
    n = len(ids)
    starts = np.flatnonzero(ids.ne_missing(ids.shift(1)).fill_null(True).to_numpy())
    if len(starts) <= n // 4 + 1:
        run_ids = ids.gather(starts).to_list()
        state.add_meters(run_ids)
        idx = state.index
        run_slots = np.fromiter((idx[x] for x in run_ids), dtype=np.int64, count=len(run_ids))
        return np.repeat(run_slots, np.diff(np.append(starts, n)))
    uniq = ids.unique(maintain_order=True)
    state.add_meters(uniq.to_list())
    table = pl.DataFrame({"meter_id": uniq, "__s": [state.index[m] for m in uniq.to_list()]},
                         schema={"meter_id": pl.Utf8, "__s": pl.Int64})
    return (ids.to_frame("meter_id").join(table, on="meter_id", how="left", maintain_order="left")
            .get_column("__s").to_numpy())


def _letters(state: MeterState, arr: dict[str, np.ndarray], reason: str, source: str) -> pl.DataFrame:
    n = len(arr["ts"])
    ids = state.id_series().gather(arr["slot"])
    e = arr["e"]
    payload = [json.dumps({"meter_id": m, "ts": t, "power_w": p,
                           "energy_wh": None if x != x else x})
               for m, t, p, x in zip(ids.to_list(), arr["ts"].tolist(), arr["p"].tolist(),
                                     e.tolist(), strict=True)]
    return pl.DataFrame({
        "source": [source] * n, "row": arr["row"], "meter_id": ids, "ts": arr["ts"],
        "field": ["ts"] * n, "reason": [reason] * n, "payload": payload,
    }, schema=DEAD_LETTER_SCHEMA)


def _take(arr: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in arr.items()}


def _update(state: MeterState, readings: pl.DataFrame | None, *, source: str,
            limits: ReadingLimits | None, final: bool) -> tuple[MeterState, MeterOutput]:
    rejected = [pl.DataFrame(schema=DEAD_LETTER_SCHEMA)]
    new: dict[str, np.ndarray] | None = None
    if readings is not None and readings.height:
        checked = validate_readings(readings, limits=limits, source=source)
        rejected.append(checked.rejected)
        good = checked.good
        if good.height:
            new = {
                "slot": _slots(state, good.get_column("meter_id")),
                "ts": good.get_column("ts").to_numpy(),
                "p": good.get_column("power_w").to_numpy(),
                "e": good.get_column("energy_wh").fill_null(np.nan).to_numpy(),
                "row": checked.rows,
            }
    return process_arrays(state, new, rejected, source=source, final=final)


def process_arrays(state: MeterState, new: dict[str, np.ndarray] | None,
                   rejected: list[pl.DataFrame], *, source: str, final: bool,
                   track_rows: bool = True) -> tuple[MeterState, MeterOutput]:
    """The engine after validation: ``new`` holds valid readings as arrays (``slot`` of
    meters already in the state, ``ts`` s, ``p`` W, ``e`` Wh or NaN, ``row`` 0-based input
    row), any order; none of them is written to. The batch layer calls this directly on
    columns read from Parquet, with ``track_rows=False`` (no ``accepted_rows``)."""
    cfg = state.config
    rejected = rejected or [pl.DataFrame(schema=DEAD_LETTER_SCHEMA)]
    pend = dict(state.pending)
    pend["row"] = np.full(len(pend["ts"]), -1, dtype=np.int64)
    arr = pend
    if new is not None and len(new["ts"]):
        arr = {k: np.concatenate([pend[k], new[k]]) for k in pend} if len(pend["ts"]) else new
    f, iv = state.f, state.iv
    n_slots = state.n_meters
    counts = newest = None
    t_lo = t_hi = 0.0
    if len(arr["ts"]):
        # Rejected rows below only ever narrow these (a duplicate or late reading is
        # never a meter's newest), so tables built from them still cover what is kept.
        ordered, counts, newest, t_lo, t_hi = scan(arr["slot"], arr["ts"], n_slots)
        if not ordered:
            # Stable: among equal (meter, ts) the earliest arrival comes first and wins.
            arr = _take(arr, np.lexsort((arr["ts"], arr["slot"])))
        flags = reject_flags(arr["slot"], arr["ts"], f[:, F_PREV_TS])
        if flags.any():
            dup, late = flags == 1, flags == 2
            if dup.any():
                rejected.append(_letters(state, _take(arr, np.flatnonzero(dup)),
                                         "duplicate: this meter already has a reading at this ts",
                                         source))
            if late.any():
                rejected.append(_letters(state, _take(arr, np.flatnonzero(late)),
                                         "late: older than readings of this meter already processed",
                                         source))
            arr = _take(arr, np.flatnonzero(flags == 0))
    accepted_rows = np.zeros(0, np.int64)
    n_accepted = len(arr["ts"]) - len(state.pending["ts"])
    if len(arr["ts"]) and track_rows:
        accepted_rows, asc = accepted(arr["row"])
        n_accepted = len(accepted_rows)
        if not asc:
            accepted_rows = np.sort(accepted_rows)
    wait = np.zeros(0, dtype=bool)
    present = np.zeros(0, dtype=np.int64)
    if len(arr["ts"]) and counts is not None and newest is not None:
        present = np.flatnonzero(counts)
        f[present, F_MAX_SEEN] = np.maximum(f[present, F_MAX_SEEN], newest[present])
        if cfg.lateness_s > 0 and not final:
            wait = arr["ts"] > f[arr["slot"], F_MAX_SEEN] - cfg.lateness_s
    waiting = bool(wait.any())
    go = _take(arr, np.flatnonzero(~wait)) if waiting else arr
    iv[:n_slots, I_TOUCHED] = 0
    dd = np.zeros((0, ND))
    di = np.zeros((0, NDI), dtype=np.int64)
    ef = np.zeros((0, 5))
    ei = np.zeros((0, 3), dtype=np.int64)
    held = np.zeros(len(go["ts"]), dtype=bool)
    if len(go["ts"]):
        if waiting:
            present = np.flatnonzero(np.bincount(go["slot"], minlength=n_slots))
            t_lo, t_hi = float(go["ts"].min()), float(go["ts"].max())
        bounds, bstart, blen, bfirst = _day_tables(state, present, t_lo, t_hi)
        dd, di, ef, ei, held = run(go["slot"], go["ts"], go["p"], go["e"], bounds, bstart, blen,
                                   bfirst, f, iv, _cfg_vector(cfg), final)
    if final:
        ef2, ei2 = close_episodes(f, iv, n_slots)
        ef, ei = np.concatenate([ef, ef2]), np.concatenate([ei, ei2])
    keep = np.concatenate([np.flatnonzero(wait), np.flatnonzero(~wait)[held]]) if waiting \
        else np.flatnonzero(held)
    keep.sort()
    state.pending = {k: arr[k][keep].astype(t) for k, t in PENDING_FIELDS.items()}
    days = pl.concat([_closed_days(state, dd, di), _open_days(state)], how="vertical")
    out = MeterOutput(days=days, alerts=_alerts(state, ef, ei),
                      rejected=pl.concat(rejected, how="vertical"),
                      accepted=n_accepted, accepted_rows=accepted_rows)
    return state, out


def _day_tables(state: MeterState, present: np.ndarray, t_lo: float, t_hi: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Midnight tables of the zones of the batch's meters (slots ``present``, readings in
    ``[t_lo, t_hi]``), covering every interval."""
    f, iv = state.f, state.iv
    tz_of = iv[present, I_TZ]
    prev = f[present, F_PREV_TS]
    t_lo, t_hi = float(t_lo), float(t_hi)
    n_tz = len(state.timezones)
    bstart = np.zeros(n_tz, dtype=np.int64)
    blen = np.zeros(n_tz, dtype=np.int64)
    bfirst = np.zeros(n_tz, dtype=np.int64)
    parts: list[np.ndarray] = []
    offset = 0
    for k in np.flatnonzero(np.bincount(tz_of, minlength=n_tz)).tolist():
        pk = prev[tz_of == k]
        lo = min(t_lo, float(np.nanmin(pk))) if np.isfinite(pk).any() else t_lo
        table, first = day_table(state.timezones[k], lo, t_hi)
        bstart[k], blen[k], bfirst[k] = offset, len(table), first
        parts.append(table)
        offset += len(table)
    return np.concatenate(parts), bstart, blen, bfirst


def _day_frame(state: MeterState, slots: np.ndarray, date: np.ndarray, status: str,
               start: np.ndarray, length: np.ndarray, first: np.ndarray, last: np.ndarray,
               n: np.ndarray, energy_ws: np.ndarray, covered: np.ndarray, mn: np.ndarray,
               mx: np.ndarray, peak: np.ndarray, gaps: np.ndarray, zruns: np.ndarray,
               zero_s: np.ndarray, counter: np.ndarray, cnt_n: np.ndarray) -> pl.DataFrame:
    ids = state.id_series().gather(slots)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(covered > 0, energy_ws / covered, np.nan)
    df = pl.DataFrame({
        "meter_id": ids,
        "date": pl.Series(date.astype(np.int32)).cast(pl.Date),
        "status": pl.Series([status] * len(slots), dtype=pl.Utf8),
        "day_start_ts": start, "day_length_s": length, "first_ts": first, "last_ts": last,
        "n_readings": n, "energy_wh": energy_ws / 3600.0, "energy_kwh": energy_ws / 3.6e6,
        "covered_s": covered, "coverage": covered / length, "mean_power_w": mean,
        "min_power_w": np.where(np.isfinite(mn), mn, np.nan),
        "max_power_w": np.where(np.isfinite(mx), mx, np.nan), "peak_ts": peak,
        "gap_count": gaps, "zero_run_count": zruns, "zero_run_s": zero_s,
        "counter_wh": np.where(cnt_n > 0, counter, np.nan),
    }, schema=DAY_SCHEMA, nan_to_null=True)
    return df


def _closed_days(state: MeterState, dd: np.ndarray, di: np.ndarray) -> pl.DataFrame:
    return _day_frame(state, di[:, DI_SLOT], di[:, DI_DATE], "closed", dd[:, D_START],
                      dd[:, D_LEN], dd[:, D_FIRST], dd[:, D_LAST], di[:, DI_N],
                      dd[:, D_ENERGY], dd[:, D_COVERED], dd[:, D_MIN], dd[:, D_MAX],
                      dd[:, D_PEAK_TS], di[:, DI_GAPS], di[:, DI_ZRUNS], dd[:, D_ZERO_S],
                      dd[:, D_COUNTER], di[:, DI_CNT_N])


def _open_days(state: MeterState) -> pl.DataFrame:
    n = state.n_meters
    f, iv = state.f[:n], state.iv[:n]
    s = np.flatnonzero((iv[:, I_TOUCHED] == 1) & (iv[:, I_HAS_DAY] == 1) & (iv[:, I_HAS_PREV] == 1))
    g = f[s]
    h = iv[s]
    return _day_frame(state, s, h[:, I_DATE], "open", g[:, F_DAY_START], g[:, F_DAY_LEN],
                      g[:, F_FIRST_TS], g[:, F_LAST_TS], h[:, I_N], g[:, F_ENERGY],
                      g[:, F_COVERED], g[:, F_MIN], g[:, F_MAX], g[:, F_PEAK_TS],
                      h[:, I_GAPS], h[:, I_ZRUNS], g[:, F_ZERO_S], g[:, F_COUNTER],
                      h[:, I_CNT_N])


def _alerts(state: MeterState, ef: np.ndarray, ei: np.ndarray) -> pl.DataFrame:
    s = ei[:, EI_SLOT]
    ids = state.id_series().gather(s)
    houses = pl.Series("house_id", state.houses, dtype=pl.Utf8).gather(s)
    zips = pl.Series("zip", state.zips, dtype=pl.Utf8).gather(s)
    closed = ei[:, EI_CLOSED] == 1
    return pl.DataFrame({
        "meter_id": ids, "house_id": houses, "zip": zips, "start_ts": ef[:, E_START],
        "status": pl.Series(np.where(closed, "closed", "open").tolist(), dtype=pl.Utf8),
        "end_ts": ef[:, E_END], "duration_s": ef[:, E_END] - ef[:, E_START],
        "peak_w": ef[:, E_PEAK], "peak_ts": ef[:, E_PEAK_TS], "threshold_w": ef[:, E_THR],
        "ratio": ef[:, E_PEAK] / ef[:, E_THR], "n_readings": ei[:, EI_N],
    }, schema=ALERT_SCHEMA)
