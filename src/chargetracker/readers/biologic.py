"""BioLogic EC-Lab / BT-Lab readers: ``.mpt`` (text) and ``.mpr`` (binary).

**.mpt**: line 1 ``EC-Lab ASCII FILE``, line 2 ``Nb header lines : N``; lines 3..N-1 are the
settings (``Acquisition started on : MM/DD/YYYY HH:MM:SS.fff`` gives the test start, local
time, read in ``timezone``), line N the tab-separated column header, then the data. EC-Lab
writes a Windows code page (``µ``, ``°``) and, in some locales, decimal commas: both are
handled. Columns are ``quantity/unit``: ``time/s`` (since the acquisition start),
``Ewe/V`` (or ``Ecell/V``, preferred when present), ``<I>/mA`` or ``I/mA`` (or ``/A``),
``cycle number``, ``Ns`` (the technique sequence: the step label), ``step time/s`` (when
recorded), ``Temperature/°C``, and
the cycler's counters ``Q charge/mA.h``, ``Q discharge/mA.h``, ``Energy charge/W.h``,
``Energy discharge/W.h`` (``Energy we ...`` in files that also record the counter
electrode). Sign: EC-Lab's + current is anodic (oxidation at the working electrode); for a
cell whose working electrode is the positive electrode that is charging, ChargeTracker's +.

**.mpr**: a sequence of modules (``VMP Set``, ``VMP data``, ``VMP LOG``...). The data module
holds ``n`` points, the list of column ids and the records (one byte of bit flags: mode,
ox/red, error, control/Ns changes, then one field per column). This reader was written from
the format's public description (no GPL code): each column id has a name (the ``.mpt``
column name) and a binary type, and the record size is checked against the module length, so
an unknown column is reported by id instead of misread. The acquisition start is the OLE
date in the ``VMP LOG`` module. Both formats give the same frame for the same data.
"""

from __future__ import annotations

import re
import struct
from typing import BinaryIO

import numpy as np
import polars as pl

from ..errors import ReaderError, SchemaError
from .base import shown_columns
from .fields import ColumnLookup, Field, datetime_to_epoch
from .frame import FrameReader
from .source import open_raw
from .text import TextReader, _decode

__all__ = ["BioLogicMptReader", "BioLogicMprReader", "MPR_COLUMNS"]

_CURRENT = (("<I>/mA", 1e-3), ("I/mA", 1e-3), ("<I>/A", 1.0), ("I/A", 1.0), ("<I>/µA", 1e-6),
            ("I/µA", 1e-6), ("control/mA", 1e-3))
_VOLTAGE = ("Ecell/V", "Ewe/V", "<Ewe>/V", "<Ecell>/V")
_REFERENCE = {
    "charge_capacity_ah": (("Q charge/mA.h", 1e-3), ("Q charge/A.h", 1.0)),
    "discharge_capacity_ah": (("Q discharge/mA.h", 1e-3), ("Q discharge/A.h", 1.0)),
    "charge_energy_wh": (("Energy charge/W.h", 1.0), ("Energy we charge/W.h", 1.0)),
    "discharge_energy_wh": (("Energy discharge/W.h", 1.0), ("Energy we discharge/W.h", 1.0)),
}
_STARTED = re.compile(r"Acquisition started on\s*:\s*(\S+\s+\S+)")


class _BioLogicPlan(TextReader):
    """Column plan shared by the text and binary formats."""

    format = "biologic_mpt"
    separator = "\t"
    _start_text: str | None = None

    def _plan(self, cols: ColumnLookup) -> list[Field]:
        names = {c.strip(): c for c in cols.columns}

        def pick(*cands: str) -> str | None:
            return next((names[c] for c in cands if c in names), None)

        time = pick("time/s")
        volt = pick(*_VOLTAGE)
        cur = next(((names[c], sc) for c, sc in _CURRENT if c in names), None)
        for label, hit in (("time/s", time), ("Ewe/V", volt), ("<I>/mA", cur)):
            if hit is None:
                raise SchemaError(f"BioLogic file lacks the {label!r} column; columns seen: "
                                  f"{shown_columns(cols.columns)}", field=label, source=self.name)
        assert time and volt and cur
        fields = [Field("__test_time", time, required=True, canonical="ts"),
                  Field("voltage_v", volt, required=True),
                  Field("current_a", cur[0], scale=cur[1], required=True)]
        if (c := pick("cycle number")) is not None:
            fields.append(Field("cycle", c, kind="int"))
        if (c := pick("Ns")) is not None:
            fields.append(Field("step", c, kind="int"))
        if (c := pick("step time/s")) is not None:
            fields.append(Field("step_time_s", c))
        temp = next((c for c in cols.columns if c.lower().startswith("temperature/")), None)
        if temp is not None:
            fields.append(Field("temperature_c", temp))
        if self.keep_reference:
            for out, cands in _REFERENCE.items():
                hit = next(((names[c], sc) for c, sc in cands if c in names), None)
                if hit:
                    fields.append(Field(out, hit[0], scale=hit[1]))
        return fields

    def _calibrate(self, probe: pl.DataFrame) -> None:
        if self.start_time is not None:
            self._origin, how = float(self.start_time), "start_time option"
        elif self._start_text:
            val = pl.select(datetime_to_epoch(pl.lit(self._start_text), timezone=self.timezone,
                                              fmt="%m/%d/%Y %H:%M:%S%.f")).item()
            if val is None:
                val = pl.select(datetime_to_epoch(pl.lit(self._start_text),
                                                  timezone=self.timezone)).item()
            self._origin = float(val) if val is not None else 0.0
            how = "acquisition start + time/s" if val is not None else "unknown (relative)"
        else:
            self._origin, how = 0.0, "unknown (ts is time/s, relative)"
        self._attributes["time_origin"] = how
        self._attributes["test_start_epoch_s"] = self._origin

    def _finish(self, parsed: pl.DataFrame) -> pl.DataFrame:
        return parsed.with_columns((pl.col("__test_time") + self._origin).alias("ts")).drop(
            "__test_time")

    def _finish_fused(self, cols: dict[str, pl.Series]) -> dict[str, pl.Series] | None:
        return self._finish_origin(cols, "__test_time")


class BioLogicMptReader(_BioLogicPlan):
    """EC-Lab ``.mpt`` text export (see module docstring)."""

    def _read_header(self, fh: BinaryIO) -> tuple[list[str], int, int]:
        first = fh.readline()
        second = fh.readline()
        m = re.search(rb"Nb header lines\s*:\s*(\d+)", second)
        if not first.startswith((b"EC-Lab ASCII FILE", b"BT-Lab ASCII FILE")) or not m:
            raise SchemaError("not an EC-Lab .mpt file (no 'Nb header lines' on line 2)",
                              source=self.name)
        n_header = int(m.group(1))
        offset = len(first) + len(second)
        settings: list[str] = []
        line = second
        for _ in range(n_header - 2):
            line = fh.readline()
            if not line:
                raise SchemaError(f"the file ends inside its {n_header}-line header",
                                  source=self.name)
            offset += len(line)
            settings.append(_decode(line))
        header = _decode(line) if settings else ""
        if not header:
            raise SchemaError("no column header line", source=self.name)
        text = "\n".join(settings)
        m2 = _STARTED.search(text)
        self._start_text = m2.group(1) if m2 else None
        mass = re.search(r"Mass of active material\s*:\s*([0-9.]+)\s*mg", text)
        cap = re.search(r"Battery capacity\s*:\s*([0-9.]+)\s*(mA\.h|A\.h)", text)
        if mass:
            self._attributes["active_mass_mg"] = float(mass.group(1))
        if cap:
            self._meta["nominal_capacity_ah"] = float(cap.group(1)) * (
                1e-3 if cap.group(2) == "mA.h" else 1.0)
        if text.strip():
            self._attributes["technique"] = settings[0].strip() if settings else None
        # Decimal commas: a data line with "digit,digit" and no dot in its numbers.
        peek = fh.readline()
        if re.search(rb"\d,\d", peek) and not re.search(rb"\d\.\d", peek):
            self.decimal_comma = True
        cols = header.rstrip("\t").split("\t")
        return cols, n_header, offset


# -- .mpr ----------------------------------------------------------------------------------
_FLAGS = {1: ("mode", 0x03), 2: ("ox/red", 0x04), 3: ("error", 0x08),
          21: ("control changes", 0x10), 31: ("Ns changes", 0x20), 65: ("counter inc.", 0x80)}

#: Column id -> (.mpt column name, NumPy type) of the ``VMP data`` module.
MPR_COLUMNS: dict[int, tuple[str, str]] = {
    4: ("time/s", "<f8"), 5: ("control/V/mA", "<f4"), 6: ("Ewe/V", "<f4"),
    7: ("dq/mA.h", "<f8"), 8: ("I/mA", "<f4"), 9: ("Ece/V", "<f4"), 11: ("<I>/mA", "<f8"),
    13: ("(Q-Qo)/mA.h", "<f8"), 16: ("Analog IN 1/V", "<f4"), 19: ("control/V", "<f4"),
    20: ("control/mA", "<f4"), 23: ("dQ/mA.h", "<f8"), 24: ("cycle number", "<f8"),
    26: ("Rapp/Ohm", "<f4"), 27: ("Ewe-Ece/V", "<f4"), 32: ("freq/Hz", "<f4"),
    33: ("|Ewe|/V", "<f4"), 34: ("|I|/A", "<f4"), 35: ("Phase(Z)/deg", "<f4"),
    36: ("|Z|/Ohm", "<f4"), 37: ("Re(Z)/Ohm", "<f4"), 38: ("-Im(Z)/Ohm", "<f4"),
    39: ("I Range", "<u2"), 69: ("R/Ohm", "<f4"), 70: ("P/W", "<f4"),
    74: ("|Energy|/W.h", "<f8"), 75: ("Analog OUT/V", "<f4"), 76: ("<I>/mA", "<f4"),
    77: ("<Ewe>/V", "<f4"), 78: ("Cs-2/µF-2", "<f4"), 96: ("|Ece|/V", "<f4"),
    123: ("Energy charge/W.h", "<f8"), 124: ("Energy discharge/W.h", "<f8"),
    125: ("Capacitance charge/µF", "<f8"), 126: ("Capacitance discharge/µF", "<f8"),
    131: ("Ns", "<u2"), 163: ("|Estack|/V", "<f4"), 168: ("Rcmp/Ohm", "<f4"),
    169: ("Cs/µF", "<f4"), 172: ("Cp/µF", "<f4"), 173: ("Cp-2/µF-2", "<f4"),
    174: ("<Ewe>/V", "<f4"), 241: ("|E1|/V", "<f4"), 242: ("|E2|/V", "<f4"),
    271: ("Phase(Z1) / deg", "<f4"), 272: ("Phase(Z2) / deg", "<f4"),
    301: ("|Z1|/Ohm", "<f4"), 302: ("|Z2|/Ohm", "<f4"), 326: ("P/W", "<f4"),
    331: ("Re(Z1)/Ohm", "<f4"), 332: ("Re(Z2)/Ohm", "<f4"),
    361: ("-Im(Z1)/Ohm", "<f4"), 362: ("-Im(Z2)/Ohm", "<f4"),
    391: ("<E1>/V", "<f4"), 392: ("<E2>/V", "<f4"),
    422: ("Phase(Zstack)/deg", "<f4"), 423: ("|Zstack|/Ohm", "<f4"),
    424: ("Re(Zstack)/Ohm", "<f4"), 425: ("-Im(Zstack)/Ohm", "<f4"),
    426: ("<Estack>/V", "<f4"), 430: ("Phase(Zwe-ce)/deg", "<f4"),
    431: ("|Zwe-ce|/Ohm", "<f4"), 432: ("Re(Zwe-ce)/Ohm", "<f4"),
    433: ("-Im(Zwe-ce)/Ohm", "<f4"), 434: ("(Q-Qo)/C", "<f4"), 435: ("dQ/C", "<f4"),
    438: ("step time/s", "<f8"), 441: ("<Ecv>/V", "<f4"), 462: ("Temperature/°C", "<f4"),
    467: ("Q charge/discharge/mA.h", "<f8"), 468: ("half cycle", "<u4"),
    469: ("z cycle", "<u4"), 471: ("<Ece>/V", "<f4"), 473: ("THD Ewe/%", "<f4"),
    474: ("THD I/%", "<f4"), 476: ("NSD Ewe/%", "<f4"), 477: ("NSD I/%", "<f4"),
    479: ("NSR Ewe/%", "<f4"), 480: ("NSR I/%", "<f4"), 486: ("|Ewe h2|/V", "<f4"),
    487: ("|Ewe h3|/V", "<f4"), 488: ("|Ewe h4|/V", "<f4"), 489: ("|Ewe h5|/V", "<f4"),
    490: ("|Ewe h6|/V", "<f4"), 491: ("|Ewe h7|/V", "<f4"), 492: ("|I h2|/A", "<f4"),
    493: ("|I h3|/A", "<f4"), 494: ("|I h4|/A", "<f4"), 495: ("|I h5|/A", "<f4"),
    496: ("|I h6|/A", "<f4"), 497: ("|I h7|/A", "<f4"), 498: ("Q discharge/mA.h", "<f8"),
    499: ("Q charge/mA.h", "<f8"), 500: ("Capacity/mA.h", "<f8"),
    501: ("Efficiency/%", "<f8"), 502: ("cycle number", "<u4"), 505: ("Rdc/Ohm", "<f4"),
    509: ("Acir/Dcir Control", "<u1"),
}
# Offsets of the first record in the data module, by module version (checked by size).
_DATA_OFFSETS = (0x195, 0x196, 0x3EF)
_MODULE_HEADER = struct.Struct("<6s10s25s")


def _modules(buf: bytes) -> dict[str, tuple[int, bytes, str]]:
    """Short name -> (version, data, date text) of every module in an .mpr file."""
    out: dict[str, tuple[int, bytes, str]] = {}
    pos = buf.find(b"MODULE")
    while pos >= 0 and pos + 61 <= len(buf):
        _, short, _long = _MODULE_HEADER.unpack_from(buf, pos)
        name = short.decode("latin-1").strip()
        p = pos + 41
        first = struct.unpack_from("<I", buf, p)[0]
        if first == 0xFFFFFFFF:  # newer header: max length, length, an unused word, version
            length, _, version = struct.unpack_from("<III", buf, p + 4)
            start = p + 16 + 8
        else:  # older header: length, version
            length, version = struct.unpack_from("<II", buf, p)
            start = p + 8 + 8
        date = buf[start - 8:start].decode("latin-1", errors="replace")
        out.setdefault(name, (version, buf[start:start + length], date))
        pos = buf.find(b"MODULE", start + length)
    return out


def _record_dtype(ids: list[int]) -> np.dtype:
    fields: list[tuple[str, str]] = []
    for cid in ids:
        if cid in _FLAGS:
            if ("__flags", "u1") not in fields:
                fields.append(("__flags", "u1"))
            continue
        if cid not in MPR_COLUMNS:
            raise ReaderError(f"unknown BioLogic data column id {cid}")
        name, typ = MPR_COLUMNS[cid]
        while any(f[0] == name for f in fields):
            name += "_"
        fields.append((name, typ))
    return np.dtype(fields)


def _acquisition_start(log: tuple[int, bytes, str] | None) -> float | None:
    """OLE date (days) of the acquisition start, found in the LOG module near its date."""
    if log is None:
        return None
    _, data, date = log
    m = re.match(r"(\d\d)/(\d\d)/(\d\d)", date)
    if not m:
        return None
    import datetime as dt

    day = dt.date(2000 + int(m.group(3)), int(m.group(1)), int(m.group(2)))
    ole = (day - dt.date(1899, 12, 30)).days
    for shift in range(8):
        n = (len(data) - shift) // 8
        vals = np.frombuffer(data, dtype="<f8", count=n, offset=shift)
        # Acquisition starts on or up to a few weeks before the day the file was written.
        hit = np.flatnonzero((vals > ole - 60) & (vals < ole + 1) & np.isfinite(vals))
        if hit.size:
            return float(vals[hit[0]])
    return None


class BioLogicMprReader(FrameReader, _BioLogicPlan):
    """EC-Lab ``.mpr`` binary file (see module docstring)."""

    format = "biologic_mpr"
    what = "a BioLogic .mpr file"

    def _load(self) -> pl.DataFrame:
        with open_raw(self.path, self.sniff) as fh:
            buf = fh.read()
        mods = _modules(buf)
        if "VMP data" not in mods:
            raise ReaderError(f"{self.name}: a BioLogic .mpr file without a data module")
        version, data, _ = mods["VMP data"]
        n = struct.unpack_from("<I", data, 0)[0]
        n_cols = struct.unpack_from("<H", data, 4)[0]
        ids = list(struct.unpack_from(f"<{n_cols}H", data, 6))
        try:
            dtype = _record_dtype(ids)
        except ReaderError as exc:
            raise ReaderError(f"{self.name}: {exc}; export the file as .mpt from EC-Lab") from None
        offset = next((o for o in _DATA_OFFSETS if len(data) - o == n * dtype.itemsize), None)
        if offset is None:
            raise ReaderError(
                f"{self.name}: .mpr data module version {version} with {n} records of "
                f"{dtype.itemsize} bytes does not match its length {len(data)}; export the "
                "file as .mpt from EC-Lab")
        rec = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
        cols: dict[str, np.ndarray] = {}
        for name in dtype.names or ():
            if name == "__flags":
                for cid in ids:
                    if cid in _FLAGS:
                        label, mask = _FLAGS[cid]
                        shift = (mask & -mask).bit_length() - 1
                        cols[label] = ((rec[name] & mask) >> shift).astype(np.int64)
                continue
            arr = rec[name]
            cols[name] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr.astype(np.int64)
        ole = _acquisition_start(mods.get("VMP LOG"))
        if ole is not None:
            # Same text layout as the .mpt header, so both formats calibrate alike.
            secs = (ole - 25569.0) * 86400.0
            import datetime as dt

            self._start_text = dt.datetime.fromtimestamp(secs, dt.UTC).strftime(
                "%m/%d/%Y %H:%M:%S.%f")
        self._attributes["mpr_data_version"] = version
        return pl.DataFrame(cols)
