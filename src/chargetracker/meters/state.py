"""The meter engine's carried state: small per meter, serializable, versioned.

Per meter: the last committed reading, the open day's accumulators, the open spike
episode and the threshold (about 300 bytes), plus readings still waiting (inside the
lateness window, or an undecided mains zero run).
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from ..errors import EngineStateError
from .config import MeterConfig
from .layout import F_MAX_SEEN, F_PREV_TS, F_THR, I_MAINS, I_TZ, NF, NI
from .schema import MAINS

__all__ = ["MeterState", "STATE_VERSION", "PENDING_FIELDS"]

STATE_VERSION = 1
_MAGIC = b"CTMS"

PENDING_FIELDS: dict[str, type] = {
    "slot": np.int64, "ts": np.float64, "p": np.float64, "e": np.float64,
}


def _new_f(n: int) -> np.ndarray:
    f = np.zeros((n, NF), dtype=np.float64)
    f[:, F_THR] = np.nan
    f[:, F_PREV_TS] = np.nan
    f[:, F_MAX_SEEN] = -np.inf
    return f


@dataclass
class MeterState:
    """Mutable container passed through :func:`update`; treat it as opaque."""

    config: MeterConfig
    meter_ids: list[str] = field(default_factory=list)
    houses: list[str | None] = field(default_factory=list)
    zips: list[str | None] = field(default_factory=list)
    timezones: list[str] = field(default_factory=list)
    f: np.ndarray = field(default_factory=lambda: _new_f(0))
    iv: np.ndarray = field(default_factory=lambda: np.zeros((0, NI), dtype=np.int64))
    pending: dict[str, np.ndarray] = field(
        default_factory=lambda: {k: np.zeros(0, dtype=t) for k, t in PENDING_FIELDS.items()})
    index: dict[str, int] = field(default_factory=dict)
    tz_index: dict[str, int] = field(default_factory=dict)
    # Caches (not serialized): the ids as a Series, the last batch's ids and slots.
    _ids: pl.Series | None = field(default=None, repr=False)
    _last_ids: tuple[pl.Series, np.ndarray] | None = field(default=None, repr=False)

    def id_series(self) -> pl.Series:
        """Meter ids by slot (gathered to name output rows)."""
        if self._ids is None or len(self._ids) != self.n_meters:
            self._ids = pl.Series("meter_id", self.meter_ids, dtype=pl.Utf8)
        return self._ids

    @property
    def n_meters(self) -> int:
        return len(self.meter_ids)

    def tz_slot(self, name: str) -> int:
        k = self.tz_index.get(name)
        if k is None:
            k = self.tz_index[name] = len(self.timezones)
            self.timezones.append(name)
        return k

    def add_meters(self, ids: list[str]) -> None:
        """Allocate slots for new meters, with default metadata (not mains, default zone)."""
        new = [m for m in dict.fromkeys(ids) if m not in self.index]
        if not new:
            return
        start = self.n_meters
        need = start + len(new)
        cap = self.f.shape[0]
        if need > cap:
            grow = max(need, 2 * cap, 16) - cap
            self.f = np.concatenate([self.f, _new_f(grow)])
            self.iv = np.concatenate([self.iv, np.zeros((grow, NI), dtype=np.int64)])
        tz = self.tz_slot(self.config.default_timezone)
        for k, mid in enumerate(new):
            self.index[mid] = start + k
        self.meter_ids.extend(new)
        self.houses.extend([None] * len(new))
        self.zips.extend([None] * len(new))
        self.iv[start:need, I_TZ] = tz

    def describe(self, meter_id: str, *, house_id: str | None, zip_code: str | None,
                 appliance: str, timezone: str) -> None:
        """Set a meter's metadata. Its zone and mains flag only change before its first reading."""
        self.add_meters([meter_id])
        s = self.index[meter_id]
        self.houses[s] = house_id
        self.zips[s] = zip_code
        if np.isnan(self.f[s, F_PREV_TS]):
            self.iv[s, I_TZ] = self.tz_slot(timezone)
            self.iv[s, I_MAINS] = 1 if appliance == MAINS else 0

    # -- serialization -------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        n = self.n_meters
        header = {
            "version": STATE_VERSION, "config": asdict(self.config), "meter_ids": self.meter_ids,
            "houses": self.houses, "zips": self.zips, "timezones": self.timezones,
        }
        buf = io.BytesIO()
        arrays = {"f": self.f[:n], "iv": self.iv[:n]}
        arrays.update({f"p_{k}": v for k, v in self.pending.items()})
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        hb = json.dumps(header).encode()
        return _MAGIC + struct.pack("<II", STATE_VERSION, len(hb)) + hb + buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, config: MeterConfig | None = None) -> MeterState:
        """Restore state; ``config`` must match the one the state was made with, if given."""
        try:
            if data[:4] != _MAGIC:
                raise EngineStateError("not a ChargeTracker meter state (bad magic)")
            version, hlen = struct.unpack("<II", data[4:12])
            if version != STATE_VERSION:
                raise EngineStateError(
                    f"meter state version {version} is not supported (expected {STATE_VERSION})")
            header = json.loads(data[12 : 12 + hlen])
            arrays = np.load(io.BytesIO(data[12 + hlen :]), allow_pickle=False)
            saved = MeterConfig(**header["config"])
            st = cls(config=saved)
            st.meter_ids = list(header["meter_ids"])
            st.houses = list(header["houses"])
            st.zips = list(header["zips"])
            st.timezones = list(header["timezones"])
            st.index = {m: k for k, m in enumerate(st.meter_ids)}
            st.tz_index = {z: k for k, z in enumerate(st.timezones)}
            st.f = arrays["f"].copy()
            st.iv = arrays["iv"].copy()
            st.pending = {k: arrays[f"p_{k}"].astype(t) for k, t in PENDING_FIELDS.items()}
        except EngineStateError:
            raise
        except Exception as exc:
            raise EngineStateError(f"corrupt meter state: {exc}") from exc
        if config is not None and config != saved:
            raise EngineStateError(
                "meter state was made with a different meter configuration; "
                "recompute from the archive after changing settings")
        return st
