"""The paced fleet simulator as a live source.

Wraps the resumable, seeded :class:`~chargetracker.sim.fleet.Fleet`. Pacing is *time
acceleration*: at ``acceleration`` = 3600, one wall-clock second releases one simulated
hour of samples; ``math.inf`` runs at full speed (as fast as the pipeline takes them).

Position: ``{"sample": k, "fleet": fingerprint}`` where ``k`` is the index of the next
sample period to generate (simulated time ``k * sample_period_s``). The fleet is
deterministic by seed and gives the same rows however it is split into chunks, so
:meth:`SimulatorSource.seek` regenerates (and discards) the first ``k`` periods and the
run continues with exactly the samples it would have produced without the restart.
The fingerprint (seed, cell ids, timing) guards against resuming a store with a
different fleet.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

import polars as pl

from ..errors import ConfigError, SourceError
from ..sim.fleet import Fleet
from ..sim.fleet_config import FleetConfig
from .base import Batch

__all__ = ["SimulatorSource", "fleet_fingerprint"]

#: Samples (cells x periods) regenerated per step while seeking, to bound memory.
_SEEK_SAMPLES = 4_000_000


def fleet_fingerprint(config: FleetConfig) -> str:
    """Short hash of what decides the samples: seed, cells, timing, realism settings."""
    faults = config.faults
    desc = {
        "seed": config.seed,
        "groups": [[g.name, g.chemistry, g.test_type, g.count, g.nominal_capacity_ah,
                    g.ambient_c, repr(g.ageing)] for g in config.groups],
        "dt": config.sample_period_s,
        "duration": config.duration_s,
        "start": config.start_epoch,
        "labels": config.include_labels,
        "soc": config.initial_soc,
        "noise": repr(config.noise),
        # frozenset repr order depends on string hashing: sort it.
        "faults": [sorted(faults.enabled), repr(faults.__class__(**{
            f: getattr(faults, f) for f in faults.__dataclass_fields__ if f != "enabled"}))],
        "ageing": repr(config.ageing),
        "protocols": repr(config.protocols),
    }
    blob = json.dumps(desc, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class SimulatorSource:
    """A simulated fleet, paced against the wall clock.

    Parameters
    ----------
    config:
        The fleet (groups, seed, duration; ``duration_s=None`` runs forever).
    name:
        Source name (keys the committed position).
    acceleration:
        Simulated seconds per wall second; None takes ``config.time_acceleration``;
        ``math.inf`` (or 0) is full speed.
    clock:
        Monotonic wall clock, s (injectable for tests).
    """

    def __init__(self, config: FleetConfig, *, name: str = "simulator",
                 acceleration: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        accel = config.time_acceleration if acceleration is None else float(acceleration)
        if accel == 0:
            accel = math.inf
        if not accel > 0:
            raise ConfigError(f"simulator {name!r}: acceleration must be > 0 (or inf), got {accel}")
        self.name = name
        self.config = config
        self.acceleration = accel
        self.fingerprint = fleet_fingerprint(config)
        self._clock = clock
        self._fleet = Fleet(config)
        self._dt = float(config.sample_period_s)
        self._k = 0                    # next sample period to generate
        #: Simulated seconds requested from the fleet so far. Each request is computed as
        #: ``k * dt - requested`` so the float sum never drifts from ``k * dt`` (a drifting
        #: sum could make the fleet round to a different sample period).
        self._requested = 0.0
        self._wall0: float | None = None
        self._k0 = 0                   # sample period at wall0 (pacing origin)
        self._send_cells = True
        self._cells: pl.DataFrame | None = None

    # -- properties ---------------------------------------------------------------------
    @property
    def fleet(self) -> Fleet:
        return self._fleet

    @property
    def n_cells(self) -> int:
        return self._fleet.n_cells

    @property
    def cells(self) -> pl.DataFrame:
        """Cell metadata of the fleet (CELL_SCHEMA)."""
        if self._cells is None:
            self._cells = self._fleet.cells
        return self._cells

    @property
    def done(self) -> bool:
        return self._fleet.done

    @property
    def position(self) -> dict[str, Any]:
        return {"sample": self._k, "fleet": self.fingerprint}

    @property
    def pacing_origin(self) -> tuple[float, int] | None:
        """(wall clock, sample period) at which pacing started, or None before the first
        poll. Sample ``k`` is released at ``wall + (k + 1 - period) * dt / acceleration``
        (it shows the cell at the end of its period)."""
        return None if self._wall0 is None else (self._wall0, self._k0)

    @property
    def sim_time_s(self) -> float:
        """Simulated time delivered so far, s."""
        return self._k * self._dt

    # -- Source -------------------------------------------------------------------------
    def poll(self, max_rows: int) -> Batch | None:
        """The samples the pacing allows now, at most ``max_rows // n_cells`` periods
        (at least one period, so a fleet larger than ``max_rows`` still advances)."""
        if self.done:
            return None
        now = self._clock()
        if self._wall0 is None:
            self._wall0, self._k0 = now, self._k
        total = self._fleet.n_total
        k_stop = self._k + max(1, max_rows // max(self.n_cells, 1))
        if math.isfinite(self.acceleration):
            allowed = self._k0 + math.floor((now - self._wall0) * self.acceleration / self._dt + 1e-9)
            k_stop = min(k_stop, allowed)
        if total is not None:
            k_stop = min(k_stop, total)
        if k_stop <= self._k and not (total is not None and self._k >= total):
            return None
        frame = self._advance_to(k_stop)
        cells = None
        if self._send_cells:
            cells, self._send_cells = self.cells, False
        return Batch(frame, self.position, cells=cells)

    def seek(self, position: Any) -> None:
        """Regenerate up to the committed sample period ``position["sample"]``."""
        if position is None:
            target = 0
        else:
            if not isinstance(position, dict) or "sample" not in position:
                raise SourceError(f"simulator {self.name!r}: unreadable position {position!r}")
            if position.get("fleet") != self.fingerprint:
                raise SourceError(
                    f"simulator {self.name!r}: the store's checkpoint was made with a different "
                    f"fleet (fingerprint {position.get('fleet')} != {self.fingerprint}: seed, "
                    "cells or timing changed); use a new store or the original fleet settings"
                )
            target = int(position["sample"])
        if target < self._k:
            self._fleet = Fleet(self.config)
            self._k, self._requested = 0, 0.0
        step = max(1, _SEEK_SAMPLES // max(self.n_cells, 1))
        total = self._fleet.n_total
        if total is not None:
            target = min(target, total)
        while self._k < target:
            k_next = min(target, self._k + step)
            self._advance_to(k_next)   # discarded: already committed
        self._wall0 = None
        self._send_cells = True

    def close(self) -> None:
        pass

    def _advance_to(self, k_stop: int) -> pl.DataFrame:
        seconds = max(0.0, k_stop * self._dt - self._requested)
        frame = self._fleet.advance(seconds)
        self._requested += seconds
        self._k = self._fleet.sample_index
        if self._k != max(k_stop, 0) and not (self._fleet.n_total is not None
                                               and self._k >= self._fleet.n_total):
            raise SourceError(f"simulator {self.name!r}: fleet at sample {self._k}, expected {k_stop}")
        return frame

    def __repr__(self) -> str:
        return (f"SimulatorSource({self.name!r}, cells={self.n_cells}, "
                f"acceleration={self.acceleration:g}, sample={self._k})")
