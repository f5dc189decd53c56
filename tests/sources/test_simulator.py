"""The paced simulator source: pacing, batch bounds, determinism and exact resume."""

from __future__ import annotations

import math

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.errors import SourceError
from chargetracker.sim import Fleet
from chargetracker.sources import SimulatorSource

from ..runtime.fleets import tiny_fleet


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _drain(src: SimulatorSource, max_rows: int) -> list[pl.DataFrame]:
    frames = []
    while not src.done:
        b = src.poll(max_rows)
        assert b is not None
        frames.append(b.frame)
    return frames


def test_pacing_releases_simulated_time_by_acceleration() -> None:
    clock = FakeClock()
    cfg = tiny_fleet(cells=4, hours=2.0, faults=())
    src = SimulatorSource(cfg, acceleration=600.0, clock=clock)
    first = src.poll(10**6)                 # starts the pacing clock: nothing due yet
    assert first is None or first.frame.height == 0
    clock.t += 1.5                          # 1.5 wall s = 900 simulated s
    b = src.poll(10**6)
    assert b is not None and b.position["sample"] == 900
    assert b.frame.height == 900 * 4
    assert b.cells is not None and b.cells.height == 4   # cell metadata with the first batch
    assert src.poll(10**6) is None          # caught up with the wall clock
    clock.t += 10.0
    b = src.poll(1_000)                     # max_rows caps a batch: 250 periods x 4 cells
    assert b is not None and b.frame.height == 1_000 and b.position["sample"] == 1_150
    assert b.cells is None


def test_any_batching_gives_the_fleet_stream_and_ends_done() -> None:
    cfg = tiny_fleet(cells=4, hours=1.5, seed=9)
    expected = pl.concat(list(Fleet(cfg).chunks(seconds=3600.0)))
    src = SimulatorSource(cfg, acceleration=math.inf)
    got = pl.concat(_drain(src, 3_333))
    assert_frame_equal(got, expected)
    assert src.done and src.poll(1000) is None and src.position["sample"] == 5400


@pytest.mark.parametrize("cut", [1, 777, 5399, 5400])
def test_seek_resumes_exactly_after_a_committed_position(cut: int) -> None:
    cfg = tiny_fleet(cells=4, hours=1.5, seed=9)   # duplicates + out-of-order delay rows
    first = SimulatorSource(cfg, acceleration=math.inf)
    head: list[pl.DataFrame] = []
    while first.position["sample"] < cut:
        b = first.poll(4 * min(500, cut - first.position["sample"]))
        assert b is not None
        head.append(b.frame)
    assert first.position["sample"] == cut
    resumed = SimulatorSource(cfg, acceleration=math.inf)
    resumed.seek(first.position)
    tail = _drain(resumed, 2_000)
    whole = pl.concat(_drain(SimulatorSource(cfg, acceleration=math.inf), 10**6))
    assert_frame_equal(pl.concat(head + tail), whole)


def test_seek_refuses_a_different_fleet() -> None:
    a = SimulatorSource(tiny_fleet(cells=4, seed=1))
    b = SimulatorSource(tiny_fleet(cells=4, seed=2))
    with pytest.raises(SourceError, match="different fleet"):
        b.seek(a.position)
    with pytest.raises(SourceError, match="unreadable position"):
        b.seek({"offset": 3})
