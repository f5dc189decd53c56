"""Alert episodes (chargetracker.episodes): hand-made cases (open, update, resolve, reopen,
rate limit, stale verdicts), any split into batches equals one batch, and the state's
byte form survives a restart."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.episodes import (
    EpisodeKeys,
    EpisodePolicy,
    EpisodeState,
    episode_frame,
    observations,
    update_episodes,
)
from chargetracker.errors import ConfigError, SchemaError


def _obs(rows: list[tuple[str, str, int, bool, float]]) -> pl.DataFrame:
    """(cell, rule, cycle, hit, value) -> observations; ts = 100 s x cycle, threshold 1."""
    hits = [r for r in rows if r[3]]
    alerts = pl.DataFrame({
        "cell_id": [r[0] for r in hits], "rule": [r[1] for r in hits],
        "cycle": [r[2] for r in hits], "ts": [100.0 * r[2] for r in hits],
        "value": [r[4] for r in hits], "threshold": [1.0] * len(hits),
        "severity": ["warning"] * len(hits), "message": [f"{r[1]} in cycle {r[2]}" for r in hits],
    }, schema_overrides={"cycle": pl.Int64, "value": pl.Float64, "threshold": pl.Float64})
    judged = pl.DataFrame({"cell_id": [r[0] for r in rows], "rule": [r[1] for r in rows],
                           "cycle": [r[2] for r in rows], "ts": [100.0 * r[2] for r in rows]},
                          schema_overrides={"cycle": pl.Int64})
    return observations(alerts, judged)


def _run(batches: list[list[tuple[str, str, int, bool, float]]], policy: EpisodePolicy | None = None,
         state: EpisodeState | None = None) -> tuple[EpisodeState, pl.DataFrame, pl.DataFrame]:
    """Feed batches through a restart each (state to bytes and back); the last version of
    each episode (by identity) and every notification."""
    state = state or EpisodeState()
    eps, notes = [], []
    for rows in batches:
        state = EpisodeState.from_bytes(state.to_bytes())
        state, up = update_episodes(state, _obs(rows), policy or EpisodePolicy())
        eps.append(up.episodes)
        notes.append(up.notifications)
    ep = pl.concat(eps)
    last = ep.unique(subset=["subject", "rule", "start_ts"], keep="last", maintain_order=True)
    return state, last.sort(["subject", "rule", "start_ts"]), pl.concat(notes)


def _series(cell: str, rule: str, hits: set[int], cycles: range, value: float = 2.0):
    return [(cell, rule, c, c in hits, value + c / 100) for c in cycles]


def test_demo_case_one_outlier_for_eight_cycles_is_one_episode() -> None:
    rows = _series("lfp-standard-024", "outlier_discharge_ah", set(range(18, 26)), range(1, 31))
    _, ep, notes = _run([rows])
    assert ep.height == 1 and notes.height == 1
    e = ep.row(0, named=True)
    assert (e["start_pos"], e["last_pos"], e["occurrences"]) == (18.0, 25.0, 8)
    assert e["state"] == "resolved" and e["resolved_pos"] == 28.0  # 3rd clean cycle: 26, 27, 28
    assert e["worst_value"] == pytest.approx(2.25) and e["message"].endswith("cycle 25")
    n = notes.row(0, named=True)
    assert (n["ts"], n["pos"], n["message"]) == (1800.0, 18.0, "outlier_discharge_ah in cycle 18")


def test_any_split_into_batches_gives_the_same_episodes_and_notifications() -> None:
    rows = (_series("a", "r", {3, 4, 5, 9, 14, 15}, range(1, 25))
            + _series("b", "r", {2, 20, 21}, range(1, 25)) + _series("a", "q", {7}, range(1, 25)))
    _, one, notes_one = _run([rows])
    for size in (1, 2, 5, 7):
        batches = [[r for r in rows if lo <= r[2] < lo + size] for lo in range(1, 25, size)]
        _, split, notes_split = _run(batches)
        assert_frame_equal(split, one)
        assert_frame_equal(notes_split.sort(["ts", "subject", "rule"]), notes_one)


def test_open_update_resolve_and_reopen() -> None:
    # Hits 3-5, two clean cycles (6, 7: the episode stays open), hit 8, then three clean
    # cycles resolve it at 11; a hit at 15 opens a second episode, still open at 16.
    rows = _series("a", "r", {3, 4, 5, 8, 15}, range(1, 17))
    state, ep, notes = _run([rows])
    assert ep.select("start_pos", "last_pos", "occurrences", "state", "resolved_pos").rows() == [
        (3.0, 8.0, 4, "resolved", 11.0), (15.0, 15.0, 1, "open", None)]
    assert notes.get_column("pos").to_list() == [3.0, 15.0]
    assert state.open_count == 1
    # The open episode continues in the next batch and resolves after three clean cycles.
    state, up = update_episodes(state, _obs(_series("a", "r", {17}, range(17, 21))))
    assert up.notifications.height == 0
    assert up.episodes.select("start_pos", "last_pos", "occurrences", "state", "resolved_pos").rows() == [
        (15.0, 17.0, 2, "resolved", 20.0)]


def test_resolved_notification_when_asked() -> None:
    rows = _series("a", "r", {3, 4}, range(1, 9))
    _, _, notes = _run([rows], EpisodePolicy(resolve_after=2, notify_resolved=True))
    assert notes.select("rule", "pos", "severity").rows() == [("r", 3.0, "warning"),
                                                              ("r_resolved", 6.0, "info")]
    assert "cleared after 2 clean" in notes.get_column("message")[1]


def test_resend_of_the_same_batch_counts_nothing_twice() -> None:
    rows = _series("a", "r", {3, 4, 5}, range(1, 6))
    state, ep, notes = _run([rows])
    again, up = update_episodes(state, _obs(rows))
    assert up.episodes.height == 0 and up.notifications.height == 0
    assert_frame_equal(again.tracks, state.tracks)


def test_open_cycle_seen_twice_is_one_occurrence_and_worst_grows() -> None:
    # An open cycle's snapshot is judged in two batches with a growing value.
    state, up = update_episodes(EpisodeState(), _obs([("a", "t", 5, True, 61.0)]))
    assert up.notifications.height == 1
    state, up = update_episodes(state, _obs([("a", "t", 5, True, 65.0)]))
    assert up.notifications.height == 0
    e = up.episodes.row(0, named=True)
    assert (e["occurrences"], e["worst_value"]) == (1, 65.0)


def test_stale_verdicts_are_ignored_and_a_late_hit_at_the_last_position_counts() -> None:
    state, _ = update_episodes(EpisodeState(), _obs(_series("a", "r", {3}, range(1, 6))))
    # Cycle 3 judged clean again (a late re-evaluation) does not touch the open episode.
    state, up = update_episodes(state, _obs([("a", "r", 4, True, 9.0)]))
    assert up.episodes.height == 0
    # Cycle 5 was judged clean; judged again as a hit it replaces that verdict.
    state, up = update_episodes(state, _obs([("a", "r", 5, True, 9.0)]))
    e = up.episodes.row(0, named=True)
    assert (e["start_pos"], e["last_pos"], e["occurrences"], e["state"]) == (3.0, 5.0, 2, "open")
    # Two clean cycles after 5 are not enough, the third resolves it.
    state, up = update_episodes(state, _obs(_series("a", "r", set(), range(6, 9))))
    assert up.episodes.get_column("resolved_pos").to_list() == [8.0]


def test_rate_limit_per_rule_per_hour_counts_suppressed_episodes() -> None:
    # 5 cells open an episode of rule "r" in the same hour (ts 100 .. 500), 1 of rule "q".
    rows = [(f"c{i}", "r", i + 1, True, 2.0) for i in range(5)] + [("c0", "q", 1, True, 2.0)]
    policy = EpisodePolicy(max_new_per_window=2)
    state, up = update_episodes(EpisodeState(), _obs(rows), policy)
    assert up.suppressed == 3
    assert up.notifications.select("subject", "rule").sort("rule", "subject").rows() == [
        ("c0", "q"), ("c0", "r"), ("c1", "r")]
    flags = dict(zip(up.episodes.filter(pl.col("rule") == "r")["subject"],
                     up.episodes.filter(pl.col("rule") == "r")["notified"], strict=True))
    assert flags == {"c0": True, "c1": True, "c2": False, "c3": False, "c4": False}
    assert state.suppressed_total() == {"q": 0, "r": 3}
    # Same hour, next batch: the window is full. The next hour notifies again.
    state, up = update_episodes(state, _obs([("c9", "r", 30, True, 2.0)]), policy)
    assert up.notifications.height == 0 and up.suppressed == 1
    state, up = update_episodes(state, _obs([("c8", "r", 40, True, 2.0)]), policy)
    assert up.notifications.height == 1 and state.suppressed_total()["r"] == 4
    # A suppressed episode stays suppressed while it lasts.
    state, up = update_episodes(state, _obs([("c2", "r", 41, True, 3.0)]), policy)
    assert up.episodes.filter(pl.col("subject") == "c2")["notified"].to_list() == [False]


def test_general_keys_and_renaming() -> None:
    alerts = pl.DataFrame({"meter_id": ["m1", "m1"], "rule": ["spike", "spike"],
                           "ts": [10.0, 20.0], "value": [900.0, 950.0], "threshold": [500.0, 500.0]})
    keys = EpisodeKeys(subject="meter_id", position="ts")
    _, up = update_episodes(EpisodeState(), observations(alerts, keys=keys))
    ep = episode_frame(up.episodes, keys, position_dtype=pl.Float64())
    assert {"meter_id", "start_ts", "last_ts", "resolved_ts"} <= set(ep.columns)
    assert ep.select("meter_id", "start_ts", "last_ts", "occurrences", "worst_value").rows() == [
        ("m1", 10.0, 20.0, 2, 950.0)]


def test_bad_input_and_config_are_refused_clearly() -> None:
    with pytest.raises(SchemaError, match="lack column"):
        observations(pl.DataFrame({"cell_id": ["a"], "rule": ["r"]}))
    with pytest.raises(SchemaError, match="not an alert-episode state"):
        EpisodeState.from_bytes(b"garbage")
    with pytest.raises(ConfigError, match="at least 1"):
        EpisodePolicy(resolve_after=0)
    with pytest.raises(ConfigError, match=">= 0"):
        EpisodePolicy(max_new_per_window=-1)
