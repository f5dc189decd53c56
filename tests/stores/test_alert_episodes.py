"""Alert episodes in every store (contract, DuckDB and PostgreSQL): upsert by identity,
newest first, filters, the notification's acknowledgement joined in, counts per rule,
replays are no-ops, malformed rows refused before anything is written."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from chargetracker.episodes import ALERT_EPISODE_SCHEMA
from chargetracker.errors import SchemaError, ValidationError
from chargetracker.stores.base import Checkpoint, CommitBatch, Store


def _episodes(*rows: dict[str, Any]) -> pl.DataFrame:
    base = {"group": "A", "severity": "warning", "state": "open", "occurrences": 1,
            "threshold": 1.0, "message": "m", "notified": True}
    return pl.DataFrame([{k: {**base, **r}.get(k) for k in ALERT_EPISODE_SCHEMA} for r in rows],
                        schema=ALERT_EPISODE_SCHEMA)


def _alert(frames, ts: float, cell: str, rule: str, cycle: int) -> pl.DataFrame:
    return frames.alerts({"ts": ts, "cell_id": cell, "rule": rule, "cycle": cycle, "group": "A"})


def test_episodes_upsert_read_filter_and_count(store: Store, frames) -> None:
    e1 = _episodes({"cell_id": "c1", "rule": "outlier_discharge_ah", "start_ts": 100.0,
                    "start_cycle": 18, "last_ts": 100.0, "last_cycle": 18, "worst_value": 2.1})
    e2 = _episodes({"cell_id": "c2", "rule": "over_temperature", "start_ts": 50.0, "start_cycle": 3,
                    "last_ts": 50.0, "last_cycle": 3, "severity": "critical", "worst_value": 61.0},
                   {"cell_id": "c3", "rule": "over_temperature", "start_ts": 60.0, "start_cycle": 4,
                    "last_ts": 60.0, "last_cycle": 4, "notified": False, "worst_value": 62.0})
    batch = CommitBatch(alert_episodes=pl.concat([e1, e2]),
                        alerts=pl.concat([_alert(frames, 100.0, "c1", "outlier_discharge_ah", 18),
                                          _alert(frames, 50.0, "c2", "over_temperature", 3)]))
    store.commit(batch)
    store.commit(batch)  # a replay changes nothing
    got = store.alert_episodes()
    assert got.select("cell_id", "start_ts").rows() == [("c1", 100.0), ("c3", 60.0), ("c2", 50.0)]
    assert got.schema["start_cycle"] == pl.Int64 and got.schema["notified"] == pl.Boolean
    assert got.filter(pl.col("cell_id") == "c3")["alert_id"].to_list() == [None]  # suppressed
    assert store.alerts().height == 2
    # The episode goes on and resolves: the same identity, updated in place.
    store.commit(CommitBatch(alert_episodes=e1.with_columns(
        last_ts=pl.lit(800.0), last_cycle=pl.lit(25, pl.Int64), occurrences=pl.lit(8, pl.Int64),
        worst_value=pl.lit(2.4), state=pl.lit("resolved"), resolved_ts=pl.lit(1100.0),
        resolved_cycle=pl.lit(28, pl.Int64))))
    one = store.alert_episodes(cell_id="c1").row(0, named=True)
    assert (one["state"], one["occurrences"], one["last_cycle"], one["resolved_cycle"],
            one["worst_value"]) == ("resolved", 8, 25, 28, 2.4)
    assert one["updated_at"] is not None and store.alert_episodes().height == 3
    assert store.alert_episodes(state="open")["cell_id"].to_list() == ["c3", "c2"]
    assert store.alert_episodes(state="resolved", rule="outlier_discharge_ah").height == 1
    assert store.alert_episodes(notified=False)["cell_id"].to_list() == ["c3"]
    assert store.alert_episodes(limit=1, offset=1)["cell_id"].to_list() == ["c3"]
    # The acknowledgement of the notification shows on its episode.
    assert store.ack_alert(int(one["alert_id"]), by="alice")
    acked = store.alert_episodes(cell_id="c1").row(0, named=True)
    assert (acked["acknowledged"], acked["acknowledged_by"]) == (True, "alice")
    assert store.alert_episodes(cell_id="c2")["acknowledged"].to_list() == [False]
    counts = store.episode_counts()
    assert counts.rows() == [("outlier_discharge_ah", 0, 1, 0), ("over_temperature", 2, 0, 1)]
    with pytest.raises(ValidationError, match="state must be"):
        store.alert_episodes(state="closed")


def test_malformed_episodes_refused_before_any_write(store: Store, frames) -> None:
    bad = _episodes({"cell_id": "c1", "rule": "r", "start_ts": 1.0, "state": "maybe"})
    with pytest.raises(SchemaError, match="open or resolved"):
        store.commit(CommitBatch(alert_episodes=bad, alerts=_alert(frames, 1.0, "c1", "r", 1),
                                 checkpoints=[Checkpoint("alert-episodes/x", b"s", {})]))
    with pytest.raises(SchemaError, match="start_ts"):
        store.commit(CommitBatch(alert_episodes=bad.drop("start_ts")))
    assert store.alerts().height == 0 and store.alert_episodes().height == 0
    assert store.load_checkpoint("alert-episodes/x") is None
    assert store.episode_counts().height == 0
