"""Neware readers: BTS CSV exports (flat and cycle/step/record) and binary ``.nda``/``.ndax``.

**Flat CSV** (one header line): ``DataPoint``, ``Cycle Index``, ``Step Index``, ``Step Type``
(``CC Chg``, ``CC DChg``, ``Rest``...), ``Time`` (step time, ``hh:mm:ss``), ``Cumulative Time``
or ``Total Time`` (test time, ``hh:mm:ss``, hours may exceed 24), ``Current(A)`` (signed,
+ = charge; ``(mA)`` also read), ``Voltage(V)``, ``Chg. Cap.(Ah)``/``DChg. Cap.(Ah)`` and
``Chg. Energy(Wh)``/``DChg. Energy(Wh)`` (the cycler's counters, reset each step), ``Date``
(local time, 1 s resolution). ``ts`` = test start (``Date`` - test time of the first row)
+ test time.

**3-level CSV** (BTS "regular export"): three header lines (cycle, step, record); each data
line is a cycle row (first field set), a step row (``,`` + step fields) or a record row
(``,,`` + record fields). Records carry ``DataPoint``, ``Time`` (step time), ``Total Time``,
``Current(A)``, ``Voltage(V)``, ``Capacity(Ah)``/``Energy(Wh)`` (unsigned, per step) and
``Date``; their cycle and step labels come from the cycle and step rows above them (the step
label is the running ``Step Number``). The first cycle row may carry the first step row on
the same line, as BTS writes it.

**.nda / .ndax** (binary): decoded with ``NewareNDA`` (BSD-3-Clause): ``Time`` is the step
time (s), ``Timestamp`` the local time at 1 s resolution, ``Current(mA)``, ``Voltage``,
``Charge/Discharge_Capacity(mAh)`` and ``_Energy(mWh)`` per step, ``Cycle`` and ``Step``
(running). ``ts`` of a record = its step's start (the median of ``Timestamp - Time`` over the
step, which cancels the 1 s rounding) + ``Time``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from ..errors import ReaderError
from .arbin import TableReader
from .fields import ColumnLookup, Field
from .frame import FrameReader, require_module
from .source import open_raw
from .text import _decode, _split_header

__all__ = ["NewareCsvReader", "NewareNdaReader"]


class NewareCsvReader(TableReader):
    """Neware BTS CSV export, flat or 3-level (see module docstring)."""

    format = "neware_csv"
    test_time_keys = ("cumulativetime", "totaltime")
    datetime_keys = ("date", "realtime", "absolutetime")
    step_time_keys = ("time", "steptime")
    step_keys = ("stepnumber", "stepindex")
    cycle_keys = ("cycleindex", "cycle")
    temperature_keys = ("t1", "temperature", "auxtemperature")
    temperature_prefix = False
    reference_keys = {
        "charge_capacity_ah": ("chgcap",),
        "discharge_capacity_ah": ("dchgcap",),
        "charge_energy_wh": ("chgenergy",),
        "discharge_energy_wh": ("dchgenergy",),
        "capacity_ah": ("capacity",),
        "energy_wh": ("energy",),
    }
    labels = {"test_time": "Total Time", "current": "Current(A)", "voltage": "Voltage(V)"}

    _levels = 1
    _carry: tuple[str | None, str | None] = (None, None)

    def _read_header(self, fh: BinaryIO) -> tuple[list[str], int, int]:
        first = fh.readline()
        if not first:
            raise ReaderError(f"{self.name}: empty file")
        second = fh.readline()
        third = fh.readline()
        if second.startswith(b",") and third.startswith(b",,"):
            self._levels = 3
            cyc = _split_header(_decode(first), ",")
            step = _split_header(_decode(second), ",")
            rec = _split_header(_decode(third), ",")
            self._n_cycle = len(cyc)
            self._step_fields = [c.strip() for c in step[1:]]
            self._rec_width = max(len(rec), len(step), len(cyc) + len(step))
            names = [c.strip() for c in rec[2:]]
            return names, 3, len(first) + len(second) + len(third)
        return _split_header(_decode(first), ","), 1, len(first)

    def _plan(self, cols: ColumnLookup) -> list[Field]:
        fields = super()._plan(cols)
        out: list[Field] = []
        for f in fields:
            if f.out in ("__test_time", "step_time_s"):
                # Neware writes durations as [d-]hh:mm:ss text; a bare number is seconds.
                f = Field(f.out, f.source, kind="duration", required=f.required,
                          canonical=f.canonical)
            out.append(f)
        if self._levels == 3:
            out += [Field("cycle", "__cycle", kind="int"), Field("step", "__step", kind="int")]
        return out

    def _calibrate(self, probe: pl.DataFrame) -> None:
        super()._calibrate(probe)
        self._carry = (None, None)

    # -- 3-level layout -----------------------------------------------------------------
    def _parse_block_typed(self, block: bytes) -> pl.DataFrame | None:
        return None if self._levels == 3 else super()._parse_block_typed(block)

    def _parse_block(self, block: bytes) -> pl.DataFrame:
        if self._levels == 1:
            return super()._parse_block(block)
        width = self._rec_width
        names = [f"c{i}" for i in range(width)]
        n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)
        out_names = [*self.columns, "__cycle", "__step"]
        if n_lines == 0:
            return pl.DataFrame(schema={c: pl.Utf8 for c in out_names})
        text = block.decode("utf-8", errors="replace")
        if text.endswith("\n"):
            text = text[:-1]
        # Rows of three layouts and widths: split each line ourselves (still vectorized).
        df = pl.DataFrame(pl.Series("__l", text.split("\n"), dtype=pl.Utf8)).select(
            pl.col("__l").str.strip_chars_end("\r").str.split_exact(",", width - 1)
            .struct.rename_fields(names)
        ).unnest("__l")
        c0, c1 = pl.col("c0").str.strip_chars(), pl.col("c1").str.strip_chars()
        is_cycle = c0.is_not_null() & (c0 != "")
        is_step = ~is_cycle & c1.is_not_null() & (c1 != "")
        is_rec = ~is_cycle & ~is_step
        nc = self._n_cycle
        step_no = 1 + self._step_fields.index("Step Number") if "Step Number" in self._step_fields else 1
        # A cycle row may carry the first step row after its own fields.
        merged = pl.col(f"c{nc + step_no - 1}") if nc + step_no - 1 < width else pl.lit(None)
        cyc0, step0 = self._carry
        labels = df.select(
            pl.when(is_cycle).then(c0).otherwise(None).fill_null(strategy="forward")
            .fill_null(pl.lit(cyc0, dtype=pl.Utf8)).alias("__cycle"),
            pl.when(is_step).then(pl.col(f"c{step_no}"))
            .when(is_cycle).then(merged.cast(pl.Utf8)).otherwise(None)
            .fill_null(strategy="forward").fill_null(pl.lit(step0, dtype=pl.Utf8)).alias("__step"),
            is_rec.alias("__rec"),
        )
        if labels.height:
            self._carry = (labels["__cycle"][-1], labels["__step"][-1])
        rec_cols = [pl.when(labels["__rec"]).then(pl.col(f"c{i + 2}")).otherwise(None).alias(c)
                    for i, c in enumerate(self.columns) if i + 2 < width]
        raw = df.select(rec_cols)
        missing = [c for c in self.columns if c not in raw.columns]
        if missing:
            raw = raw.with_columns(pl.lit(None, dtype=pl.Utf8).alias(c) for c in missing)
        rec = labels["__rec"]
        return raw.select(self.columns).with_columns(
            labels["__cycle"].zip_with(rec, pl.Series([None] * labels.height, dtype=pl.Utf8)),
            labels["__step"].zip_with(rec, pl.Series([None] * labels.height, dtype=pl.Utf8)),
        )

    def __iter__(self) -> Any:
        self._carry = (None, None)
        yield from super().__iter__()


class NewareNdaReader(FrameReader, TableReader):
    """Neware ``.nda`` / ``.ndax`` binary file (see module docstring)."""

    format = "neware_nda"
    what = "a Neware .nda/.ndax file"
    test_time_keys = ("testtime",)
    datetime_keys = ("epoch0",)
    step_time_keys = ("time",)
    step_keys = ("step",)
    cycle_keys = ("cycle",)
    temperature_keys = ("t1", "temperature")
    temperature_prefix = False
    reference_keys = {
        "charge_capacity_ah": ("chargecapacity",),
        "discharge_capacity_ah": ("dischargecapacity",),
        "charge_energy_wh": ("chargeenergy",),
        "discharge_energy_wh": ("dischargeenergy",),
    }

    def _load(self) -> pl.DataFrame:
        nda = require_module("NewareNDA", "NewareNDA", "Neware .nda/.ndax files")
        ext = ".ndax" if self.sniff.kind == "neware_ndax" else ".nda"
        if self.path.suffix.lower() == ext and self.sniff.compression in (None, "zip") and \
                (ext == ".ndax" or self.sniff.compression is None):
            pdf = nda.read(str(self.path))
        else:
            # NewareNDA goes by the file name's extension: hand it a copy named right
            # (decompressed when the file was compressed).
            with tempfile.TemporaryDirectory(prefix="ct-nda-") as tmp:
                copy = Path(tmp) / f"data{ext}"
                if ext == ".ndax":
                    shutil.copyfile(self.path, copy)
                else:
                    with open_raw(self.path, self.sniff) as src, copy.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                pdf = nda.read(str(copy))
        if "Status" in pdf.columns:
            pdf["Status"] = pdf["Status"].astype(str)
        frame = pl.from_pandas(pdf)
        if frame.height == 0:
            return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("__testtime"),
                                      pl.lit(None, dtype=pl.Float64).alias("__epoch0"))
        float_cols = [c for c, t in frame.schema.items() if t == pl.Float32]
        frame = frame.with_columns(pl.col(c).cast(pl.Float64) for c in float_cols)
        if self.timezone != "UTC":
            epoch = pl.col("Timestamp").dt.replace_time_zone(
                self.timezone, ambiguous="earliest", non_existent="null")
        else:
            epoch = pl.col("Timestamp")
        frame = frame.with_columns((epoch.dt.epoch("us").cast(pl.Float64) / 1e6).alias("__ts1"))
        run = (pl.col("Step") != pl.col("Step").shift(1)).fill_null(True).cum_sum()
        start = (pl.col("__ts1") - pl.col("Time")).median().over(run)
        t0 = frame.get_column("__ts1")[0]
        return frame.with_columns(
            (start + pl.col("Time") - t0).alias("__testtime"),
            pl.lit(t0, dtype=pl.Float64).alias("__epoch0"),
        ).drop("__ts1")
