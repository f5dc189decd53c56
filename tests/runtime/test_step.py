"""The one micro-batch step (runtime/step.py): validation once, alert switches, commit
assembly, and combining the commits of several partitions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from chargetracker.config import AlertConfig, Settings
from chargetracker.engine import flush, new_state, update
from chargetracker.kinds.cell import CellKind
from chargetracker.runtime.step import AlertPolicy, StepContext, combine, finish, step
from chargetracker.schema import Validated


@dataclass(frozen=True)
class CountingCells(CellKind):
    """The cell kind, counting how often a batch is validated."""

    calls: list[int] = None  # type: ignore[assignment]

    def validate(self, frame: pl.DataFrame, *, source: str) -> Validated:
        self.calls.append(frame.height)
        return super().validate(frame, source=source)


def _cycles_frame() -> pl.DataFrame:
    # Two full cycles of one cell at 1 A, 80 °C (over the default 60 °C limit), a NaN row.
    ts, cur = [], []
    t = 0.0
    for _ in range(2):
        for a in (1.0, 0.0, -1.0, 0.0):
            for _ in range(20):
                ts.append(t)
                cur.append(a)
                t += 60.0
    n = len(ts)
    return pl.DataFrame({"cell_id": ["c1"] * n + ["c1"], "ts": ts + [t], "voltage_v": [3.7] * n + [float("nan")],
                         "current_a": cur + [1.0], "temperature_c": [80.0] * n + [25.0]})


def test_step_validates_once_and_matches_the_engine() -> None:
    frame = _cycles_frame()
    kind = CountingCells(Settings(), calls=[])
    state, commit, result = step(kind.new_state(), frame,
                                 StepContext(kind, "t", checkpoint="cp", position={"t": 1}))
    assert kind.calls == [frame.height]
    ref_state, ref = update(new_state(), frame, source="t")
    assert result.accepted == ref.accepted == frame.height - 1
    assert result.rejected.height == 1 and result.rejected["field"][0] == "voltage_v"
    assert commit.cycles is not None and commit.cycles.equals(ref.cycles)
    assert commit.steps is not None and commit.steps.equals(ref.steps)
    assert commit.measurements is not None and commit.measurements.height == ref.accepted
    assert commit.counters == {"t": {"accepted": ref.accepted, "rejected": 1}}
    assert commit.checkpoints[0].name == "cp" and commit.checkpoints[0].position == {"t": 1}
    assert commit.checkpoints[0].state == ref_state.to_bytes()
    assert commit.alerts is not None
    assert set(commit.alerts["rule"].to_list()) == {"over_temperature"}
    _, flushed = finish(state, StepContext(kind, "t"))
    _, ref_flush = flush(ref_state)
    assert flushed.commit.cycles is not None and flushed.commit.cycles.equals(ref_flush.cycles)


def test_alert_policy_switches_rules_by_name() -> None:
    frame = _cycles_frame()
    kind = CellKind(Settings(alerts=AlertConfig(over_temperature_c=60.0)))
    _, on, _ = step(kind.new_state(), frame, StepContext(kind, alerts=AlertPolicy(limits=True)))
    _, off, _ = step(kind.new_state(), frame, StepContext(kind, alerts=AlertPolicy(limits=False)))
    _, none, _ = step(kind.new_state(), frame, StepContext(kind, alerts=AlertPolicy.none()))
    assert on.alerts is not None and on.alerts.height > 0
    assert off.alerts is not None and off.alerts.height == 0
    assert none.alerts is not None and none.alerts.height == 0


def test_dead_letters_name_positions_and_combine_adds_counters() -> None:
    frame = _cycles_frame()
    kind = CellKind()
    offsets = np.arange(frame.height, dtype=np.int64) + 1000
    own = pl.DataFrame({"source": ["k"], "row": [7], "cell_id": [None], "ts": [None],
                        "field": ["value"], "reason": ["unreadable"], "payload": [""]})
    _, a, _ = step(kind.new_state(), frame, StepContext(kind, "k", rejected=own,
                                                        row_positions=offsets, counter="kafka"))
    assert a.dead_letters is not None
    assert a.dead_letters["row"].to_list() == [7, 1000 + frame.height - 1]
    _, b, _ = step(kind.new_state(), frame.head(10), StepContext(kind, "k", counter="kafka"))
    both = combine([a, b])
    assert both.counters == {"kafka": {"accepted": frame.height - 1 + 10, "rejected": 2}}
    assert both.measurements is not None and both.measurements.height == frame.height - 1 + 10
