"""The live pack feed's accumulator: open cell-days of a stream of cell samples.

Per pack cell and UTC day the running sums of :data:`~chargetracker.ml.from_cells.
CELL_DAY_SCHEMA` (samples, sum of V, sum of A, temperature range) and each cell's newest
sample ts; a pack's day is decided once every cell of that pack has passed it
(:meth:`CellDays.complete_by_pack`, :func:`decide`), and its pack record is then
:func:`~chargetracker.ml.from_cells.pack_records_from_days`.

Persistence is **by row, per commit, for the cells the commit touched**
(:data:`~chargetracker.kinds.pack.PACK_FEED_CELLS`, key (scope, cell id, part)): a
cell's "newest" row holds its newest ts and its newest open day, its "older" row the
other open days (packed binary records, 44 bytes a day, as base64 text; exact). A sample of a cell's
running day rewrites only that cell's "newest" row (the day before, still waiting for
the pack's slowest cell, is not written again), so a commit writes rows in proportion
to the cells in its batch instead of the whole fleet's accumulator (a 10,000-vehicle
blob was ~20 MB per commit; benchmarks/bench_pack_feed.py). Days already turned into
pack records are dropped from memory and from their cells' rows (rewritten once, at
the commit that drops them); nothing grows with time: two rows per pack cell and scope.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import SchemaError
from ..kinds.pack import PACK_FEED_CELLS
from ..ml.from_cells import CELL_DAY_SCHEMA, cell_day_summary, merge_cell_days

__all__ = ["CellDays", "Changed", "DAY_S", "DECIDED_SCHEMA", "decide", "decided_of", "drop_frame",
           "merge_decided", "tap_header", "tap_version"]

#: Seconds per UTC day.
DAY_S = 86_400
_LAST_SCHEMA: dict[str, pl.DataType] = {"cell_id": pl.Utf8(), "last_ts": pl.Float64()}
_DAY_FIELDS = [c for c in CELL_DAY_SCHEMA if c != "cell_id"]
#: One open day in a row's ``days`` bytes (little-endian, packed: 44 bytes); a missing
#: temperature is NaN there.
_REC = np.dtype([("day", "<i4"), ("n", "<i8"), ("sum_v", "<f8"), ("sum_i", "<f8"),
                 ("tmax", "<f8"), ("tmin", "<f8")])


def _pack_days(days: pl.DataFrame, counts: np.ndarray) -> pl.Series:
    """One base64 text per cell: its ``counts[i]`` days of ``days`` (sorted by cell in
    the rows' order, then day), packed as :data:`_REC` records -- built as one Arrow
    array over two buffers, no Python per row."""
    rec = np.empty(days.height, dtype=_REC)
    for name in _REC.names or ():
        col = days.get_column(name)
        rec[name] = (col.fill_null(float("nan")) if col.dtype == pl.Float64 else col).to_numpy()
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts.astype(np.int64) * _REC.itemsize, out=offsets[1:])
    arr = pa.LargeBinaryArray.from_buffers(pa.large_binary(), int(counts.size),
                                           [None, pa.py_buffer(offsets), pa.py_buffer(rec.tobytes())])
    # Base64 text: every store writes text the same way (PostgreSQL's COPY path has no
    # binary column), at 4/3 of the packed size.
    return pl.Series("days", arr, dtype=pl.Binary).bin.encode("base64")


def _unpack_days(cell_ids: pl.Series, blobs: pl.Series) -> pl.DataFrame:
    """:data:`CELL_DAY_SCHEMA` rows of the rows' ``days`` bytes (restore only)."""
    raw = blobs.fill_null("").str.decode("base64") if blobs.dtype == pl.Utf8 else blobs
    values = [b or b"" for b in raw.to_list()]   # once per restart, not per batch
    sizes = np.fromiter((len(b) for b in values), dtype=np.int64, count=len(values))
    if (sizes % _REC.itemsize).any():
        raise SchemaError("pack_feed_cells: a days value is not whole day records",
                          field="days")
    rec = np.frombuffer(b"".join(values), dtype=_REC)
    frame = pl.DataFrame({"cell_id": np.repeat(cell_ids.to_numpy(), sizes // _REC.itemsize),
                          **{name: rec[name] for name in _REC.names or ()}})
    return frame.with_columns(pl.col("tmax", "tmin").fill_nan(None)).select(
        list(CELL_DAY_SCHEMA)).cast(CELL_DAY_SCHEMA).sort("cell_id", "day")  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Changed:
    """The cells whose "newest" / "older" :data:`PACK_FEED_CELLS` row a fold changed."""

    newest: pl.Series
    older: pl.Series

    @classmethod
    def none(cls) -> Changed:
        empty = pl.Series("cell_id", [], dtype=pl.Utf8)
        return cls(empty, empty)

    @classmethod
    def every(cls, ids: pl.Series) -> Changed:
        return cls(ids, ids)

    def __or__(self, other: Changed) -> Changed:
        return Changed(pl.concat([self.newest, other.newest]).unique().sort(),
                       pl.concat([self.older, other.older]).unique().sort())

    def __bool__(self) -> bool:
        return bool(self.newest.len() or self.older.len())


def _ids(parts: list[pl.Series]) -> pl.Series:
    return (pl.concat(parts).cast(pl.Utf8).unique().sort() if parts
            else pl.Series("cell_id", [], dtype=pl.Utf8))


class CellDays:
    """Open per cell-day sums (``days``, :data:`CELL_DAY_SCHEMA`) and each pack cell's
    newest sample ts (``last``: cell_id, last_ts [s]). Immutable: :meth:`folded` returns
    a new one (a pipeline keeps the accumulator of each prepared batch until it commits)."""

    __slots__ = ("days", "last")

    def __init__(self, days: pl.DataFrame | None = None, last: pl.DataFrame | None = None) -> None:
        self.days = pl.DataFrame(schema=CELL_DAY_SCHEMA) if days is None else days
        self.last = pl.DataFrame(schema=_LAST_SCHEMA) if last is None else last

    def folded(self, raw: pl.DataFrame | None, cells: pl.Series,
               drop_through: int | pl.DataFrame | None) -> tuple[CellDays, Changed]:
        """(accumulator with ``raw``'s samples of ``cells`` added and the decided days
        removed, the rows that changed). ``drop_through``: the last decided day of every
        cell, or per cell (cell_id, through; :func:`drop_frame`)."""
        newest: list[pl.Series] = []
        older: list[pl.Series] = []
        days, last = self.days, self.last
        mine = (raw.filter(pl.col("cell_id").is_in(cells.implode()))
                if raw is not None and raw.height else None)
        if mine is not None and mine.height:
            summ = cell_day_summary(mine)
            got = summ.group_by("cell_id").agg(pl.col("day").min().alias("lo"))
            # Only the batch's cells are re-aggregated: the rest of the fleet is copied.
            hit = pl.col("cell_id").is_in(got.get_column("cell_id").implode())
            theirs, rest = days.filter(hit), days.filter(~hit)
            before = theirs.group_by("cell_id").agg(pl.col("day").max().alias("prev"))
            merged = merge_cell_days(theirs, summ)
            days = pl.concat([rest, merged])
            after = merged.group_by("cell_id").agg(pl.col("day").max().alias("top"))
            info = got.join(after, on="cell_id").join(before, on="cell_id", how="left")
            # The older row changes when the batch reached a day below the cell's newest,
            # or the cell moved on to a new day (its newest becomes an older one).
            older.append(info.filter((pl.col("lo") < pl.col("top"))
                                     | (pl.col("prev") < pl.col("top"))).get_column("cell_id"))
            newest.append(got.get_column("cell_id"))
            stamp = mine.group_by("cell_id").agg(pl.col("ts").max().alias("last_ts"))
            seen = pl.col("cell_id").is_in(stamp.get_column("cell_id").implode())
            last = pl.concat([last.filter(~seen), pl.concat([last.filter(seen), stamp.cast(
                _LAST_SCHEMA)]).group_by("cell_id").agg(pl.col("last_ts").max())])  # type: ignore[arg-type]
        if drop_through is not None:
            if isinstance(drop_through, pl.DataFrame):
                old = (days.join(drop_through, on="cell_id", how="left", maintain_order="left")
                       .select((pl.col("day") <= pl.col("through")).fill_null(False))
                       .to_series())
            else:
                old = days.get_column("day") <= drop_through
            if old.any():
                gone = days.filter(old).get_column("cell_id").unique()
                newest.append(gone)
                older.append(gone)
                days = days.filter(~old)
        return CellDays(days, last), Changed(_ids(newest), _ids(older))

    def complete_by_pack(self, pack_map: pl.DataFrame) -> pl.DataFrame:
        """(vin, through): per pack, the last day every one of its cells (``pack_map``:
        cell_id, vin) has passed; packs with a cell that never reported are left out.
        A pack waits only for its own cells: a vehicle that stops reporting holds back
        its own days, not the fleet's."""
        size = pack_map.group_by("vin").agg(pl.len().alias("n"))
        seen = (pack_map.join(self.last, on="cell_id", how="inner").group_by("vin")
                .agg(pl.len().alias("k"), pl.col("last_ts").min().alias("t")))
        return (seen.join(size, on="vin").filter(pl.col("k") == pl.col("n"))
                .select("vin", ((pl.col("t") // DAY_S).cast(pl.Int64) - 1).cast(pl.Int32)
                        .alias("through")).sort("vin"))

    def rows(self, scope: str, changed: Changed) -> pl.DataFrame:
        """The :data:`PACK_FEED_CELLS` rows ``changed`` names, as they are now."""
        ids_all = pl.concat([changed.newest, changed.older]).cast(pl.Utf8).unique()
        # Only the changed cells' days: the cost follows the batch, not the fleet.
        sub = self.days.filter(pl.col("cell_id").is_in(ids_all.implode()))
        tagged = sub.with_columns(pl.col("day").max().over("cell_id").alias("top"))
        parts = []
        for part, ids, sel in (
                ("newest", changed.newest, tagged.filter(pl.col("day") == pl.col("top"))),
                ("older", changed.older, tagged.filter(pl.col("day") < pl.col("top")))):
            if ids.len() == 0:
                continue
            want = pl.DataFrame({"cell_id": ids.cast(pl.Utf8).sort()})
            mine = sel.join(want, on="cell_id", how="semi").sort("cell_id", "day")
            counts = (want.join(mine.group_by("cell_id").agg(pl.len().alias("k")),
                                on="cell_id", how="left", maintain_order="left")
                      .get_column("k").fill_null(0).to_numpy())
            stamp = (want.join(self.last, on="cell_id", how="left", maintain_order="left")
                     .get_column("last_ts") if part == "newest"
                     else pl.repeat(None, want.height, dtype=pl.Float64, eager=True))
            parts.append(want.select(
                pl.lit(scope).alias("scope"), "cell_id", pl.lit(part).alias("part"),
                stamp.alias("last_ts"), _pack_days(mine, counts).alias("days")))
        if not parts:
            return pl.DataFrame(schema=dict(PACK_FEED_CELLS.schema))
        return pl.concat(parts).cast(dict(PACK_FEED_CELLS.schema))  # type: ignore[arg-type]

    @classmethod
    def from_rows(cls, rows: pl.DataFrame, after: int | None) -> CellDays:
        """The accumulator of a scope's :data:`PACK_FEED_CELLS` rows, without the days
        up to ``after`` (emitted: a crash came between the emission and the drop)."""
        if rows.height == 0:
            return cls()
        last = rows.filter(pl.col("last_ts").is_not_null()).group_by("cell_id").agg(
            pl.col("last_ts").max()).sort("cell_id").cast(_LAST_SCHEMA)  # type: ignore[arg-type]
        days = _unpack_days(rows.get_column("cell_id"), rows.get_column("days"))
        if after is not None:
            days = days.filter(pl.col("day") > after)
        return cls(days, last)

    # -- the whole accumulator as one blob (the first format; still read) -------------
    def to_bytes(self) -> bytes:
        """The accumulator as one blob (format 1: what the benchmark compares with)."""
        parts = []
        for frame in (self.days, self.last):
            buf = io.BytesIO()
            frame.write_ipc(buf, compression="uncompressed")
            parts.append(buf.getvalue())
        head = json.dumps({"v": 1, "days": len(parts[0])}).encode()
        return len(head).to_bytes(4, "little") + head + parts[0] + parts[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> CellDays:
        nh = int.from_bytes(data[:4], "little")
        head = json.loads(data[4:4 + nh])
        a = 4 + nh
        days = pl.read_ipc(io.BytesIO(data[a:a + head["days"]])).cast(CELL_DAY_SCHEMA)  # type: ignore[arg-type]
        last = pl.read_ipc(io.BytesIO(data[a + head["days"]:])).cast(_LAST_SCHEMA)  # type: ignore[arg-type]
        return cls(days, last)


#: Per pack: the last day decided (emitted, or passed by all its cells without a full
#: record) -- the pack kind's last record day after a restart.
DECIDED_SCHEMA: dict[str, pl.DataType] = {"vin": pl.Utf8(), "through": pl.Int32()}


def decided_of(vins: pl.DataFrame) -> pl.DataFrame:
    """:data:`DECIDED_SCHEMA` from the pack kind's per-VIN state (``last_day``): after a
    restart, days up to a pack's last stored record are done; later ones are judged
    again (an incomplete day again yields nothing, a complete one was not committed)."""
    return vins.select("vin", pl.col("last_day").alias("through")).cast(DECIDED_SCHEMA)  # type: ignore[arg-type]


def drop_frame(pack_map: pl.DataFrame, decided: pl.DataFrame) -> pl.DataFrame:
    """(cell_id, through): each pack cell's last decided day."""
    return pack_map.select("cell_id", "vin").join(decided, on="vin", how="inner").select(
        "cell_id", "through")


def decide(tap: CellDays, pack_map: pl.DataFrame,
           decided: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(newly decided (vin, through), the cell-days to turn into pack records): per
    pack the days after its last decided one up to the last its every cell has passed."""
    ready = tap.complete_by_pack(pack_map).join(
        decided.rename({"through": "done"}), on="vin", how="left").filter(
        pl.col("done").is_null() | (pl.col("through") > pl.col("done")))
    if ready.height == 0:
        return ready.select("vin", "through").cast(DECIDED_SCHEMA), tap.days.clear()  # type: ignore[arg-type]
    per_cell = pack_map.select("cell_id", "vin").join(ready, on="vin", how="inner")
    days = tap.days.join(per_cell, on="cell_id", how="inner").filter(
        (pl.col("day") <= pl.col("through"))
        & (pl.col("done").is_null() | (pl.col("day") > pl.col("done")))).select(tap.days.columns)
    return ready.select("vin", "through").cast(DECIDED_SCHEMA), days  # type: ignore[arg-type]


def merge_decided(decided: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Decided days with ``new`` ones (the later day wins)."""
    return pl.concat([decided.cast(DECIDED_SCHEMA), new.cast(DECIDED_SCHEMA)]).group_by(  # type: ignore[arg-type]
        "vin").agg(pl.col("through").max()).sort("vin")


def tap_header(version: int) -> bytes:
    """The small checkpoint state of a feed whose accumulator lives in rows (format 2)."""
    head = json.dumps({"v": version, "rows": PACK_FEED_CELLS.name}).encode()
    return len(head).to_bytes(4, "little") + head


def tap_version(data: bytes) -> int:
    """The format of a feed checkpoint's state (1: the whole blob, 2: rows)."""
    nh = int.from_bytes(data[:4], "little")
    return int(json.loads(data[4:4 + nh]).get("v", 1))
