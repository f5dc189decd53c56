"""Measurement realism: sensor noise, clock jitter and switchable faults.

All functions are vectorized over a chunk of samples laid out ``(n_samples, n_cells)``
(time-major) and draw their randomness as one fixed-size block per chunk from their own
generator, so the streams are identical however the run is split into chunks. State
that spans chunks (an open dropout gap, a stuck sensor's held value) is carried in
:class:`FaultState`.

Faults (names used by ``--faults`` and the fleet config):

* ``dropouts`` - gaps: runs of ``>= 2`` consecutive samples of a cell are not delivered;
* ``spikes`` - single-sample voltage outliers of ``spike_v`` (+ or -);
* ``stuck`` - a cell's voltage and temperature sensors repeat one value for a window;
* ``duplicates`` - a sample is delivered twice (the copy up to 2 samples later);
* ``out_of_order`` - a sample is delivered 1..``max_delay_samples`` samples late.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError

__all__ = ["NoiseConfig", "FaultConfig", "FAULT_NAMES", "FaultState", "add_noise",
           "apply_spikes", "apply_stuck", "dropout_mask", "delivery_delays"]

FAULT_NAMES: tuple[str, ...] = ("dropouts", "spikes", "stuck", "duplicates", "out_of_order")

F64 = npt.NDArray[np.float64]


def _from_mapping(cls: Any, values: dict[str, Any], what: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except TypeError as exc:
        raise ConfigError(f"{what}: {exc}") from None


@dataclass(frozen=True, slots=True)
class NoiseConfig:
    """Gaussian sensor noise (1 sigma) and timestamp jitter."""

    voltage_sigma_v: float = 0.001
    current_sigma_a: float = 0.0005
    current_rel_sigma: float = 0.0005       # relative to |I|
    temperature_sigma_c: float = 0.1
    jitter_sigma_s: float = 0.01            # clipped to +-0.45 sampling periods

    def __post_init__(self) -> None:
        if any(getattr(self, f.name) < 0 for f in fields(self)):
            raise ConfigError("noise: every sigma must be >= 0")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> NoiseConfig:
        return _from_mapping(cls, values, "noise")  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Which faults are on (``enabled``) and their rates (per sample unless stated)."""

    enabled: frozenset[str] = field(default_factory=frozenset)
    dropout_rate: float = 2e-4            # probability a gap starts at a sample
    dropout_max_s: float = 600.0          # gap length uniform in [2 dt, dropout_max_s]
    spike_rate: float = 2e-4
    spike_v: tuple[float, float] = (0.3, 1.5)   # spike magnitude range, V
    stuck_fraction: float = 0.03          # share of cells with a stuck window (>= 1 cell)
    stuck_duration_s: tuple[float, float] = (1800.0, 7200.0)
    duplicate_rate: float = 1e-3
    out_of_order_rate: float = 1e-3
    max_delay_samples: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "enabled", frozenset(self.enabled))
        bad = sorted(self.enabled - set(FAULT_NAMES))
        if bad:
            raise ConfigError(f"unknown fault(s) {bad}; known: {list(FAULT_NAMES)}")
        for name in ("dropout_rate", "spike_rate", "duplicate_rate", "out_of_order_rate",
                     "stuck_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"faults: {name} must be in [0, 1]")
        if self.max_delay_samples < 1:
            raise ConfigError("faults: max_delay_samples must be >= 1")

    @classmethod
    def from_names(cls, names: Iterable[str], **rates: Any) -> FaultConfig:
        """Enable faults by name (e.g. ``["dropouts", "spikes"]``) with default rates."""
        return cls(enabled=frozenset(n.strip() for n in names if n.strip()), **rates)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> FaultConfig:
        values = dict(values)
        values["enabled"] = frozenset(values.get("enabled", ()))
        return _from_mapping(cls, values, "faults")  # type: ignore[no-any-return]

    def on(self, name: str) -> bool:
        return name in self.enabled


@dataclass(slots=True)
class FaultState:
    """Per-cell fault state carried between chunks."""

    gap_end: npt.NDArray[np.int64]          # first sample index after an open gap, -1 none
    stuck_start: npt.NDArray[np.int64]      # per stuck cell: first stuck sample index
    stuck_end: npt.NDArray[np.int64]        # per stuck cell: first sample after the window
    stuck_cells: npt.NDArray[np.int64]      # indices of cells with a stuck window
    held_v: F64 = field(default_factory=lambda: np.zeros(0))
    held_t: F64 = field(default_factory=lambda: np.zeros(0))


def add_noise(
    v: F64, i: F64, t: F64, noise: NoiseConfig,
    rng_v: np.random.Generator, rng_i: np.random.Generator, rng_t: np.random.Generator,
) -> None:
    """Add Gaussian noise in place to V (V), I (A) and T (degC), all shaped (samples, cells).

    Unit normals are drawn in float32 (twice as fast; ample for noise) and added in float64.
    """
    if noise.voltage_sigma_v > 0:
        v += noise.voltage_sigma_v * rng_v.standard_normal(v.shape, dtype=np.float32)
    if noise.current_sigma_a > 0 or noise.current_rel_sigma > 0:
        sigma = noise.current_sigma_a + noise.current_rel_sigma * np.abs(i)
        i += sigma * rng_i.standard_normal(i.shape, dtype=np.float32)
    if noise.temperature_sigma_c > 0:
        t += noise.temperature_sigma_c * rng_t.standard_normal(t.shape, dtype=np.float32)


def apply_spikes(v: F64, cfg: FaultConfig, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """Add voltage spikes in place; returns the spike mask. One uniform per sample: below
    the rate it is a spike, and its position inside [0, rate) sets sign and magnitude."""
    u = rng.random(v.shape)
    hit = u < cfg.spike_rate
    frac = u[hit] / cfg.spike_rate if cfg.spike_rate > 0 else u[hit]
    sign = np.where(frac < 0.5, 1.0, -1.0)
    lo, hi = cfg.spike_v
    v[hit] += sign * (lo + (hi - lo) * ((2.0 * frac) % 1.0))
    return hit


def apply_stuck(v: F64, t: F64, k0: int, state: FaultState) -> None:
    """Hold V and T of the stuck cells at their first in-window value, in place."""
    if state.stuck_cells.size == 0:
        return
    n = v.shape[0]
    sc = state.stuck_cells
    starts_here = (state.stuck_start >= k0) & (state.stuck_start < k0 + n)
    if starts_here.any():
        rows = state.stuck_start[starts_here] - k0
        state.held_v[starts_here] = v[rows, sc[starts_here]]
        state.held_t[starts_here] = t[rows, sc[starts_here]]
    kk = np.arange(k0, k0 + n)[:, None]
    win = (kk >= state.stuck_start[None, :]) & (kk < state.stuck_end[None, :])
    v[:, sc] = np.where(win, state.held_v[None, :], v[:, sc])
    t[:, sc] = np.where(win, state.held_t[None, :], t[:, sc])


def dropout_mask(
    shape: tuple[int, int], k0: int, dt: float, cfg: FaultConfig,
    rng: np.random.Generator, state: FaultState,
) -> npt.NDArray[np.bool_]:
    """Mask (samples, cells) of samples lost in gaps; open gaps carry into the next chunk."""
    u = rng.random(shape)
    start = u < cfg.dropout_rate
    max_len = max(2, int(cfg.dropout_max_s / dt))
    frac = np.where(start, u / max(cfg.dropout_rate, 1e-300), 0.0)
    length = 2 + np.floor(frac * (max_len - 1)).astype(np.int64)
    kk = np.arange(k0, k0 + shape[0], dtype=np.int64)[:, None]
    ends = np.where(start, kk + length, -1)
    ends[0] = np.maximum(ends[0], state.gap_end)
    run = np.maximum.accumulate(ends, axis=0)
    state.gap_end = run[-1].copy()
    return kk < run


def delivery_delays(
    shape: tuple[int, int], rate: float, max_delay: int, rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """Delivery delay in samples (0 for most; 1..max_delay with probability ``rate``)."""
    u = rng.random(shape)
    hit = u < rate
    frac = np.where(hit, u / max(rate, 1e-300), 0.0)
    return np.where(hit, 1 + np.floor(frac * max_delay).astype(np.int64), 0)
