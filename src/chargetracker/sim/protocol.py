"""Cycling protocols: sequences of charge / discharge / rest steps, repeated per cycle.

A :class:`Step` is one of

* ``charge``: constant current ``c_rate`` (1/h x the cell's *nominal* capacity, as a
  cycler does) up to ``v_limit``; with ``cutoff_c_rate`` it continues at constant
  voltage ``v_limit`` until the current falls to the cutoff (CC-CV), without it the step
  ends when the voltage reaches ``v_limit`` (CC);
* ``discharge``: constant current ``c_rate`` down to the cutoff voltage ``v_limit``;
* ``rest``: zero current for ``duration_s``.

``duration_s`` also caps charge/discharge steps, which makes timed pulses (HPPC).
``v_limit=None`` means the chemistry's ``v_max`` (charge) or ``v_min`` (discharge).
A :class:`Protocol` repeats its steps; one pass is one cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError

__all__ = [
    "Step",
    "Protocol",
    "PROTOCOLS",
    "REST",
    "CHARGE",
    "DISCHARGE",
    "get_protocol",
    "protocol_from_mapping",
    "CompiledProtocols",
    "compile_protocols",
]

#: Step kind codes used by the kernel.
REST, CHARGE, DISCHARGE = 0, 1, 2
_KIND_CODES = {"rest": REST, "charge": CHARGE, "discharge": DISCHARGE}

StepKind = Literal["charge", "discharge", "rest"]


@dataclass(frozen=True, slots=True)
class Step:
    """One protocol step (see module docstring). Rates in 1/h, voltages in V, times in s."""

    kind: StepKind
    c_rate: float = 0.0
    v_limit: float | None = None
    cutoff_c_rate: float | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KIND_CODES:
            raise ConfigError(f"step kind {self.kind!r} must be one of {sorted(_KIND_CODES)}")
        if self.kind == "rest":
            if self.duration_s is None or not self.duration_s > 0:
                raise ConfigError("a rest step needs duration_s > 0")
        elif not self.c_rate > 0:
            raise ConfigError(f"a {self.kind} step needs c_rate > 0 (1/h)")
        if self.cutoff_c_rate is not None and (self.kind != "charge" or not self.cutoff_c_rate > 0):
            raise ConfigError("cutoff_c_rate (> 0) applies to charge steps only (CC-CV)")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError("duration_s must be > 0")


@dataclass(frozen=True, slots=True)
class Protocol:
    """A named, repeated sequence of steps; one pass is one cycle."""

    name: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ConfigError(f"protocol {self.name!r} has no steps")
        if all(s.kind == "rest" for s in self.steps):
            raise ConfigError(f"protocol {self.name!r} has only rest steps")


def _hppc() -> tuple[Step, ...]:
    steps: list[Step] = [Step("charge", 1.0, cutoff_c_rate=0.05), Step("rest", duration_s=1800.0)]
    pulse = [
        Step("discharge", 2.0, duration_s=10.0), Step("rest", duration_s=40.0),
        Step("charge", 1.5, duration_s=10.0), Step("rest", duration_s=40.0),
    ]
    for _ in range(9):
        steps += pulse
        steps += [Step("discharge", 1.0, duration_s=360.0), Step("rest", duration_s=1200.0)]
    steps += [Step("discharge", 1.0), Step("rest", duration_s=1800.0)]
    return tuple(steps)


#: Preset protocols ("test types").
PROTOCOLS: dict[str, Protocol] = {
    # 1C CC-CV to v_max, cutoff C/20; rest 10 min; 1C to v_min; rest 10 min (~2.5-3 h).
    "standard": Protocol("standard", (
        Step("charge", 1.0, cutoff_c_rate=0.05), Step("rest", duration_s=600.0),
        Step("discharge", 1.0), Step("rest", duration_s=600.0),
    )),
    # 2C CC-CV (cutoff C/10) and 2C discharge, 5 min rests (~1.3 h).
    "accelerated": Protocol("accelerated", (
        Step("charge", 2.0, cutoff_c_rate=0.1), Step("rest", duration_s=300.0),
        Step("discharge", 2.0), Step("rest", duration_s=300.0),
    )),
    # C/2 charge and discharge (~5 h), a gentle reference test.
    "slow": Protocol("slow", (
        Step("charge", 0.5, cutoff_c_rate=0.05), Step("rest", duration_s=600.0),
        Step("discharge", 0.5), Step("rest", duration_s=600.0),
    )),
    # Hybrid pulse power characterisation: pulses every 10 % SOC on the way down.
    "hppc": Protocol("hppc", _hppc()),
}


def get_protocol(name: str, custom: Mapping[str, Protocol] | None = None) -> Protocol:
    """A custom protocol (from the fleet config) or a preset; :class:`ConfigError` if unknown."""
    if custom and name in custom:
        return custom[name]
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    known = sorted(set(PROTOCOLS) | set(custom or {}))
    raise ConfigError(f"unknown test type / protocol {name!r}; known: {known}")


_STEP_KEYS = {"kind", "c_rate", "v_limit", "cutoff_c_rate", "duration_s"}


def protocol_from_mapping(name: str, mapping: Mapping[str, Any]) -> Protocol:
    """Build a protocol from a TOML table ``{steps = [{kind = "charge", c_rate = 1.0, ...}, ...]}``."""
    steps_raw = mapping.get("steps")
    unknown = sorted(set(mapping) - {"steps"})
    if unknown:
        raise ConfigError(f"protocol {name!r}: unknown key(s) {unknown}; expected 'steps'")
    if not isinstance(steps_raw, Sequence) or isinstance(steps_raw, str) or not steps_raw:
        raise ConfigError(f"protocol {name!r}: 'steps' must be a non-empty list of tables")
    steps = []
    for i, raw in enumerate(steps_raw):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"protocol {name!r} step {i}: expected a table, got {raw!r}")
        bad = sorted(set(raw) - _STEP_KEYS)
        if bad:
            raise ConfigError(f"protocol {name!r} step {i}: unknown key(s) {bad}; known {sorted(_STEP_KEYS)}")
        try:
            steps.append(Step(**{k: raw[k] for k in raw}))
        except ConfigError as exc:
            raise ConfigError(f"protocol {name!r} step {i}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"protocol {name!r} step {i}: {exc}") from None
    return Protocol(name, tuple(steps))


@dataclass(frozen=True, slots=True)
class CompiledProtocols:
    """Protocols as padded arrays for the kernel, one row per cell *group*.

    ``kind`` step codes; ``current_a`` magnitude (A); ``v_limit`` (V); ``cutoff_a`` CV
    cutoff current (A, 0 = no CV phase); ``duration_s`` cap (inf = none); ``n_steps`` per row.
    """

    kind: npt.NDArray[np.int64]
    current_a: npt.NDArray[np.float64]
    v_limit: npt.NDArray[np.float64]
    cutoff_a: npt.NDArray[np.float64]
    duration_s: npt.NDArray[np.float64]
    n_steps: npt.NDArray[np.int64]


def compile_protocols(
    protocols: Sequence[Protocol],
    nominal_capacity_ah: Sequence[float],
    v_min: Sequence[float],
    v_max: Sequence[float],
) -> CompiledProtocols:
    """Resolve C-rates and default limits per group (one entry per group in each argument)."""
    g = len(protocols)
    width = max(len(p.steps) for p in protocols)
    kind = np.zeros((g, width), np.int64)
    cur = np.zeros((g, width))
    vlim = np.zeros((g, width))
    cut = np.zeros((g, width))
    dur = np.full((g, width), math.inf)
    n = np.zeros(g, np.int64)
    for row, proto in enumerate(protocols):  # per group and step: a handful, not per sample
        q = nominal_capacity_ah[row]
        n[row] = len(proto.steps)
        for j, st in enumerate(proto.steps):
            kind[row, j] = _KIND_CODES[st.kind]
            cur[row, j] = st.c_rate * q
            default = v_max[row] if st.kind == "charge" else v_min[row]
            vlim[row, j] = default if st.v_limit is None else st.v_limit
            cut[row, j] = 0.0 if st.cutoff_c_rate is None else st.cutoff_c_rate * q
            if st.duration_s is not None:
                dur[row, j] = st.duration_s
    return CompiledProtocols(kind, cur, vlim, cut, dur, n)
