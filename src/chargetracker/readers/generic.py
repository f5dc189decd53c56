"""Generic CSV (or any delimited text) and Parquet reader with a column map.

:class:`GenericOptions` says which source column feeds each canonical column, the units
(current A/mA, voltage V/mV, temperature C/K/F, time s/ms/us/min/h), how time is written
(epoch numbers, time relative to a start, ISO-8601 text with a timezone for naive values, or a
strptime layout) and the sign convention. Columns not in the map are looked up by their
canonical name, so a file already in canonical form needs no options at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

import polars as pl

from ..errors import ReaderError, SchemaError
from ..schema import MEASUREMENT_SCHEMA
from .base import REFERENCE_COLUMNS, ReadChunk, Reader, shown_columns
from .chunk import process_chunk
from .fields import ColumnLookup, Field, datetime_to_epoch, time_scale
from .text import TextReader, _decode, _split_header

__all__ = ["GenericOptions", "GenericReader", "is_parquet"]

TimeFormat = Literal["auto", "epoch", "relative", "iso"]


@dataclass(frozen=True, slots=True)
class GenericOptions:
    """How to read a generic CSV/Parquet file.

    ``columns``: canonical (or reference) name -> source column, e.g.
    ``{"ts": "Time", "voltage_v": "U", "current_a": "I", "cell_id": "Channel"}``; ``"time"`` is
    accepted for ``ts``. Unmapped canonical names are looked up under their own name.

    ``time_format``: ``"epoch"`` (numbers since the Unix epoch in ``time_unit``),
    ``"relative"`` (numbers since ``start_time`` in ``time_unit``), ``"iso"`` (ISO-8601 text;
    naive values are local time in ``timezone``), a strptime layout such as
    ``"%d.%m.%Y %H:%M:%S"``, or ``"auto"`` (text -> ISO; numbers before 1973 -> relative,
    else epoch; epoch numbers > 1e11 are read as ms when ``time_unit`` is ``"s"``).
    ``start_time``: epoch s, or ISO-8601 text, of relative time 0 (default 0).
    ``step_time_unit`` defaults to ``time_unit``.
    ``sign``: ``"charge_positive"`` (default, the canonical convention) or
    ``"discharge_positive"`` (the current is negated).
    ``separator``: None sniffs tab, semicolon or comma from the header line.
    ``skip_lines``: lines before the header line.
    ``capacity_unit``/``energy_unit``: of mapped reference columns (Ah/mAh, Wh/mWh).
    ``decimal_comma``: numbers are written ``3,71`` (then the separator is not a comma).
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    time_format: str = "auto"
    time_unit: str = "s"
    step_time_unit: str | None = None
    start_time: float | str | None = None
    timezone: str | None = None
    current_unit: Literal["A", "mA"] = "A"
    voltage_unit: Literal["V", "mV"] = "V"
    temperature_unit: Literal["C", "K", "F"] = "C"
    capacity_unit: Literal["Ah", "mAh"] = "Ah"
    energy_unit: Literal["Wh", "mWh"] = "Wh"
    sign: Literal["charge_positive", "discharge_positive"] = "charge_positive"
    separator: str | None = None
    skip_lines: int = 0
    decimal_comma: bool = False


_KNOWN = set(MEASUREMENT_SCHEMA) | set(REFERENCE_COLUMNS) | {"time"}
_ELECTRIC = {"A": 1.0, "mA": 1e-3, "V": 1.0, "mV": 1e-3, "Ah": 1.0, "mAh": 1e-3,
             "Wh": 1.0, "mWh": 1e-3}


def is_parquet(path: str | os.PathLike[str]) -> bool:
    """True when the file starts with the Parquet magic bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def _scale(unit: str, what: str) -> float:
    try:
        return _ELECTRIC[unit]
    except KeyError:
        raise SchemaError(f"unknown {what} unit {unit!r}", field=what) from None


class GenericReader(TextReader):
    """Delimited text or Parquet with a column map (see :class:`GenericOptions`)."""

    format = "generic"

    def __init__(self, path: str | os.PathLike[str], *, options: GenericOptions | None = None,
                 **kw: Any) -> None:
        self.options = options or GenericOptions()
        unknown = set(self.options.columns) - _KNOWN
        if unknown:
            raise SchemaError(
                f"unknown target column(s) {sorted(unknown)} in the column map; use "
                f"{sorted(_KNOWN)}", field=sorted(unknown)[0],
            )
        if self.options.timezone is not None:
            kw["timezone"] = self.options.timezone
        self.decimal_comma = bool(self.options.decimal_comma)
        if self.decimal_comma and self.options.separator == ",":
            raise SchemaError("decimal_comma needs a separator other than ','", field="separator")
        self._parquet = is_parquet(path)
        if not self._parquet:
            super().__init__(path, **kw)
            return
        Reader.__init__(self, path, **kw)
        import pyarrow.parquet as pq  # local: only Parquet needs it

        try:
            self._pf = pq.ParquetFile(self.path)
            self.columns = list(self._pf.schema_arrow.names)
            self._header_lines = 0
            self._data_offset = 0
            self.fields = self._plan(ColumnLookup(self.columns))
            first = next(self._pf.iter_batches(batch_size=1000), None)
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid derives from ValueError
            raise ReaderError(f"{self.name}: cannot read Parquet: {exc}") from None
        probe = pl.from_arrow(first) if first is not None else pl.DataFrame(
            schema={c: pl.Utf8 for c in self.columns})
        assert isinstance(probe, pl.DataFrame)
        parsed, _ = self._parse_fields(probe)
        self._calibrate(parsed)

    # -- header -------------------------------------------------------------------------
    def _read_header(self, fh: BinaryIO) -> tuple[list[str], int, int]:
        offset = 0
        for _ in range(self.options.skip_lines):
            offset += len(fh.readline())
        line = fh.readline()
        if not line:
            raise SchemaError("no header line", source=self.name)
        text = _decode(line)
        sep = self.options.separator
        if sep is None:
            seps = ("\t", ";") if self.decimal_comma else ("\t", ";", ",")
            counts = {s: text.count(s) for s in seps}
            sep = max(counts, key=lambda s: counts[s]) if max(counts.values()) else ","
        self.separator = sep
        return _split_header(text, sep), self.options.skip_lines + 1, offset + len(line)

    # -- plan ---------------------------------------------------------------------------
    def _source(self, cols: ColumnLookup, name: str, required: bool) -> str | None:
        mapped = self.options.columns.get(name)
        if name == "ts" and mapped is None:
            mapped = self.options.columns.get("time")
        if mapped is not None:
            if mapped not in cols.columns:
                raise SchemaError(
                    f"column {mapped!r} (mapped to {name}) is not in the file; columns seen: "
                    f"{shown_columns(cols.columns)}", field=mapped, source=self.name,
                )
            return mapped
        if name in cols.columns:
            return name
        if name == "ts" and "time" in cols.columns:
            return "time"
        if required:
            raise SchemaError(
                f"no column for {name!r}: map one with GenericOptions(columns={{{name!r}: "
                f"'<column>'}}); columns seen: {shown_columns(cols.columns)}", field=name, source=self.name,
            )
        return None

    def _plan(self, cols: ColumnLookup) -> list[Field]:
        o = self.options
        tz = self.timezone
        fields: list[Field] = []
        src = self._source(cols, "ts", True)
        assert src is not None
        tf = o.time_format
        tscale = time_scale(o.time_unit)
        if tf in ("epoch", "relative"):
            fields.append(Field("__time", src, scale=tscale, required=True, canonical="ts"))
        elif tf in ("iso", "auto"):
            fields.append(Field("__time", src, kind="datetime", scale=tscale, required=True,
                                timezone=tz, canonical="ts"))
        elif "%" in tf:
            fields.append(Field("__time", src, kind="datetime", required=True, timezone=tz,
                                fmt=tf, canonical="ts"))
        else:
            raise SchemaError(f"unknown time_format {tf!r}; use auto, epoch, relative, iso or "
                              "a strptime layout", field="ts")
        sign = -1.0 if o.sign == "discharge_positive" else 1.0
        if o.sign not in ("charge_positive", "discharge_positive"):
            raise SchemaError(f"unknown sign convention {o.sign!r}", field="current_a")
        src = self._source(cols, "current_a", True)
        assert src is not None
        fields.append(Field("current_a", src, scale=sign * _scale(o.current_unit, "current"),
                            required=True))
        src = self._source(cols, "voltage_v", True)
        assert src is not None
        fields.append(Field("voltage_v", src, scale=_scale(o.voltage_unit, "voltage"),
                            required=True))
        if (src := self._source(cols, "temperature_c", False)) is not None:
            if o.temperature_unit == "K":
                fields.append(Field("temperature_c", src, offset=-273.15))
            elif o.temperature_unit == "F":
                fields.append(Field("temperature_c", src, scale=5 / 9, offset=-32 * 5 / 9))
            elif o.temperature_unit == "C":
                fields.append(Field("temperature_c", src))
            else:
                raise SchemaError(f"unknown temperature unit {o.temperature_unit!r}",
                                  field="temperature_c")
        if (src := self._source(cols, "step_time_s", False)) is not None:
            fields.append(Field("step_time_s", src,
                                scale=time_scale(o.step_time_unit or o.time_unit)))
        for name in ("cycle", "step"):
            if (src := self._source(cols, name, False)) is not None:
                fields.append(Field(name, src, kind="int"))
        if (src := self._source(cols, "cell_id", False)) is not None:
            fields.append(Field("cell_id", src, kind="str"))
        if self.keep_reference:
            for name in REFERENCE_COLUMNS:
                if (src := self._source(cols, name, False)) is not None:
                    unit = o.capacity_unit if name.endswith("_ah") else o.energy_unit
                    fields.append(Field(name, src, scale=_scale(unit, name)))
        return fields

    def _calibrate(self, probe: pl.DataFrame) -> None:
        o = self.options
        start = o.start_time if o.start_time is not None else self.start_time
        if isinstance(start, str):
            val = pl.select(datetime_to_epoch(pl.lit(start), timezone=self.timezone)).item()
            if val is None:
                raise SchemaError(f"cannot read start_time {start!r} as a timestamp",
                                  field="start_time")
            start = float(val)
        relative = o.time_format == "relative"
        if o.time_format == "auto":
            first = probe.get_column("__time").drop_nulls() if "__time" in probe.columns else None
            relative = bool(first is not None and len(first) and abs(float(first[0])) < 1e8)
        self._origin = float(start or 0.0) if relative else 0.0
        self._attributes["time"] = "relative" if relative else "absolute"
        if relative:
            self._attributes["test_start_epoch_s"] = self._origin

    def _finish(self, parsed: pl.DataFrame) -> pl.DataFrame:
        return parsed.with_columns((pl.col("__time") + self._origin).alias("ts")).drop("__time")

    def _finish_fused(self, cols: dict[str, pl.Series]) -> dict[str, pl.Series] | None:
        return self._finish_origin(cols, "__time")

    # -- Parquet ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ReadChunk]:
        if not self._parquet:
            yield from super().__iter__()
            return
        self.bytes_read = 0
        self.rows_read = 0
        self.rows_rejected = 0
        total_rows = max(self._pf.metadata.num_rows, 1)
        row = 0
        try:
            batches = self._pf.iter_batches(batch_size=self.chunk_rows)
            for batch in batches:
                raw = pl.from_arrow(batch)
                assert isinstance(raw, pl.DataFrame)
                lines = pl.int_range(row, row + raw.height, dtype=pl.Int64, eager=True)
                chunk = process_chunk(self, raw, lines)
                row += raw.height
                # Parquet is columnar: progress is the share of rows read.
                self.bytes_read = int(self.total_bytes * row / total_rows)
                self.rows_read += chunk.frame.height
                self.rows_rejected += chunk.rejected.height
                yield chunk
        except (OSError, ValueError) as exc:
            raise ReaderError(f"{self.name}: cannot read Parquet: {exc}") from None
        self.bytes_read = self.total_bytes
