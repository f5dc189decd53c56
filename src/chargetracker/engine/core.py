"""Incremental and batch entry points of the engine.

``state, out = update(state, batch)`` consumes any batch of canonical measurements
(many cells, any order) and returns the steps and cycles that closed plus snapshots of
the open ones; ``flush`` ends the stream; ``summarize(frame)`` is the batch form and
equals any split of the same input into ``update`` calls followed by ``flush``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ..config import EngineConfig
from ..schema import CYCLE_SCHEMA, DEAD_LETTER_SCHEMA, STEP_SCHEMA, Limits, validate
from . import kernel as K
from .layout import (
    A_CHG_AS,
    A_CHG_WS,
    A_DIS_AS,
    A_DIS_WS,
    A_DT,
    A_END,
    A_ENDV,
    A_GAP_AS,
    A_GAP_S,
    A_GAPS,
    A_I2DT,
    A_IDT,
    A_IR,
    A_MAXI,
    A_MAXT,
    A_MAXV,
    A_MINI,
    A_MINT,
    A_MINV,
    A_N,
    A_NT,
    A_START,
    A_STARTV,
    A_STEPS,
    A_SUMT,
    A_V2DT,
    A_VDT,
    F_EPS,
    F_MAX_TS,
    F_NOMINAL_AH,
    F_REF_DIS,
    F_THROUGHPUT,
    I_CYC_PARTIAL,
    I_CYCLE_NO,
    I_LAST_ACTIVE,
    I_N_CYCLES,
    I_PREV_SLAB,
    I_SEEN_OPP,
    I_SEEN_START,
    I_STEP_CYCLE,
    I_STEP_KIND,
    I_STEP_LABEL,
    I_STEP_NO,
    KIND_NAMES,
    NA,
    NULL_LABEL,
    STATUS_CLOSED,
    STATUS_NAMES,
    STATUS_OPEN,
    STATUS_PARTIAL,
)
from .state import PENDING_FIELDS, EngineState

__all__ = ["EngineOutput", "Summary", "new_state", "update", "flush", "summarize"]


@dataclass(frozen=True, slots=True)
class EngineOutput:
    """What one :func:`update` produced.

    ``steps``/``cycles`` hold closed records and snapshots of open ones (``status``);
    a consumer upserts them by (cell_id, step) / (cell_id, cycle), later rows winning.
    ``accepted`` is the number of samples taken in; ``rejected`` the dead letters.
    """

    steps: pl.DataFrame
    cycles: pl.DataFrame
    rejected: pl.DataFrame
    accepted: int
    #: 0-based rows of the input batch that were accepted (for raw storage), sorted.
    accepted_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def counts(self) -> dict[str, int]:
        return {"accepted": self.accepted, "rejected": self.rejected.height}


@dataclass(frozen=True, slots=True)
class Summary:
    """Batch result: every step and cycle (the last ones open) and the rejected rows."""

    steps: pl.DataFrame
    cycles: pl.DataFrame
    rejected: pl.DataFrame


def new_state(config: EngineConfig | None = None) -> EngineState:
    """Empty engine state for a configuration."""
    return EngineState(config=config or EngineConfig())


def _cfg_vector(cfg: EngineConfig) -> np.ndarray:
    v = np.zeros(K.NC)
    v[K.C_MIN_STEP] = cfg.min_step_s
    v[K.C_HYST] = cfg.hysteresis
    v[K.C_GAP_FIXED] = np.nan if cfg.gap_limit_s is None else cfg.gap_limit_s
    v[K.C_GAP_FACTOR] = cfg.gap_factor
    v[K.C_GAP_MIN] = cfg.gap_min_s
    v[K.C_DT_K] = cfg.dt_ref_intervals
    v[K.C_CYCLE_START] = 1.0 if cfg.cycle_start == "charge" else -1.0
    v[K.C_USE_CYC] = 1.0 if cfg.use_cycle_labels else 0.0
    v[K.C_USE_STEP] = 1.0 if cfg.use_step_labels else 0.0
    v[K.C_REF_CYCLES] = cfg.retention_ref_cycles
    v[K.C_IR_MIN_DEPS] = cfg.resistance_min_delta_epsilons
    v[K.C_IR_MAX_DT] = cfg.resistance_max_dt_s
    v[K.C_EPS_FRAC] = cfg.epsilon_current_fraction
    v[K.C_EPS_FLOOR] = cfg.epsilon_floor_a
    v[K.C_MIN_STEP_Q] = cfg.min_step_capacity_fraction
    v[K.C_START_ST] = cfg.partial_start_step_s
    v[K.C_MAX_FIRST_CE] = cfg.max_first_cycle_ce
    return v


def _nominal_map(cells: pl.DataFrame | None) -> dict[str, float]:
    if cells is None or "nominal_capacity_ah" not in cells.columns or cells.height == 0:
        return {}
    sub = cells.select("cell_id", pl.col("nominal_capacity_ah").cast(pl.Float64)).drop_nulls()
    return dict(zip(sub.get_column("cell_id").to_list(), sub.get_column("nominal_capacity_ah").to_list(), strict=True))


def _assign_slots(state: EngineState, ids: pl.Series, nominal: dict[str, float]) -> np.ndarray:
    """Slot of each row's cell, allocating slots for new cells in order of appearance."""
    n = len(ids)
    prev = state._last_ids
    if prev is not None and len(prev[0]) == n and prev[0].equals(ids):
        # A live fleet sends the same cells in the same order every poll.
        return prev[1]
    slots = _lookup_slots(state, ids, nominal)
    state._last_ids = (ids, slots)
    return slots


def _lookup_slots(state: EngineState, ids: pl.Series, nominal: dict[str, float]) -> np.ndarray:
    n = len(ids)
    starts = np.flatnonzero(ids.ne_missing(ids.shift(1)).fill_null(True).to_numpy())
    if len(starts) <= n // 4 + 1:
        # Rows come grouped by cell (files, batch input): map each run once.
        run_ids = ids.gather(starts).to_list()
        state.add_cells(list(dict.fromkeys(run_ids)), nominal)
        index = state.index
        run_slots = np.fromiter((index[x] for x in run_ids), dtype=np.int64, count=len(run_ids))
        return np.repeat(run_slots, np.diff(np.append(starts, n)))
    frame = ids.to_frame("cell_id")
    joined = frame.join(state.slot_frame(), on="cell_id", how="left", maintain_order="left")
    slot = joined.get_column("__slot")
    if slot.null_count():
        new_ids = frame.filter(slot.is_null()).get_column("cell_id").unique(maintain_order=True).to_list()
        state.add_cells(new_ids, nominal)
        joined = frame.join(state.slot_frame(), on="cell_id", how="left", maintain_order="left")
        slot = joined.get_column("__slot")
    return slot.to_numpy().astype(np.int64, copy=False)


def _arrays(good: pl.DataFrame, slots: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "slot": slots,
        "ts": good.get_column("ts").to_numpy(),
        "v": good.get_column("voltage_v").to_numpy(),
        "i": good.get_column("current_a").to_numpy(),
        "t": good.get_column("temperature_c").fill_null(np.nan).to_numpy(),
        "cyc": good.get_column("cycle").fill_null(NULL_LABEL).to_numpy(),
        "step": good.get_column("step").fill_null(NULL_LABEL).to_numpy(),
        "stime": good.get_column("step_time_s").fill_null(np.nan).to_numpy(),
        "row": rows,
    }


def _take(arrs: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: a[idx] for k, a in arrs.items()}


def _letters(state: EngineState, arrs: dict[str, np.ndarray], reason: str, source: str) -> pl.DataFrame:
    """Dead letters for engine-level rejections (late, duplicate), with the row as JSON."""
    n = len(arrs["ts"])
    if n == 0:
        return pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    ids = pl.Series("cell_id", [state.cell_ids[k] for k in arrs["slot"].tolist()], dtype=pl.Utf8)
    body = pl.DataFrame({
        "cell_id": ids, "ts": arrs["ts"], "voltage_v": arrs["v"], "current_a": arrs["i"],
        "temperature_c": arrs["t"], "cycle": arrs["cyc"], "step": arrs["step"],
    }, nan_to_null=True).with_columns(
        pl.when(pl.col(c) == NULL_LABEL).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("cycle", "step")
    )
    payload = body.select(pl.struct(pl.all()).struct.json_encode().alias("p")).get_column("p")
    return pl.DataFrame(
        {
            "source": [source] * n,
            "row": arrs["row"],
            "cell_id": ids,
            "ts": arrs["ts"],
            "field": ["ts"] * n,
            "reason": [reason] * n,
            "payload": payload,
        },
        schema=DEAD_LETTER_SCHEMA,
    )


def update(
    state: EngineState,
    batch: pl.DataFrame,
    *,
    cells: pl.DataFrame | None = None,
    source: str = "input",
    limits: Limits | None = None,
) -> tuple[EngineState, EngineOutput]:
    """Feed one batch of canonical measurements (any cells, arrival order).

    Invalid rows, late rows (older than the newest sample of their cell minus
    ``lateness_s``) and duplicate timestamps are returned as dead letters; nothing is
    silently dropped. ``cells`` may carry ``nominal_capacity_ah`` per cell, which sets
    the rest/charge current threshold for cells not seen before.
    """
    return _update(state, batch, cells=cells, source=source, limits=limits, final=False)


def _update(state: EngineState, batch: pl.DataFrame, *, cells: pl.DataFrame | None,
            source: str, limits: Limits | None, final: bool) -> tuple[EngineState, EngineOutput]:
    cfg = state.config
    nominal = _nominal_map(cells)
    if nominal:
        state.add_cells(list(nominal), nominal)
        state.set_nominal(nominal)
    checked = validate(batch, limits=limits, source=source)
    rejected = [checked.rejected]
    good = checked.good
    new: dict[str, np.ndarray] | None = None
    if good.height:
        rows = checked.rows if checked.rows is not None else np.arange(good.height, dtype=np.int64)
        slots = _assign_slots(state, good.get_column("cell_id"), nominal)
        new = _arrays(good, slots, rows)
        # Arrival order within each cell decides lateness (independent of batching).
        grouped = bool(np.all(slots[1:] >= slots[:-1]))
        order = None if grouped else np.argsort(slots, kind="stable")
        sl = slots if order is None else slots[order]
        tss = new["ts"] if order is None else new["ts"][order]
        labs = new["step"] if order is None else new["step"][order]
        max_ts = state.f[:, F_MAX_TS].copy()
        max_lab = state.iv[:, I_PREV_SLAB].copy()
        flags = K.late_and_duplicates(sl, tss, labs, max_ts, max_lab, cfg.lateness_s)
        state.f[:, F_MAX_TS] = max_ts
        if order is not None:
            unsorted = np.empty_like(flags)
            unsorted[order] = flags
            flags = unsorted
        dup = flags == 2
        if dup.any():
            rejected.append(_letters(
                state, _take(new, np.flatnonzero(dup)),
                "duplicate timestamp: an earlier sample of this cell has the same ts", source,
            ))
        late = flags == 1
        if late.any():
            rejected.append(_letters(
                state, _take(new, np.flatnonzero(late)),
                f"late: older than the cell's newest sample by more than the lateness window ({cfg.lateness_s:g} s)",
                source,
            ))
        if late.any() or dup.any():
            new = _take(new, np.flatnonzero(~(late | dup)))
    return _advance(state, new, rejected, final=final, source=source)


def flush(state: EngineState) -> tuple[EngineState, EngineOutput]:
    """End of stream: process every pending sample and settle pending runs."""
    return _advance(state, None, [], final=True, source="input")


def summarize(
    frame: pl.DataFrame,
    config: EngineConfig | None = None,
    *,
    cells: pl.DataFrame | None = None,
    source: str = "input",
) -> Summary:
    """Batch analysis of a whole frame: every step and cycle, the last ones open."""
    # One pass that ends the stream: the same as update() then flush(), without
    # holding back the lateness window first.
    state = new_state(config)
    state, out = _update(state, frame, cells=cells, source=source, limits=None, final=True)
    steps = _last_per_key(out.steps, ["cell_id", "step"])
    cycles = _last_per_key(out.cycles, ["cell_id", "cycle"])
    return Summary(steps, cycles, out.rejected)


def _last_per_key(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return df.unique(subset=keys, keep="last", maintain_order=True).sort(keys)


def _advance(
    state: EngineState,
    new: dict[str, np.ndarray] | None,
    rejected: list[pl.DataFrame],
    *,
    final: bool,
    source: str,
) -> tuple[EngineState, EngineOutput]:
    cfg = state.config
    pend = dict(state.pending)
    pend["row"] = np.full(len(pend["ts"]), -1, dtype=np.int64)
    if new is not None and len(new["ts"]):
        allr = {k: np.concatenate([pend[k], new[k]]) if len(pend[k]) else new[k] for k in pend}
    else:
        allr = pend
    accepted = 0
    accepted_rows = np.zeros(0, dtype=np.int64)
    if len(allr["ts"]):
        if not K.is_strictly_sorted(allr["slot"], allr["ts"]):
            # Stable: among equal (slot, ts) the earliest arrival comes first and wins.
            # Usually only the cells need grouping (each cell's rows already in time
            # order): a stable sort by slot is enough and much cheaper than lexsort.
            order = np.argsort(allr["slot"], kind="stable")
            if not K.is_strictly_sorted(allr["slot"][order], allr["ts"][order]):
                order = np.lexsort((allr["ts"], allr["slot"]))
            allr = _take(allr, order)
            dup = K.duplicate_mask(allr["slot"], allr["ts"], allr["step"])
            if dup.any():
                rejected.append(_letters(
                    state, _take(allr, np.flatnonzero(dup)),
                    "duplicate timestamp: an earlier sample of this cell has the same ts", source,
                ))
                allr = _take(allr, np.flatnonzero(~dup))
        fresh = allr["row"][allr["row"] >= 0]
        accepted = len(fresh)
        accepted_rows = fresh if K.is_strictly_sorted(np.zeros(len(fresh), dtype=np.int64),
                                                      fresh.astype(np.float64)) else np.sort(fresh)
        if final:
            ready = allr
            keep: dict[str, np.ndarray] = _take(allr, np.zeros(0, dtype=np.int64))
        else:
            wm = state.f[:, F_MAX_TS] - cfg.lateness_s
            # Without a window nothing can still arrive before the newest sample: it is
            # processed at once (lowest latency); otherwise the window's samples wait.
            is_ready = (allr["ts"] <= wm[allr["slot"]]) if cfg.lateness_s <= 0 else (
                allr["ts"] < wm[allr["slot"]])
            if is_ready.all():
                ready, keep = allr, _take(allr, np.zeros(0, dtype=np.int64))
            else:
                ready = _take(allr, np.flatnonzero(is_ready))
                keep = _take(allr, np.flatnonzero(~is_ready))
        state.pending = {k: keep[k] for k in PENDING_FIELDS}
    else:
        ready = allr
    steps, cycles = _run_kernel(state, ready, final=final)
    rej = pl.concat([r for r in rejected if r.height] or [pl.DataFrame(schema=DEAD_LETTER_SCHEMA)])
    return state, EngineOutput(steps=steps, cycles=cycles, rejected=rej, accepted=accepted,
                               accepted_rows=accepted_rows)


@dataclass
class _Out:
    step_f: np.ndarray
    step_i: np.ndarray
    cyc_f: np.ndarray
    cyc_i: np.ndarray
    cyc_x: np.ndarray


def _process(state: EngineState, r: dict[str, np.ndarray], lo: int, hi: int, cfgv: np.ndarray) -> _Out:
    """Run the kernel over rows lo..hi (whole cells), growing output buffers as needed."""
    n = hi - lo
    cap_s = max(64, n // 64 + 16)
    cap_c = max(32, n // 512 + 16)
    step_f = np.empty((cap_s, NA))
    step_i = np.empty((cap_s, K.NSO), dtype=np.int64)
    cyc_f = np.empty((cap_c, NA))
    cyc_i = np.empty((cap_c, K.NCO), dtype=np.int64)
    cyc_x = np.empty((cap_c, K.NCX))
    n_step = np.zeros(1, dtype=np.int64)
    n_cyc = np.zeros(1, dtype=np.int64)
    args = [r[k][lo:hi] for k in ("slot", "ts", "v", "i", "t", "cyc", "step", "stime")]
    pos = 0
    while pos < n:
        pos = K.process(*args, pos, cfgv, state.f, state.iv, state.s, state.r, state.cy,  # type: ignore[call-arg, arg-type]
                        step_f, step_i, n_step, cyc_f, cyc_i, cyc_x, n_cyc)
        if pos < n:  # output buffers full: grow and resume where the kernel stopped
            step_f = np.concatenate([step_f, np.empty_like(step_f)])
            step_i = np.concatenate([step_i, np.empty_like(step_i)])
            cyc_f = np.concatenate([cyc_f, np.empty_like(cyc_f)])
            cyc_i = np.concatenate([cyc_i, np.empty_like(cyc_i)])
            cyc_x = np.concatenate([cyc_x, np.empty_like(cyc_x)])
    ns, nc = int(n_step[0]), int(n_cyc[0])
    return _Out(step_f[:ns], step_i[:ns], cyc_f[:nc], cyc_i[:nc], cyc_x[:nc])


#: Below this many rows one thread does the work; above, cells are split across two.
_PARALLEL_ROWS = 400_000


def _run_kernel(state: EngineState, ready: dict[str, np.ndarray], *, final: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = len(ready["ts"])
    slots = ready["slot"]
    # Rows are sorted by slot: unique slots are where the slot changes.
    touched = slots[np.r_[True, slots[1:] != slots[:-1]]] if n else np.zeros(0, dtype=np.int64)
    if final:
        touched = np.arange(state.n_cells, dtype=np.int64)
    cfgv = _cfg_vector(state.config)
    outs: list[_Out] = []
    if n >= _PARALLEL_ROWS:
        # Cells are independent: split at a cell boundary near the middle. The kernel
        # releases the GIL, so both halves run at once.
        mid = int(np.searchsorted(slots, slots[n // 2], side="left")) or int(
            np.searchsorted(slots, slots[n // 2], side="right"))
        with ThreadPoolExecutor(max_workers=2) as pool:
            futs = [pool.submit(_process, state, ready, 0, mid, cfgv),
                    pool.submit(_process, state, ready, mid, n, cfgv)]
            outs = [f.result() for f in futs]
    elif n:
        outs = [_process(state, ready, 0, n, cfgv)]
    if final and len(touched):
        K.finish(touched, state.iv, state.f, state.s, state.r)
    # Only cells that have seen a sample have open records.
    touched = touched[state.iv[touched, 0] == 1]
    if outs:
        step_f = np.concatenate([o.step_f for o in outs])
        step_i = np.concatenate([o.step_i for o in outs])
        cyc_f = np.concatenate([o.cyc_f for o in outs])
        cyc_i = np.concatenate([o.cyc_i for o in outs])
        cyc_x = np.concatenate([o.cyc_x for o in outs])
    else:
        step_f, step_i = np.empty((0, NA)), np.empty((0, K.NSO), dtype=np.int64)
        cyc_f, cyc_i, cyc_x = np.empty((0, NA)), np.empty((0, K.NCO), dtype=np.int64), np.empty((0, K.NCX))
    m = len(touched)
    open_s = np.empty((m, NA))
    open_c = np.empty((m, NA))
    K.partial_state(state.iv, state.f, state.s, state.r, state.cy, touched, open_s, open_c)
    oi = np.empty((m, K.NSO), dtype=np.int64)
    oi[:, K.SO_SLOT] = touched
    oi[:, K.SO_STEP] = state.iv[touched, I_STEP_NO]
    oi[:, K.SO_CYCLE] = state.iv[touched, I_STEP_CYCLE]
    oi[:, K.SO_LABEL] = state.iv[touched, I_STEP_LABEL]
    oi[:, K.SO_KIND] = state.iv[touched, I_STEP_KIND]
    ref = state.f[touched, F_REF_DIS]
    dis = open_c[:, A_DIS_AS]
    with np.errstate(invalid="ignore", divide="ignore"):
        retention = np.where(ref > 0, dis / ref, np.nan)
    throughput = np.nan_to_num(state.f[touched, F_THROUGHPUT]) + open_c[:, A_CHG_AS] + open_c[:, A_DIS_AS]
    open_status = _final_status(state, touched, open_s, open_c) if final else np.full(m, STATUS_OPEN)
    # Closed records first, then open snapshots: a consumer upserting in order ends
    # with the newest version of every key.
    steps = _steps_frame(state, np.concatenate([step_f, open_s]), np.concatenate([step_i, oi]),
                         len(step_f))
    cycles = _cycles_frame(
        state, np.concatenate([cyc_f, open_c]),
        np.concatenate([cyc_i[:, K.CO_SLOT], touched]),
        np.concatenate([cyc_i[:, K.CO_CYCLE], state.iv[touched, I_CYCLE_NO]]),
        np.concatenate([cyc_x[:, K.CX_RETENTION], retention]),
        np.concatenate([cyc_x[:, K.CX_THROUGHPUT], throughput]),
        np.concatenate([cyc_x[:, K.CX_REF], ref]),
        np.concatenate([cyc_i[:, K.CO_STATUS], open_status]),
    )
    return steps, cycles


def _final_status(state: EngineState, slots: np.ndarray, open_s: np.ndarray,
                  open_c: np.ndarray) -> np.ndarray:
    """Status of each cell's last cycle when the data has ended.

    It is closed when complete: it holds both halves (a step of the cycle_start kind and
    one of the opposite kind), its last charge/discharge step was the closing half and
    the data ended in the rest after it; else the data stopped inside it (partial). A
    cell's only cycle also passes the kernel's first-cycle checks.
    """
    cfg = state.config
    iv = state.iv[slots]
    start_kind = 1 if cfg.cycle_start == "charge" else -1
    kind = iv[:, I_STEP_KIND].copy()
    for k, c in enumerate(slots.tolist()):
        if iv[k, I_STEP_LABEL] != NULL_LABEL:  # a handful of cells: one call each
            kind[k] = K.labelled_kind(open_s, k, float(state.f[c, F_EPS]))
    seen_start = (iv[:, I_SEEN_START] == 1) | (kind == start_kind)
    seen_opp = (iv[:, I_SEEN_OPP] == 1) | (kind == -start_kind)
    complete = (seen_start & seen_opp & (iv[:, I_LAST_ACTIVE] == -start_kind) & (kind == 0)
                & (iv[:, I_CYC_PARTIAL] == 0))  # 2: the data never left its first step
    first = iv[:, I_N_CYCLES] == 0
    if start_kind == 1:
        excess = open_c[:, A_DIS_AS] > cfg.max_first_cycle_ce * open_c[:, A_CHG_AS]
        complete &= ~(first & excess)
    return np.where(complete, STATUS_CLOSED, STATUS_PARTIAL)



_KIND_CODES = {1: KIND_NAMES[1], -1: KIND_NAMES[-1], 0: KIND_NAMES[0]}
_MODE_CODES = {0: "rest", 1: "CC", 2: "CV", 3: "CC-CV"}


def _status(n: int, n_closed: int) -> pl.Series:
    codes = np.ones(n, dtype=np.int8)
    codes[:n_closed] = 0
    return _names(codes, {0: "closed", 1: "open"})


_STATUS_CODES = {STATUS_CLOSED: STATUS_NAMES[STATUS_CLOSED], STATUS_PARTIAL: STATUS_NAMES[STATUS_PARTIAL],
                 STATUS_OPEN: STATUS_NAMES[STATUS_OPEN]}


def _names(codes: np.ndarray, names: dict[int, str]) -> pl.Series:
    """Small integer codes to their names, vectorized (a when/then chain is the
    cheapest way for a handful of codes)."""
    c = pl.lit(pl.Series(codes))
    items = list(names.items())
    expr: Any = pl.when(c == items[0][0]).then(pl.lit(items[0][1]))
    for code, name in items[1:-1]:
        expr = expr.when(c == code).then(pl.lit(name))
    return pl.select(expr.otherwise(pl.lit(items[-1][1])).alias("name")).to_series()


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _common(state: EngineState, a: np.ndarray) -> dict[str, np.ndarray]:
    dt = a[:, A_DT]
    mean_v = np.where(dt > 0, _safe_div(a[:, A_VDT], dt), a[:, A_STARTV])
    mean_i = np.where(dt > 0, _safe_div(a[:, A_IDT], dt), 0.5 * (a[:, A_MINI] + a[:, A_MAXI]))
    mean_t = _safe_div(a[:, A_SUMT], a[:, A_NT])
    max_t = np.where(a[:, A_NT] > 0, a[:, A_MAXT], np.nan)
    min_t = np.where(a[:, A_NT] > 0, a[:, A_MINT], np.nan)
    return {
        "start_ts": a[:, A_START],
        "end_ts": a[:, A_END],
        "duration_s": a[:, A_END] - a[:, A_START],
        "n_samples": a[:, A_N].astype(np.int64),
        "charge_ah": a[:, A_CHG_AS] / 3600.0,
        "discharge_ah": a[:, A_DIS_AS] / 3600.0,
        "charge_wh": a[:, A_CHG_WS] / 3600.0,
        "discharge_wh": a[:, A_DIS_WS] / 3600.0,
        "min_v": a[:, A_MINV],
        "max_v": a[:, A_MAXV],
        "mean_v": mean_v,
        "mean_current_a": mean_i,
        "min_current_a": a[:, A_MINI],
        "max_current_a": a[:, A_MAXI],
        "mean_temperature_c": mean_t,
        "max_temperature_c": max_t,
        "min_temperature_c": min_t,
        "internal_resistance_ohm": a[:, A_IR],
        "gap_count": a[:, A_GAPS].astype(np.int64),
        "gap_excluded_s": a[:, A_GAP_S],
        "gap_missing_ah": a[:, A_GAP_AS] / 3600.0,
    }


def _steps_frame(state: EngineState, a: np.ndarray, ints: np.ndarray, n_closed: int) -> pl.DataFrame:
    """Step rows; the first ``n_closed`` are closed, the rest open snapshots."""
    if a.shape[0] == 0:
        return pl.DataFrame(schema=STEP_SCHEMA)
    cfg = state.config
    base = _common(state, a)
    slot = ints[:, K.SO_SLOT]
    label = ints[:, K.SO_LABEL]
    kind = ints[:, K.SO_KIND].copy()
    labelled = label != NULL_LABEL
    if labelled.any():
        # A cycler's step is named by its net current, not by its first sample.
        eps = state.f[slot, F_EPS]
        mi = base["mean_current_a"]
        kind = np.where(labelled, np.where(mi > eps, 1, np.where(mi < -eps, -1, 0)), kind)
    dt = a[:, A_DT]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_i = base["mean_current_a"]
        var_i = np.maximum(_safe_div(a[:, A_I2DT], dt) - mean_i**2, 0.0)
        mean_v = _safe_div(a[:, A_VDT], dt)
        var_v = np.maximum(_safe_div(a[:, A_V2DT], dt) - mean_v**2, 0.0)
        rel_i = np.sqrt(var_i) / np.abs(mean_i)
    std_v = np.sqrt(var_v)
    mode = np.where(
        kind == 0, 0,
        np.where((dt <= 0) | (rel_i < cfg.cc_rel_std), 1, np.where(std_v < cfg.cv_v_std_v, 2, 3)),
    ).astype(np.int8)
    data = {
        "cell_id": state.id_series().gather(slot),
        "step": ints[:, K.SO_STEP],
        "cycle": ints[:, K.SO_CYCLE],
        "step_label": np.where(labelled, label, 0),
        "kind": _names(kind.astype(np.int8), _KIND_CODES),
        "mode": _names(mode, _MODE_CODES),
        "status": _status(a.shape[0], n_closed),
        "start_ts": base["start_ts"],
        "end_ts": base["end_ts"],
        "duration_s": base["duration_s"],
        "n_samples": base["n_samples"],
        "charge_ah": base["charge_ah"],
        "discharge_ah": base["discharge_ah"],
        "charge_wh": base["charge_wh"],
        "discharge_wh": base["discharge_wh"],
        "start_v": a[:, A_STARTV],
        "end_v": a[:, A_ENDV],
        "min_v": base["min_v"],
        "max_v": base["max_v"],
        "mean_v": base["mean_v"],
        "mean_current_a": base["mean_current_a"],
        "min_current_a": base["min_current_a"],
        "max_current_a": base["max_current_a"],
        "mean_temperature_c": base["mean_temperature_c"],
        "max_temperature_c": base["max_temperature_c"],
        "internal_resistance_ohm": base["internal_resistance_ohm"],
        "gap_count": base["gap_count"],
        "gap_excluded_s": base["gap_excluded_s"],
        "gap_missing_ah": base["gap_missing_ah"],
    }
    df = pl.DataFrame(data, schema=STEP_SCHEMA, nan_to_null=False)
    return df.with_columns(
        pl.when(pl.Series(labelled)).then(pl.col("step_label")).otherwise(None).alias("step_label")
    )


def _cycles_frame(state: EngineState, a: np.ndarray, slot: np.ndarray, cycle: np.ndarray,
                  retention: np.ndarray, throughput_as: np.ndarray, ref_as: np.ndarray,
                  status: np.ndarray) -> pl.DataFrame:
    """Cycle rows with their status codes (closed, open snapshot or partial)."""
    if a.shape[0] == 0:
        return pl.DataFrame(schema=CYCLE_SCHEMA)
    base = _common(state, a)
    nominal = state.f[slot, F_NOMINAL_AH]
    throughput_ah = throughput_as / 3600.0
    # Equivalent full cycles: throughput over twice the capacity (one charge + one
    # discharge); the nominal capacity when known, else the cell's own early capacity.
    cap_ah = np.where(np.isfinite(nominal) & (nominal > 0), nominal, ref_as / 3600.0)
    # Efficiencies need a real charge: charge below the rest threshold on average over
    # the cycle is sensor noise (a partial first cycle), and a ratio to it means nothing.
    charged = a[:, A_CHG_AS] > state.f[slot, F_EPS] * a[:, A_DT]
    data = {
        "cell_id": state.id_series().gather(slot),
        "cycle": cycle,
        "status": _names(status.astype(np.int8), _STATUS_CODES),
        "start_ts": base["start_ts"],
        "end_ts": base["end_ts"],
        "duration_s": base["duration_s"],
        "n_samples": base["n_samples"],
        "n_steps": a[:, A_STEPS].astype(np.int64),
        "charge_ah": base["charge_ah"],
        "discharge_ah": base["discharge_ah"],
        "charge_wh": base["charge_wh"],
        "discharge_wh": base["discharge_wh"],
        "coulombic_efficiency": np.where(charged, _safe_div(a[:, A_DIS_AS], a[:, A_CHG_AS]), np.nan),
        "energy_efficiency": np.where(charged, _safe_div(a[:, A_DIS_WS], a[:, A_CHG_WS]), np.nan),
        "mean_charge_v": _safe_div(a[:, A_CHG_WS], a[:, A_CHG_AS]),
        "mean_discharge_v": _safe_div(a[:, A_DIS_WS], a[:, A_DIS_AS]),
        "min_v": base["min_v"],
        "max_v": base["max_v"],
        "mean_v": base["mean_v"],
        "min_current_a": base["min_current_a"],
        "max_current_a": base["max_current_a"],
        "mean_current_a": base["mean_current_a"],
        "min_temperature_c": base["min_temperature_c"],
        "max_temperature_c": base["max_temperature_c"],
        "mean_temperature_c": base["mean_temperature_c"],
        "retention": retention,
        "internal_resistance_ohm": base["internal_resistance_ohm"],
        "throughput_ah": throughput_ah,
        "equivalent_full_cycles": _safe_div(throughput_ah, 2.0 * cap_ah),
        "gap_count": base["gap_count"],
        "gap_excluded_s": base["gap_excluded_s"],
        "gap_missing_ah": base["gap_missing_ah"],
    }
    return pl.DataFrame(data, schema=CYCLE_SCHEMA, nan_to_null=False)
