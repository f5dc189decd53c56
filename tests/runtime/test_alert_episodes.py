"""Alert episodes through the pipeline and the store: a cell that stays a group outlier
for eight cycles is one episode and one alert (the demo's lfp-standard-024 raised eight);
a restart in the middle and a replay into a fresh store give the same episodes and never
a second notification; limit episodes with the default config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.config import AlertConfig, Settings
from chargetracker.errors import StoreError
from chargetracker.runtime.pipeline import Pipeline
from chargetracker.runtime.step import episode_checkpoint
from chargetracker.schema import CELL_SCHEMA, MEASUREMENT_SCHEMA
from chargetracker.stores.duckdb import DuckDBStore

T0 = 1_700_000_000.0
CYCLES = 32
#: Normal cells' discharge capacity, Ah (a small spread: the robust z needs a MAD > 0).
NORMAL = {"a1": 1.00, "a2": 1.01, "a3": 0.99, "a4": 1.02, "a5": 1.00}
OUTLIER, FADED = "a5", range(18, 26)


def _cell_cycles(cell: str, hot: set[int] = frozenset()) -> pl.DataFrame:  # type: ignore[assignment]
    """Labelled cycles: 1 h charge at 1 A, 1 h discharge at the cell's capacity (0.8 Ah for
    the outlier in FADED cycles), 11 samples each; 80 degC in ``hot`` cycles."""
    ts, cur, cyc, step, temp = [], [], [], [], []
    n = 11
    for c in range(1, CYCLES + 1):
        cap = 0.8 if cell == OUTLIER and c in FADED else NORMAL[cell]
        t0 = T0 + (c - 1) * 7300.0
        for k, amps in ((0, 1.0), (1, -cap)):
            for i in range(n):
                ts.append(t0 + k * 3650.0 + i * 360.0)
                cur.append(amps)
                cyc.append(c)
                step.append(2 * c + k)
                temp.append(80.0 if c in hot else 25.0)
    m = len(ts)
    return pl.DataFrame({"cell_id": [cell] * m, "ts": ts, "voltage_v": np.where(np.array(cur) > 0, 3.9, 3.4),
                         "current_a": cur, "temperature_c": temp, "cycle": cyc, "step": step},
                        schema_overrides={"cycle": pl.Int64, "step": pl.Int64}).cast(
        {c: t for c, t in MEASUREMENT_SCHEMA.items() if c in ("cycle", "step")})


def _fleet(hot: dict[str, set[int]] | None = None) -> pl.DataFrame:
    return pl.concat([_cell_cycles(c, (hot or {}).get(c, set())) for c in NORMAL]).sort("ts", "cell_id")


def _cells() -> pl.DataFrame:
    return pl.DataFrame({"cell_id": list(NORMAL), "group": ["A"] * len(NORMAL)}).with_columns(
        pl.lit(None).cast(t).alias(c) for c, t in CELL_SCHEMA.items() if c not in ("cell_id", "group"))


def _feed(store: DuckDBStore, frame: pl.DataFrame, settings: Settings, *, batches: int,
          finish: bool = True) -> None:
    pipe = Pipeline(store, settings)
    pipe.register_cells(_cells())
    bounds = np.linspace(0, frame.height, batches + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pipe.ingest(frame[int(lo):int(hi)], source="fleet", position=int(hi))
        assert pipe.position("fleet") == int(hi) or i < 0
    if finish:
        pipe.finish(source="fleet")


def _episodes(store: DuckDBStore) -> pl.DataFrame:
    return store.alert_episodes(limit=1000).drop("updated_at", "alert_id", "acknowledged",
                                                 "acknowledged_by", "acknowledged_at").sort(
        "cell_id", "rule", "start_ts")


SETTINGS = Settings(alerts=AlertConfig(over_temperature_c=None, min_coulombic_efficiency=None))


def test_a_cell_that_stays_an_outlier_for_eight_cycles_is_one_episode(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        _feed(store, _fleet(), SETTINGS, batches=20)
        alerts = store.alerts(limit=1000)
        assert alerts.select("cell_id", "rule", "cycle").rows() == [(OUTLIER, "outlier_discharge_ah", 18)]
        ep = store.alert_episodes().row(0, named=True)
        assert store.alert_episodes().height == 1
        assert (ep["cell_id"], ep["start_cycle"], ep["last_cycle"], ep["occurrences"]) == (OUTLIER, 18, 25, 8)
        assert (ep["state"], ep["resolved_cycle"], ep["notified"]) == ("resolved", 28, True)
        assert 0.8 < ep["worst_value"] < 0.82 and ep["alert_id"] == alerts["id"][0]
        assert ep["start_ts"] == alerts["ts"][0]
        cp = store.load_checkpoint(episode_checkpoint("embedded"))
        assert cp is not None and len(cp.state) < 10_000


def test_restart_and_replay_give_the_same_episodes_and_one_notification(tmp_path: Path) -> None:
    frame = _fleet()
    with DuckDBStore(tmp_path / "once.duckdb") as store:
        _feed(store, frame, SETTINGS, batches=1)
        once, once_alerts = _episodes(store), store.alerts().drop("id", "acknowledged_at")
    # The same data in 13 batches, the process stopping after the 7th, two thirds in (mid-episode): the
    # next process resumes from the checkpoint (engine and episodes) at the committed position.
    path = tmp_path / "restart.duckdb"
    cut = frame.height * 2 // 3
    with DuckDBStore(path) as store:
        _feed(store, frame[:cut], SETTINGS, batches=7, finish=False)
        mid = store.alert_episodes()
        assert mid["state"].to_list() == ["open"] and store.alerts().height == 1
    with DuckDBStore(path) as store:
        pipe = Pipeline(store, SETTINGS)
        assert pipe.position("fleet") == cut
        rest = frame[cut:]
        for part in np.array_split(np.arange(rest.height), 6):
            pipe.ingest(rest[int(part[0]):int(part[-1]) + 1], source="fleet")
        pipe.finish(source="fleet")
        assert_frame_equal(_episodes(store), once)
        assert_frame_equal(store.alerts().drop("id", "acknowledged_at"), once_alerts)
        # Re-sending already committed batches raises nothing new.
        pipe.ingest(frame[cut - 500:cut], source="fleet")
        assert store.alerts().height == 1
        assert_frame_equal(_episodes(store), once)


def test_limit_episodes_with_the_default_config(tmp_path: Path) -> None:
    # a2 runs hot (80 degC > 60 degC) in cycles 5-9 and 20, a3 in cycle 12: three episodes
    # (a2's second starts after more than three clean cycles), three critical alerts.
    frame = _fleet({"a2": set(range(5, 10)) | {20}, "a3": {12}})
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        _feed(store, frame, Settings(), batches=9)
        hot = store.alert_episodes(rule="over_temperature").sort("start_ts")
        assert hot.select("cell_id", "start_cycle", "last_cycle", "occurrences", "state").rows() == [
            ("a2", 5, 9, 5, "resolved"), ("a3", 12, 12, 1, "resolved"), ("a2", 20, 20, 1, "resolved")]
        temp = store.alerts(limit=1000).filter(pl.col("rule") == "over_temperature")
        assert sorted(temp.select("cell_id", "cycle").rows()) == [("a2", 5), ("a2", 20), ("a3", 12)]
        assert set(temp["severity"]) == {"critical"}
        counts = store.episode_counts()
        assert counts.filter(pl.col("rule") == "over_temperature").row(0) == ("over_temperature", 0, 3, 0)


def test_episodes_off_raise_one_alert_per_cycle(tmp_path: Path) -> None:
    settings = Settings(alerts=AlertConfig(over_temperature_c=None, min_coulombic_efficiency=None,
                                           episodes=False))
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        _feed(store, _fleet(), settings, batches=20)
        cycles = store.alerts(limit=1000).filter(pl.col("cell_id") == OUTLIER)["cycle"].to_list()
        assert cycles == [18]  # the rule's own "becomes an outlier" filter, as before
        assert store.alert_episodes().height == 0


def test_step_without_a_checkpoint_keeps_episodes_within_its_batch() -> None:
    from chargetracker.kinds.cell import CellKind
    from chargetracker.runtime.step import AlertPolicy, StepContext, step

    frame = _fleet({"a2": set(range(5, 10))})
    kind = CellKind(Settings(alerts=AlertConfig(min_coulombic_efficiency=None)))
    _, commit, result = step(kind.new_state(), frame, StepContext(kind, "t"))
    assert commit.alerts is not None and commit.alerts.select("cell_id", "rule", "cycle").rows() == [
        ("a2", "over_temperature", 5)]
    assert result.alerts == 1 and not commit.checkpoints
    assert commit.alert_episodes is not None and commit.alert_episodes["occurrences"].to_list() == [5]
    _, commit, _ = step(kind.new_state(), frame, StepContext(kind, "t", checkpoint="cp"))
    assert [c.name for c in commit.checkpoints] == ["cp", episode_checkpoint("cp")]
    _, per_hit, _ = step(kind.new_state(), frame, StepContext(kind, "t", alerts=AlertPolicy(episodes=False)))
    assert per_hit.alerts is not None and per_hit.alerts["cycle"].to_list() == [5, 6, 7, 8, 9]
    assert per_hit.alert_episodes is None


def test_episode_settings_are_checked_where_they_are_read() -> None:
    import pytest

    from chargetracker.errors import ConfigError
    from chargetracker.runtime.config import pipeline_config_from_mapping

    cfg = pipeline_config_from_mapping({"alerts": {"resolve_after_cycles": 5, "notify_resolved": True,
                                                   "max_new_episodes_per_hour": 2}})
    assert cfg.settings.alerts.resolve_after_cycles == 5 and cfg.settings.alerts.notify_resolved
    for bad in ({"resolve_after_cycles": 0}, {"max_new_episodes_per_hour": -1}):
        with pytest.raises(ConfigError, match="alerts"):
            pipeline_config_from_mapping({"alerts": bad})


def test_the_pipeline_keeps_its_episode_state_and_reloads_it_after_a_failed_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The episode state is read from the store once (at the first write), then kept in
    memory from commit to commit: the same episodes and alerts as one batch; a failed
    commit drops it, and the next write reads the last committed one again."""
    frame = _fleet()
    with DuckDBStore(tmp_path / "once.duckdb") as store:
        _feed(store, frame, SETTINGS, batches=1)
        once, once_alerts = _episodes(store), store.alerts().drop("id", "acknowledged_at")
    with DuckDBStore(tmp_path / "kept.duckdb") as store:
        loads: list[str] = []
        load = store.load_checkpoint
        monkeypatch.setattr(store, "load_checkpoint", lambda name: loads.append(name) or load(name))
        pipe = Pipeline(store, SETTINGS)
        pipe.register_cells(_cells())
        parts = np.array_split(np.arange(frame.height), 12)
        for part in parts[:6]:
            pipe.ingest(frame[int(part[0]):int(part[-1]) + 1], source="fleet")
        assert loads.count(episode_checkpoint("embedded")) == 1
        # A commit that fails: the batch is lost and both states are reloaded.
        commit = store.commit

        def fail(batch: Any) -> None:
            raise StoreError("disk full")

        monkeypatch.setattr(store, "commit", fail)
        lost = parts[6]
        with pytest.raises(StoreError):
            pipe.ingest(frame[int(lost[0]):int(lost[-1]) + 1], source="fleet")
        monkeypatch.setattr(store, "commit", commit)
        for part in parts[6:]:       # re-sent from the last committed position
            pipe.ingest(frame[int(part[0]):int(part[-1]) + 1], source="fleet")
        pipe.finish(source="fleet")
        assert loads.count(episode_checkpoint("embedded")) == 2
        assert_frame_equal(_episodes(store), once)
        assert_frame_equal(store.alerts().drop("id", "acknowledged_at"), once_alerts)
