"""Incremental and batch entry points of the engine.

``state, out = update(state, batch)`` consumes any batch of canonical measurements
(many cells, any order) and returns the steps and cycles that closed plus snapshots of
the open ones; ``flush`` ends the stream; ``summarize(frame)`` is the batch form and
equals any split of the same input into ``update`` calls followed by ``flush``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..checks import IdCodes
from ..config import EngineConfig
from ..schema import DEAD_LETTER_SCHEMA, Limits, Validated, dead_letters, validate
from . import kernel as K
from . import layout as L
from . import order as O
from . import window as W
from .ids import assign_slots
from .layout import (
    F_MAX_TS,
    I_PREV_SLAB,
    NA,
    NULL_LABEL,
)
from .passes import Out, process_blocked, process_rows
from .snapshots import outputs
from .state import PENDING_FIELDS, EngineState, empty_pending

__all__ = ["EngineOutput", "Summary", "new_state", "update", "update_checked", "flush", "summarize"]


@dataclass(frozen=True, slots=True)
class EngineOutput:
    """What one :func:`update` produced.

    ``steps``/``cycles`` hold closed records and snapshots of open ones (``status``);
    a consumer upserts them by (cell_id, step) / (cell_id, cycle), later rows winning.
    Open snapshots come only for cells the batch moved, and with
    ``EngineConfig.snapshot_interval_s`` > 0 only when the cell's step or cycle closed or
    its data advanced that far since its last snapshot; :func:`flush` shows every cell.
    Rows come in processing order (cells may be interleaved), each key's rows in order.
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
    """Batch result: every step and cycle (last steps open, last cycles settled) and the
    rejected rows."""

    steps: pl.DataFrame
    cycles: pl.DataFrame
    rejected: pl.DataFrame


def new_state(config: EngineConfig | None = None) -> EngineState:
    """Empty engine state for a configuration."""
    return EngineState(config=config or EngineConfig())


def _nominal_map(cells: pl.DataFrame | None) -> dict[str, float]:
    if cells is None or "nominal_capacity_ah" not in cells.columns or cells.height == 0:
        return {}
    sub = cells.select("cell_id", pl.col("nominal_capacity_ah").cast(pl.Float64)).drop_nulls()
    return dict(zip(sub.get_column("cell_id").to_list(), sub.get_column("nominal_capacity_ah").to_list(), strict=True))


#: The shared empty dead-letter frame (building one costs ~0.3 ms).
_NO_LETTERS = dead_letters()


def _floats(col: pl.Series) -> np.ndarray:
    """Float64 column as NumPy, null -> NaN (what ``to_numpy`` gives floats anyway).
    An all-null column (an optional column the source lacks) is one NaN broadcast
    (read-only, stride 0): no 8 bytes per row written and read back."""
    if col.null_count() == len(col):
        return np.broadcast_to(np.float64(np.nan), (len(col),))
    out = col.to_numpy()
    return out if out.dtype == np.float64 else out.astype(np.float64)


def _labels(col: pl.Series) -> np.ndarray:
    """Int64 label column as NumPy, null -> NULL_LABEL. The null count is known without
    a pass: a column without nulls (or all null) is converted without ``fill_null``,
    which costs ~0.5 ms per 10,000 rows (per-batch overhead of a live fleet)."""
    nulls = col.null_count()
    if nulls == 0:
        return col.to_numpy()
    if nulls == len(col):  # read-only, stride 0 (as in _floats)
        return np.broadcast_to(np.int64(NULL_LABEL), (len(col),))
    return col.fill_null(NULL_LABEL).to_numpy()


def _arrays(good: pl.DataFrame, slots: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "slot": slots,
        "ts": good.get_column("ts").to_numpy(),
        "v": good.get_column("voltage_v").to_numpy(),
        "i": good.get_column("current_a").to_numpy(),
        "t": _floats(good.get_column("temperature_c")),
        "cyc": _labels(good.get_column("cycle")),
        "step": _labels(good.get_column("step")),
        "stime": _floats(good.get_column("step_time_s")),
        "row": rows,
    }


def _take(arrs: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: a[idx] for k, a in arrs.items()}


def _letters(state: EngineState, arrs: dict[str, np.ndarray], reason: str, source: str) -> pl.DataFrame:
    """Dead letters for engine-level rejections (late, duplicate), with the row as JSON."""
    n = len(arrs["ts"])
    if n == 0:
        return _NO_LETTERS
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

    The state is advanced **in place** and the same object is returned: a caller that
    must be able to undo a batch (e.g. when its commit fails) keeps the last committed
    ``state.to_bytes()`` and restores from it, as :class:`~chargetracker.runtime.Pipeline`
    and the Kafka worker do with their checkpoints.
    """
    return _update(state, batch, cells=cells, source=source, limits=limits, final=False)


def update_checked(state: EngineState, checked: Validated, *,
                   cells: pl.DataFrame | None = None,
                   source: str = "input") -> tuple[EngineState, EngineOutput]:
    """:func:`update` for a batch the caller has already validated (:func:`validate`),
    so a micro-batch is validated exactly once. ``accepted_rows`` index the batch that
    was validated (``checked.rows`` maps good rows back to it)."""
    return _update_checked(state, checked, cells=cells, source=source, final=False)


def _update(state: EngineState, batch: pl.DataFrame, *, cells: pl.DataFrame | None,
            source: str, limits: Limits | None, final: bool) -> tuple[EngineState, EngineOutput]:
    return _update_checked(state, validate(batch, limits=limits, source=source), cells=cells,
                           source=source, final=final)


def _update_checked(state: EngineState, checked: Validated, *, cells: pl.DataFrame | None,
                    source: str, final: bool) -> tuple[EngineState, EngineOutput]:
    cfg = state.config
    nominal = _nominal_map(cells)
    if nominal:
        state.add_cells(list(nominal), nominal)
        state.set_nominal(nominal)
    rejected = [checked.rejected]
    good = checked.good
    new: dict[str, np.ndarray] | None = None
    in_order = False  # proven: every cell's held-back then new rows in time order
    all_wait = False  # proven: no new row is ready yet (see window.take_with_cells)
    if good.height:
        rows = checked.rows if checked.rows is not None else np.arange(good.height, dtype=np.int64)
        if checked.ids is not None and good.height >= _CODES_MIN_ROWS:
            slots = _slots_from_codes(state, checked.ids, nominal)
        else:
            slots = assign_slots(state, good.get_column("cell_id"), nominal)
        new = _arrays(good, slots, rows)
        # Arrival order within each cell decides lateness (independent of batching);
        # the check keeps per-cell state only, so interleaved cells need no grouping.
        # The newest ts per cell is advanced in place (a strided view, no copy).
        n_cells = state.n_cells
        late_msg = (f"late: older than the cell's newest sample by more than the lateness "
                    f"window ({cfg.lateness_s:g} s)")
        if cfg.lateness_s > 0 and not final:
            # A live stream's batch: lateness and order in one pass (no duplicates are
            # possible here: with a window a repeated ts is sorted out later).
            flags = np.empty(len(slots), dtype=np.int8)
            span = np.empty(2)
            status = W.admit(slots, new["ts"], state.f[:n_cells, F_MAX_TS], cfg.lateness_s, flags, span)
            in_order = status == 0
            all_wait = in_order and span[1] - span[0] <= cfg.lateness_s
            if status == 2:
                keep = flags == 0
                rejected.append(_letters(state, _take(new, np.flatnonzero(~keep)), late_msg, source))
                new = _take(new, np.flatnonzero(keep))
        else:
            # The label logged at the newest ts is the kernel's to keep: the check works
            # on a copy.
            max_lab = state.iv[:n_cells, I_PREV_SLAB].copy()
            flags = O.late_and_duplicates(slots, new["ts"], new["step"], state.f[:n_cells, F_MAX_TS],
                                          max_lab, cfg.lateness_s)
            dup = flags == 2
            if dup.any():
                rejected.append(_letters(
                    state, _take(new, np.flatnonzero(dup)),
                    "duplicate timestamp: an earlier sample of this cell has the same ts", source,
                ))
            late = flags == 1
            if late.any():
                rejected.append(_letters(state, _take(new, np.flatnonzero(late)), late_msg, source))
            if late.any() or dup.any():
                new = _take(new, np.flatnonzero(~(late | dup)))
    return _advance(state, new, rejected, final=final, source=source, in_order=in_order,
                    all_wait=all_wait, rows_sorted=checked.rows is None)


#: Batches of at least this many rows map ids to slots from validation's codes (a
#: file, a dump); smaller ones (a live fleet's poll) keep assign_slots and its caches.
_CODES_MIN_ROWS = 262_144


def _slots_from_codes(state: EngineState, ids: IdCodes, nominal: dict[str, float]) -> np.ndarray:
    """Slot of each row from the batch's dictionary-encoded ids, allocating slots for
    new cells in order of first appearance (as :func:`assign_slots` does)."""
    distinct = ids.distinct.to_list()
    state.add_cells(distinct, nominal)
    index = state.index
    lut = np.fromiter((index[x] for x in distinct), dtype=np.int64, count=len(distinct))
    if np.array_equal(lut, np.arange(len(lut))):
        return ids.codes  # a fresh state: the codes are the slots
    return lut[ids.codes]


def flush(state: EngineState) -> tuple[EngineState, EngineOutput]:
    """End of data: process every pending sample, settle pending runs, and settle each
    cell's last cycle -- closed when it is whole, else partial (docs/metrics.md)."""
    return _advance(state, None, [], final=True, source="input")


def summarize(
    frame: pl.DataFrame,
    config: EngineConfig | None = None,
    *,
    cells: pl.DataFrame | None = None,
    source: str = "input",
) -> Summary:
    """Batch analysis of a whole frame (the end of its data): every step and cycle, the
    last cycle of each cell closed when whole, else partial."""
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
    in_order: bool = False,
    all_wait: bool = False,
    rows_sorted: bool = False,
) -> tuple[EngineState, EngineOutput]:
    """``in_order``: the caller proved what :func:`.window.in_order_after` checks;
    ``all_wait``: that no new row is ready yet (:func:`.window.take_with_cells`);
    ``rows_sorted``: ``new["row"]`` is ascending (every row of the batch good)."""
    cfg = state.config
    n_cells = state.n_cells
    state.window.reserve(n_cells)
    if not final and new is not None and len(new["ts"]) and (in_order or W.in_order_after(
            state.window.f, state.window.n[:n_cells], new["slot"], new["ts"])):
        # A live stream's usual batch: every cell's held-back and new rows in time order.
        # One compiled pass takes the rows the watermark has passed (each cell's held-back
        # prefix, then its new ones; grouped by cell for a large fleet, see
        # _ORDER_MIN_CELLS) and keeps the others in the cell's block of the window -- the
        # same rows in the same per-cell order as the general path below, without its
        # concatenation and gathers.
        group = n_cells >= _ORDER_MIN_CELLS
        passed, moved = W.take_with_cells(state.window, new, state.f[:n_cells, F_MAX_TS],
                                          cfg.lateness_s, n_cells, group=group, all_wait=all_wait)
        rows = new["row"]
        accepted_rows = rows if rows_sorted or bool(np.all(rows[1:] > rows[:-1])) else np.sort(rows)
        steps, cycles = _run_kernel(state, passed, None, final=False, touched=moved,
                                    grouped=True if group else None)
        return state, EngineOutput(steps=steps, cycles=cycles, rejected=_letters_frame(rejected),
                                   accepted=len(rows), accepted_rows=accepted_rows)
    pend = dict(state.pending)
    pend["row"] = np.full(len(pend["ts"]), -1, dtype=np.int64)
    if new is not None and len(new["ts"]):
        allr = {k: np.concatenate([pend[k], new[k]]) if len(pend[k]) else new[k] for k in pend}
    else:
        allr = pend
    accepted = 0
    accepted_rows = np.zeros(0, dtype=np.int64)
    if len(allr["ts"]):
        n_cells = state.n_cells
        # Rows are processed in arrival order when each cell's rows already come in time
        # order (grouped files and interleaved live fleets alike): nothing to sort, and
        # no duplicates are possible (a duplicate repeats a ts).
        if not O.in_cell_order(allr["slot"], allr["ts"], n_cells):
            # Stable: among equal (slot, ts) the earliest arrival comes first and wins.
            # Usually only the cells need grouping (each cell's rows in time order but a
            # late row): a counting sort by slot, then lexsort only if that is not enough.
            order = O.slot_order(allr["slot"], n_cells)
            if not O.is_strictly_sorted(allr["slot"][order], allr["ts"][order]):
                order = np.lexsort((allr["ts"], allr["slot"]))
            allr = _take(allr, order)
            dup = O.duplicate_mask(allr["slot"], allr["ts"], allr["step"])
            if dup.any():
                rejected.append(_letters(
                    state, _take(allr, np.flatnonzero(dup)),
                    "duplicate timestamp: an earlier sample of this cell has the same ts", source,
                ))
                allr = _take(allr, np.flatnonzero(~dup))
        # Held-back rows have row -1; without any (a batch's first pass, summarize)
        # every row is fresh: no mask and gather of the whole batch.
        fresh = allr["row"][allr["row"] >= 0] if len(pend["ts"]) else allr["row"]
        accepted = len(fresh)
        accepted_rows = fresh if bool(np.all(fresh[1:] > fresh[:-1])) else np.sort(fresh)
        ready: np.ndarray | None = None  # rows of allr to process (None: all)
        if final:
            state.pending = empty_pending()
        else:
            wm = state.f[:, F_MAX_TS] - cfg.lateness_s
            # Without a window nothing can still arrive before the newest sample: it is
            # processed at once (lowest latency); otherwise the window's samples wait.
            is_ready = (allr["ts"] <= wm[allr["slot"]]) if cfg.lateness_s <= 0 else (
                allr["ts"] < wm[allr["slot"]])
            if is_ready.all():
                state.pending = empty_pending()
            else:
                ready = np.flatnonzero(is_ready)
                wait = np.flatnonzero(~is_ready)
                state.pending = {k: allr[k][wait] for k in PENDING_FIELDS}
    else:
        ready = None
    steps, cycles = _run_kernel(state, allr, ready, final=final)
    return state, EngineOutput(steps=steps, cycles=cycles, rejected=_letters_frame(rejected),
                               accepted=accepted, accepted_rows=accepted_rows)


def _letters_frame(rejected: list[pl.DataFrame]) -> pl.DataFrame:
    letters = [r for r in rejected if r.height]
    return letters[0] if len(letters) == 1 else pl.concat(letters) if letters else _NO_LETTERS


#: Interleaved rows of fewer cells than _ORDER_MIN_CELLS, at least this many per cell
#: in a batch, go through passes.process_blocked in blocks of _BLOCK_ROWS rows.
_BLOCK_MIN_ROWS_PER_CELL = 16
_BLOCK_ROWS = 65_536

#: Below this many rows one thread does the work; above, cells are split across two.
_PARALLEL_ROWS = 400_000
#: Interleaved rows of at least this many cells are grouped by cell (stable, within
#: blocks of rows) before the kernel: the cells' state (~1 KiB each) no longer fits the
#: CPU cache, and jumping to another cell's state on every row costs more than the
#: kernel's own work (measured, 100,000 cells, one row each: 40 -> 16 CPU-ms per batch
#: with the gather included; the kernel following the permutation without the gather:
#: 32 ms, as its scattered loads of the samples are not overlapped).
_ORDER_MIN_CELLS = 2048
#: Rows per block of that grouping (at least 4 rows per cell): each block's gather stays
#: in cache, and a dump of many rows per cell is not sorted whole.
_ORDER_BLOCK_ROWS = 65_536


def _run_kernel(state: EngineState, rows: dict[str, np.ndarray], pick: np.ndarray | None, *,
                final: bool, touched: np.ndarray | None = None,
                grouped: bool | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Process ``rows`` (those at ``pick``, in that order; ``None``: all) and build the
    output tables. The rows are gathered once, however many steps choose them.
    ``touched``: the rows' distinct slots, ascending, and ``grouped``: whether the rows
    are sorted by slot, when the caller knows them."""
    given = touched
    slots = rows["slot"] if pick is None else rows["slot"][pick]
    n = len(slots)
    n_cells = state.n_cells
    if grouped is None:
        grouped = n == 0 or bool(np.all(slots[1:] >= slots[:-1]))
    if not grouped and n_cells >= _ORDER_MIN_CELLS:
        block = max(_ORDER_BLOCK_ROWS, 4 * n_cells)
        order = O.chunked_slot_order(slots, n_cells, block)
        pick = order if pick is None else pick[order]
        grouped = n <= block  # one block: sorted by slot throughout
    ready = rows if pick is None else {k: a[pick] for k, a in rows.items() if k != "row"}
    slots = ready["slot"]
    if final:
        touched = np.arange(n_cells, dtype=np.int64)
    elif given is not None:
        touched = given
    elif grouped:
        # Rows are sorted by slot: unique slots are where the slot changes.
        touched = slots[np.r_[True, slots[1:] != slots[:-1]]] if n else np.zeros(0, dtype=np.int64)
    else:
        touched = O.touched_slots(slots, n_cells)
    cfgv = L.config_vector(state.config)
    outs: list[Out] = []
    everyone = (0, n_cells)
    blocked = not grouped and n >= _BLOCK_MIN_ROWS_PER_CELL * n_cells
    if n >= _PARALLEL_ROWS and blocked:
        with ThreadPoolExecutor(max_workers=1) as pool:
            outs = [process_blocked(state, ready, everyone, cfgv, _BLOCK_ROWS, pool)]
    elif n >= _PARALLEL_ROWS:
        # Cells are independent: two threads take half of the rows each, split at a cell
        # boundary (grouped rows: a row range; interleaved rows: a slot range, each
        # thread skipping the other's rows). The kernel releases the GIL.
        if grouped:
            mid = int(np.searchsorted(slots, slots[n // 2], side="left")) or int(
                np.searchsorted(slots, slots[n // 2], side="right"))
            jobs = [(0, mid, everyone), (mid, n, everyone)]
        else:
            rows_to = np.cumsum(np.bincount(slots, minlength=n_cells))
            split = int(np.searchsorted(rows_to, n // 2)) + 1
            jobs = [(0, n, (0, split)), (0, n, (split, n_cells))]
        with ThreadPoolExecutor(max_workers=2) as pool:
            futs = [pool.submit(process_rows, state, ready, lo, hi, cells, cfgv) for lo, hi, cells in jobs]
            outs = [f.result() for f in futs]
    elif n and blocked:
        outs = [process_blocked(state, ready, everyone, cfgv, _BLOCK_ROWS)]
    elif n:
        outs = [process_rows(state, ready, 0, n, everyone, cfgv)]
    if final and len(touched):
        K.finish(touched, state.iv, state.f, state.s, state.r)
    # Only cells that have seen a sample have open records (every cell the kernel
    # took a sample of has: only the final settling touches others).
    if final:
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
    return outputs(state, step_f, step_i, cyc_f, cyc_i, cyc_x, touched, final=final)
