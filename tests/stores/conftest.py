"""Store fixtures: the contract suite runs once per backend in STORE_BACKENDS.

Adding a backend is one entry: a function ``(request, tmp_path) -> url`` giving a URL
of a fresh, empty store (for PostgreSQL: a new database on a server started by a
session fixture). ``open_store(url)`` must open it, and opening the same URL again
must reach the same data (the persistence test reopens ``store.url``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from chargetracker.schema import (
    CELL_SCHEMA,
    CYCLE_SCHEMA,
    DEAD_LETTER_SCHEMA,
    MEASUREMENT_SCHEMA,
    STEP_SCHEMA,
)
from chargetracker.stores.base import ALERT_SCHEMA, Store
from chargetracker.stores.url import open_store


def _duckdb_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'store.duckdb'}"


def _postgresql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # A fresh migrated database on the session's server (tests/pg.py).
    return request.getfixturevalue("postgres_url")


STORE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "duckdb": _duckdb_url,
    "postgresql": _postgresql_url,
}


@pytest.fixture(params=list(STORE_BACKENDS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return STORE_BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


# -- frame builders (straight from the schema dicts) --------------------------------
def _rows(schema: dict[str, pl.DataType], rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


def cells_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return _rows(CELL_SCHEMA, list(rows))


def measurements_frame(cell_id: str, ts: list[float], *, voltage: float = 3.7,
                       current: float = 1.0) -> pl.DataFrame:
    n = len(ts)
    return pl.DataFrame(
        {"cell_id": [cell_id] * n, "ts": ts, "voltage_v": [voltage + 0.001 * i for i in range(n)],
         "current_a": [current] * n, "temperature_c": [25.0] * n, "cycle": [1] * n,
         "step": [1] * n, "step_time_s": [float(i) for i in range(n)]},
        schema=MEASUREMENT_SCHEMA,
    )


def step_row(cell_id: str, step: int, cycle: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cell_id": cell_id, "step": step, "cycle": cycle, "kind": "charge", "mode": "CC",
        "status": "closed", "start_ts": 100.0 * step, "end_ts": 100.0 * step + 90.0,
        "duration_s": 90.0, "n_samples": 90, "charge_ah": 1.0, "discharge_ah": 0.0,
        "charge_wh": 3.7, "discharge_wh": 0.0, "gap_count": 0,
    }
    row.update(kw)
    return row


def steps_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return _rows(STEP_SCHEMA, list(rows))


def cycle_row(cell_id: str, cycle: int, *, status: str = "closed", discharge_ah: float = 2.0,
              **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cell_id": cell_id, "cycle": cycle, "status": status, "start_ts": 1000.0 * cycle,
        "end_ts": 1000.0 * cycle + 900.0, "duration_s": 900.0, "n_samples": 900, "n_steps": 3,
        "charge_ah": 2.1, "discharge_ah": discharge_ah, "charge_wh": 7.8, "discharge_wh": 7.2,
        "coulombic_efficiency": discharge_ah / 2.1, "energy_efficiency": 7.2 / 7.8,
        "retention": 1.0, "gap_count": 0,
    }
    row.update(kw)
    return row


def cycles_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return _rows(CYCLE_SCHEMA, list(rows))


def alerts_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return _rows(ALERT_SCHEMA, list(rows))


def dead_letters_frame(*rows: dict[str, Any]) -> pl.DataFrame:
    return _rows(DEAD_LETTER_SCHEMA, list(rows))


class Frames:
    """Namespace handed to tests through the ``frames`` fixture."""

    cells = staticmethod(cells_frame)
    measurements = staticmethod(measurements_frame)
    step = staticmethod(step_row)
    steps = staticmethod(steps_frame)
    cycle = staticmethod(cycle_row)
    cycles = staticmethod(cycles_frame)
    alerts = staticmethod(alerts_frame)
    dead_letters = staticmethod(dead_letters_frame)


@pytest.fixture
def frames() -> type[Frames]:
    return Frames
