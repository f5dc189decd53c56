"""The meter-specific reads (and the few direct writes of the batch layer and the
operators) over the generic store that holds the meter kind's tables.

The tables are the meter kind's (:mod:`chargetracker.kinds.meter`): the store creates
them from the specs (DuckDB or PostgreSQL) and the micro-batch step writes them by key
in its commits. What is left here is what the meter endpoints and pages ask that a
plain "rows of a table by equality" cannot answer: days of a house or zip code over a
date range, houses, the newest readings of a meter, alerts with their
acknowledgements; every query goes through :meth:`Store.rows` (parameterized).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import polars as pl

from ..errors import NotFound
from ..kinds.meter import (
    ACKS,
    DAYS,
    METERS,
    READINGS,
    SPIKES,
    THRESHOLDS,
    meter_kind,
    to_cell_letters,
)
from ..meters.schema import (
    ALERT_SCHEMA,
    DAY_SCHEMA,
    DEAD_LETTER_SCHEMA,
    METER_SCHEMA,
    READING_SCHEMA,
    THRESHOLD_SCHEMA,
)
from .base import CommitBatch, Store

__all__ = ["MeterStore", "open_meter_store"]

READING_COLUMNS = READING_SCHEMA
ALERT_STORED = {**ALERT_SCHEMA, "acked_ts": pl.Float64()}
DEAD_STORED = {**DEAD_LETTER_SCHEMA, "received_ts": pl.Float64()}
_HOUSES = {"house_id": pl.Utf8(), "zip": pl.Utf8(), "timezone": pl.Utf8(), "n_meters": pl.Int64()}
#: More meters than this in a house / zip filter: read the date range, filter in Polars.
_MAX_IN = 1000


class MeterStore:
    """Meter reads over ``store`` (a :class:`Store` or a URL: then opened here with the
    meter kind and closed by :meth:`close`)."""

    def __init__(self, store: Store | str) -> None:
        self._owns = isinstance(store, str)
        if isinstance(store, str):
            from .url import open_store

            store = open_store(store, kinds=[meter_kind()])
        else:
            store.add_kinds([meter_kind()])  # type: ignore[attr-defined]
        self.store: Store = store

    def close(self) -> None:
        if self._owns:
            self.store.close()

    def __enter__(self) -> MeterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, table: str, schema: dict[str, pl.DataType], **kw: Any) -> pl.DataFrame:
        out = self.store.rows(table, unbounded=True, **kw)  # limits are explicit here
        return out.select(list(schema)) if out.height else pl.DataFrame(schema=schema)

    # -- writes outside the step (the batch layer's tables, tests, operators) ------------
    def _commit(self, table: str, frame: pl.DataFrame) -> int:
        if frame.height:
            self.store.commit(CommitBatch(tables={table: frame}))
        return frame.height

    def put_meters(self, meters: pl.DataFrame) -> int:
        return self._commit(METERS.name, meters)

    def put_days(self, days: pl.DataFrame) -> int:
        """Upsert meter days; a closed day is never replaced by an open snapshot (a
        replay of an earlier output re-sends open snapshots of days since closed)."""
        if days.height == 0:
            return 0
        opened = days.filter(pl.col("status") == "open")
        if opened.height:
            lo, hi = opened["date"].min(), opened["date"].max()
            closed = self.store.rows(DAYS.name, filters={"status": "closed"},
                                     ranges={"date": (lo, hi)}, unbounded=True
                                     ).select("meter_id", "date")
            if closed.height:
                days = pl.concat([days.filter(pl.col("status") != "open"),
                                  opened.join(closed, on=["meter_id", "date"], how="anti")])
        return self._commit(DAYS.name, days)

    def put_thresholds(self, thresholds: pl.DataFrame) -> int:
        return self._commit(THRESHOLDS.name, thresholds)

    def put_alerts(self, alerts: pl.DataFrame) -> int:
        return self._commit(SPIKES.name, alerts)

    def put_readings(self, readings: pl.DataFrame) -> int:
        return self._commit(READINGS.name, readings)

    def put_dead_letters(self, rejected: pl.DataFrame) -> int:
        if rejected.height:
            self.store.commit(CommitBatch(dead_letters=to_cell_letters(rejected)))
        return rejected.height

    def ack_alert(self, meter_id: str, start_ts: float, *, at: float | None = None) -> pl.DataFrame:
        if self.alerts(meter_id=meter_id, start_ts=start_ts).height == 0:
            raise NotFound(f"no alert of meter {meter_id!r} starting at {start_ts}")
        self._commit(ACKS.name, pl.DataFrame(
            {"meter_id": [meter_id], "start_ts": [float(start_ts)],
             "acked_ts": [time.time() if at is None else float(at)]}))
        return self.alerts(meter_id=meter_id, start_ts=start_ts)

    # -- reads -------------------------------------------------------------------------
    def meters(self, *, house_id: str | None = None, zip_code: str | None = None,
               appliance: str | None = None, meter_id: str | None = None) -> pl.DataFrame:
        f = {k: v for k, v in (("house_id", house_id), ("zip", zip_code),
                               ("appliance", appliance), ("meter_id", meter_id)) if v is not None}
        return self._rows(METERS.name, METER_SCHEMA, filters=f)

    def houses(self, *, zip_code: str | None = None) -> pl.DataFrame:
        m = self.meters(zip_code=zip_code)
        if m.height == 0:
            return pl.DataFrame(schema=_HOUSES)
        return m.group_by("house_id").agg(
            pl.col("zip").min(), pl.col("timezone").min(), pl.len().cast(pl.Int64).alias("n_meters"),
        ).sort("house_id").select(list(_HOUSES))

    def days(self, *, meter_ids: Sequence[str] | None = None, house_id: str | None = None,
             zip_code: str | None = None, start: Any = None, end: Any = None) -> pl.DataFrame:
        """Meter days in ``[start, end]`` (dates), optionally of some meters, a house or a zip."""
        ids: list[str] | None = list(meter_ids) if meter_ids is not None else None
        if house_id is not None or zip_code is not None:
            of = self.meters(house_id=house_id, zip_code=zip_code)["meter_id"].to_list()
            ids = of if ids is None else [m for m in ids if m in set(of)]
        filters: dict[str, Any] = {}
        if ids is not None and len(ids) <= _MAX_IN:
            filters["meter_id"] = ids
        out = self._rows(DAYS.name, DAY_SCHEMA, filters=filters, ranges={"date": (start, end)})
        if ids is not None and len(ids) > _MAX_IN:
            out = out.filter(pl.col("meter_id").is_in(ids))
        return out

    def thresholds(self, *, meter_id: str | None = None) -> pl.DataFrame:
        f = {"meter_id": meter_id} if meter_id is not None else {}
        return self._rows(THRESHOLDS.name, THRESHOLD_SCHEMA, filters=f)

    def entities(self) -> pl.DataFrame:
        """Meter metadata with each meter's threshold (``p97_w``): what the engine
        state takes from the store (:meth:`MeterKind.register`)."""
        thr = self.thresholds().select("meter_id", "p97_w")
        return self.meters().join(thr, on="meter_id", how="full", coalesce=True)

    def alerts(self, *, meter_id: str | None = None, house_id: str | None = None,
               zip_code: str | None = None, status: str | None = None, acked: bool | None = None,
               since_ts: float | None = None, start_ts: float | None = None,
               limit: int = 1000) -> pl.DataFrame:
        """Spike episodes newest first, with ``acked_ts`` (null: not acknowledged)."""
        f = {k: v for k, v in (("meter_id", meter_id), ("house_id", house_id), ("zip", zip_code),
                               ("status", status), ("start_ts", start_ts)) if v is not None}
        # Newest first by the store, unless acknowledgements filter after the read.
        kw: dict[str, Any] = {} if acked is not None else {"limit": int(limit)}
        got = self._rows(SPIKES.name, ALERT_SCHEMA, filters=f, ranges={"start_ts": (since_ts, None)},
                         order=("start_ts", "meter_id"), descending=True, **kw)
        if got.height == 0:
            return pl.DataFrame(schema=ALERT_STORED)
        ids = got["meter_id"].unique().to_list()
        acks = self._rows(ACKS.name, dict(ACKS.schema),
                          filters={"meter_id": ids} if len(ids) <= _MAX_IN else {})
        out = got.join(acks, on=["meter_id", "start_ts"], how="left").select(list(ALERT_STORED))
        if acked is not None:
            out = out.filter(pl.col("acked_ts").is_not_null() == acked).head(int(limit))
        # The store sorts descending by (start_ts, meter_id); the API lists meters ascending.
        return out.sort(["start_ts", "meter_id"], descending=[True, False])

    def readings(self, meter_id: str, *, start_ts: float | None = None, end_ts: float | None = None,
                 limit: int = 100_000) -> pl.DataFrame:
        """The newest ``limit`` readings of a meter in ``[start_ts, end_ts]``, oldest first."""
        out = self._rows(READINGS.name, READING_SCHEMA, filters={"meter_id": meter_id},
                         ranges={"ts": (start_ts, end_ts)}, order=("ts",), descending=True,
                         limit=int(limit))
        return out.reverse()

    def readings_between(self, start_ts: float, end_ts: float) -> pl.DataFrame:
        """Every meter's readings in ``(start_ts, end_ts]`` (the threshold window)."""
        out = self._rows(READINGS.name, READING_SCHEMA, ranges={"ts": (start_ts, end_ts)})
        return out.filter(pl.col("ts") > start_ts)

    def dead_letters(self, *, limit: int = 1000) -> pl.DataFrame:
        """Dead letters newest first (the shared table; ``meter_id`` names the entity)."""
        d = self.store.dead_letters(limit=limit)
        return d.rename({"cell_id": "meter_id", "received_at": "received_ts"}).select(list(DEAD_STORED))


def open_meter_store(url: str) -> MeterStore:
    return MeterStore(url)
