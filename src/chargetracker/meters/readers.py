"""Meter file readers (I/O edge): long CSV/Parquet, wide CSV, the REDD folder layout.

Every reader streams: it yields :class:`ReadChunk` objects (canonical readings plus the
dead letters of that chunk) a block at a time, so a file larger than memory is fine.
``.csv.gz`` is decompressed on the fly. Time is epoch seconds (s; ms when the numbers are
that large) or ISO text; naive text is read in ``timezone`` (default UTC), text with an
offset is converted. A ``MeterFile`` also carries the meters' metadata the file implies.

* **long**: one row per reading; columns found by name (``meter_id``/``meter``,
  ``ts``/``time``/``timestamp``, ``power_w``/``power``/``watts``, ``power_kw``,
  ``energy_wh``/``energy_kwh``) or given by ``columns`` (canonical -> file name).
* **wide**: a time column and one column per meter; meter id ``<house_id>/<column>``;
  the house id comes from ``house_id`` or the file name without extensions and a trailing
  date (``UKDALE_House2_2013-07.csv.gz`` -> ``UKDALE_House2``); a column called
  ``Aggregate``/``mains`` (any case, optionally with a ``_W`` suffix) or named by
  ``mains`` is the whole-house meter; columns with a non-power unit suffix (``_V``,
  ``_var``, ``_A``, ``_Hz``, ``_pct``) or in ``exclude`` are skipped; ``_kW`` is kW.
* **redd**: a house folder of ``channel_N.dat`` (``unix_ts watts`` lines) and
  ``labels.dat`` (``N label``); meter id ``<house>/channel_N``, appliance = label.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import ReaderError, UnknownFormat
from .calendar import check_timezone
from .schema import DEAD_LETTER_SCHEMA, MAINS, METER_SCHEMA, READING_SCHEMA

__all__ = ["FORMATS", "ReadChunk", "MeterFile", "ReadOptions", "detect_format", "open_meter_file",
           "house_id_from_name", "long_readings"]

FORMATS = ("auto", "long", "wide", "redd")
_BLOCK = 8 << 20
_TIME_NAMES = ("ts", "time", "timestamp", "timestamp_utc", "timestamp_local", "datetime", "date_time",
               "unix_ts", "epoch")
_METER_NAMES = ("meter_id", "meter", "channel", "sensor_id", "device_id")
_MAINS_NAMES = ("aggregate", "mains", "main")
_NON_POWER = re.compile(r"_(v|var|va|a|hz|pct|percent|c|degc)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ReadOptions:
    house_id: str | None = None
    mains: str | None = None            # wide: the whole-house column
    timezone: str = "UTC"               # how to read naive timestamps; meters' zone
    columns: dict[str, str] = field(default_factory=dict)  # long: canonical -> file column
    power_unit: str | None = None       # "W" or "kW" (long; default from the column name)
    exclude: tuple[str, ...] = ()       # wide: columns that are not meters
    zip_code: str | None = None


@dataclass(frozen=True, slots=True)
class ReadChunk:
    readings: pl.DataFrame   # READING_SCHEMA
    rejected: pl.DataFrame   # DEAD_LETTER_SCHEMA
    rows: int                # input rows (lines) in this chunk


@dataclass
class MeterFile:
    path: str
    format: str
    meters: pl.DataFrame                 # METER_SCHEMA (empty for long files)
    chunks: Iterator[ReadChunk]
    size_bytes: int = 0


def house_id_from_name(path: str | os.PathLike[str]) -> str:
    name = Path(path).name
    for ext in (".gz", ".csv", ".parquet", ".txt", ".dat"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    m = re.match(r"^(.*?)[_-]\d{4}-\d{2}(?:-\d{2})?(?:[_-].*)?$", name)
    return m.group(1) if m and m.group(1) else name


def _head(path: Path) -> list[str]:
    try:
        with pa.input_stream(str(path), compression="detect") as fh:
            text = fh.read(64 * 1024).decode("utf-8", errors="replace").lstrip("\ufeff")
    except (OSError, pa.ArrowInvalid) as exc:
        raise ReaderError(f"{path}: cannot read: {exc}") from exc
    return [c.strip().strip('"') for c in text.split("\n", 1)[0].rstrip("\r").split(",")]


def _is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def detect_format(path: str | os.PathLike[str], options: ReadOptions | None = None) -> str:
    """``"long"``, ``"wide"`` or ``"redd"`` from the path and the header."""
    p = Path(path)
    if p.is_dir():
        if (p / "labels.dat").exists() or any(p.glob("channel_*.dat")):
            return "redd"
        raise UnknownFormat(f"{p}: a folder without labels.dat or channel_N.dat (REDD layout)")
    if _is_parquet(p):
        return "long"
    cols = {c.lower() for c in _head(p)}
    meter_col = (options.columns.get("meter_id", "").lower() if options else "") or None
    if (meter_col and meter_col in cols) or cols & set(_METER_NAMES):
        return "long"
    if len(cols) >= 2 and cols & set(_TIME_NAMES):
        return "wide"
    raise UnknownFormat(f"{p}: header {sorted(cols)[:20]} has neither a meter id column "
                        f"({', '.join(_METER_NAMES)}) nor a time column ({', '.join(_TIME_NAMES)})")


def open_meter_file(path: str | os.PathLike[str], *, format: str = "auto",
                    options: ReadOptions | None = None) -> MeterFile:
    opts = options or ReadOptions()
    check_timezone(opts.timezone, field="--timezone")
    p = Path(path)
    if not p.exists():
        raise ReaderError(f"{p}: no such file or folder")
    fmt = detect_format(p, opts) if format == "auto" else format
    if fmt == "long":
        return MeterFile(str(p), fmt, pl.DataFrame(schema=METER_SCHEMA), _read_long(p, opts),
                         p.stat().st_size)
    if fmt == "wide":
        meters, cols = _wide_meters(p, opts)
        return MeterFile(str(p), fmt, meters, _read_wide(p, opts, cols), p.stat().st_size)
    if fmt == "redd":
        meters, files = _redd_meters(p, opts)
        size = sum(f.stat().st_size for f, _ in files)
        return MeterFile(str(p), fmt, meters, _read_redd(files, opts, str(p)), size)
    raise UnknownFormat(f"unknown meter format {format!r}; choose one of {FORMATS}")


# -- shared ------------------------------------------------------------------------------------
def _csv_batches(path: Path, *, names: list[str] | None = None, delimiter: str = ",",
                 types: dict[str, pa.DataType] | None = None) -> Iterator[pl.DataFrame]:
    read = pacsv.ReadOptions(block_size=_BLOCK, column_names=names,
                             autogenerate_column_names=False)
    parse = pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=True)
    conv = pacsv.ConvertOptions(column_types=types or {}, strings_can_be_null=True)
    try:
        stream = pa.input_stream(str(path), compression="detect")
        with pacsv.open_csv(stream, read_options=read, parse_options=parse,
                            convert_options=conv) as reader:
            for batch in reader:
                yield pl.from_arrow(pa.Table.from_batches([batch]))  # type: ignore[misc]
    except pa.ArrowInvalid as exc:
        raise ReaderError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ReaderError(f"{path}: cannot read: {exc}") from exc


def _epoch_s(col: pl.Series, tz: str) -> pl.Series:
    """Seconds since epoch (UTC) from numbers (s or ms) or ISO text; null where unreadable."""
    if col.dtype.is_numeric():
        v = col.cast(pl.Float64)
        big = v.abs().max()
        return v / 1000.0 if isinstance(big, float) and big > 1e11 else v
    if isinstance(col.dtype, pl.Datetime):
        d = col if col.dtype.time_zone else col.dt.replace_time_zone(  # type: ignore[attr-defined]
            tz, ambiguous="earliest", non_existent="null")
        return (d.dt.epoch("us").cast(pl.Float64) / 1e6).alias(col.name)
    s = col.cast(pl.Utf8).str.strip_chars()
    num = s.cast(pl.Float64, strict=False)
    if num.null_count() == s.null_count():
        return _epoch_s(num, tz)
    aware = s.str.contains(r"(Z|[+-]\d{2}:?\d{2})$").fill_null(False)
    parsed = s.str.replace("T", " ").str.replace(r"(Z|[+-]\d{2}:?\d{2})$", "")
    naive = parsed.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
    missing = naive.is_null() & parsed.is_not_null()
    if missing.any():
        alt = parsed.str.to_datetime("%Y-%m-%d %H:%M", strict=False, time_unit="us")
        naive = pl.select(pl.when(missing).then(alt).otherwise(naive)).to_series()
    local = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    utc_naive = naive.dt.replace_time_zone("UTC")
    if aware.any():
        offs = s.str.extract(r"([+-]\d{2}):?(\d{2})$", 1).cast(pl.Int64, strict=False).fill_null(0)
        offm = s.str.extract(r"[+-]\d{2}:?(\d{2})$", 1).cast(pl.Int64, strict=False).fill_null(0)
        sign = pl.Series(np.where(offs.to_numpy() < 0, -1, 1))
        shift = (offs * 3600 + sign * offm * 60).cast(pl.Float64)
        base = utc_naive.dt.epoch("us").cast(pl.Float64) / 1e6 - shift
        loc = local.dt.epoch("us").cast(pl.Float64) / 1e6
        return pl.select(pl.when(aware).then(base).otherwise(loc)).to_series().alias(col.name)
    return (local.dt.epoch("us").cast(pl.Float64) / 1e6).alias(col.name)


def _bad(source: str, rows: np.ndarray, meter: pl.Series | list[str | None], ts: pl.Series | None,
         field: str, reason: str, payload: pl.Series) -> pl.DataFrame:
    n = len(rows)
    return pl.DataFrame({
        "source": [source] * n, "row": rows.astype(np.int64),
        "meter_id": pl.Series(meter, dtype=pl.Utf8) if not isinstance(meter, pl.Series) else meter,
        "ts": ts if ts is not None else pl.Series([None] * n, dtype=pl.Float64),
        "field": [field] * n, "reason": [reason] * n, "payload": payload.cast(pl.Utf8),
    }, schema=DEAD_LETTER_SCHEMA)


def _numbers(col: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Float values and a mask of cells that hold text that is not a number."""
    if col.dtype.is_numeric():
        return col.cast(pl.Float64), pl.Series([False] * len(col))
    s = col.cast(pl.Utf8).str.strip_chars()
    v = s.cast(pl.Float64, strict=False)
    return v, v.is_null() & s.is_not_null() & (s != "")


# -- long -------------------------------------------------------------------------------------
def _pick(cols: Sequence[str], wanted: str | None, names: Sequence[str]) -> str | None:
    if wanted:
        return wanted if wanted in cols else None
    low = {c.lower(): c for c in cols}
    return next((low[n] for n in names if n in low), None)


def _read_long(path: Path, opts: ReadOptions) -> Iterator[ReadChunk]:
    src = str(path)
    if _is_parquet(path):
        pf = pq.ParquetFile(path)
        batches: Iterator[pl.DataFrame] = (
            pl.from_arrow(pa.Table.from_batches([b]))  # type: ignore[misc]
            for b in pf.iter_batches(batch_size=1 << 20))
    else:
        batches = _csv_batches(path)
    offset = 0
    for df in batches:
        yield long_readings(df, opts, src, offset)
        offset += df.height


def long_readings(df: pl.DataFrame, opts: ReadOptions, src: str, offset: int = 0) -> ReadChunk:
    """Canonical readings of a long frame (names/units/time as the module doc says)."""
    cols = df.columns
    cm = opts.columns
    mid = _pick(cols, cm.get("meter_id"), _METER_NAMES)
    tcol = _pick(cols, cm.get("ts"), _TIME_NAMES)
    pcol = _pick(cols, cm.get("power_w"), ("power_w", "power", "watts", "w", "power_kw", "kw"))
    ecol = _pick(cols, cm.get("energy_wh"), ("energy_wh", "energy", "energy_kwh", "kwh"))
    for need, got in (("meter_id", mid), ("ts", tcol), ("power_w", pcol)):
        if got is None:
            from ..errors import SchemaError

            raise SchemaError(f"no {need} column among {cols[:20]} (give a column map)",
                              field=need, source=src)
    assert mid is not None and tcol is not None and pcol is not None
    unit = opts.power_unit or ("kW" if pcol.lower().endswith("kw") else "W")
    scale = {"W": 1.0, "kW": 1000.0}.get(unit)
    if scale is None:
        raise ReaderError(f"{src}: power unit {unit!r} is not W or kW")
    rows = np.arange(offset, offset + df.height, dtype=np.int64)
    ts = _epoch_s(df.get_column(tcol), opts.timezone)
    pw, ptext = _numbers(df.get_column(pcol))
    ids = df.get_column(mid).cast(pl.Utf8)
    energy = pl.Series([None] * df.height, dtype=pl.Float64)
    etext = pl.Series([False] * df.height)
    if ecol is not None:
        energy, etext = _numbers(df.get_column(ecol))
        energy = energy * (1000.0 if ecol.lower().endswith("kwh") else 1.0)
    bad_t = ts.is_null() & df.get_column(tcol).is_not_null()
    bad = (bad_t | ptext | etext).to_numpy()
    rejected = pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    if bad.any():
        idx = np.flatnonzero(bad)
        payload = df[idx].select(pl.struct(pl.all().cast(pl.Utf8)).struct.json_encode()).to_series()
        fields = np.where(bad_t.to_numpy()[idx], tcol, np.where(ptext.to_numpy()[idx], pcol, ecol or ""))
        parts = []
        for f in np.unique(fields).tolist():
            m = fields == f
            reason = "cannot read the time" if f == tcol else "not a number"
            parts.append(_bad(src, rows[idx][m], ids.gather(idx[m]), None, f, reason,
                              payload.filter(pl.Series(m))))
        rejected = pl.concat(parts)
    good = pl.DataFrame({"meter_id": ids, "ts": ts, "power_w": pw * scale, "energy_wh": energy},
                        schema=READING_SCHEMA).filter(pl.Series(~bad))
    return ReadChunk(good, rejected, df.height)


# -- wide -------------------------------------------------------------------------------------
def _wide_meters(path: Path, opts: ReadOptions) -> tuple[pl.DataFrame, list[tuple[str, str, float]]]:
    header = _head(path)
    low = [h.lower() for h in header]
    tidx = next((low.index(n) for n in _TIME_NAMES if n in low), 0)
    house = opts.house_id or house_id_from_name(path)
    if opts.mains is not None and opts.mains not in header:
        raise ReaderError(f"{path}: --mains column {opts.mains!r} is not in the header {header}")
    cols: list[tuple[str, str, float]] = []   # (column, appliance, scale)
    meta = []
    for k, c in enumerate(header):
        if k == tidx or c in opts.exclude or not c or _NON_POWER.search(c):
            continue
        base = re.sub(r"_(k?w)$", "", c, flags=re.IGNORECASE)
        scale = 1000.0 if c.lower().endswith("_kw") else 1.0
        is_mains = c == opts.mains if opts.mains else (
            base.lower() in _MAINS_NAMES or c.lower() in ("mains_active_w",))
        appliance = MAINS if is_mains else base.lower()
        cols.append((c, appliance, scale))
        meta.append({"meter_id": f"{house}/{c}", "house_id": house, "appliance": appliance,
                     "zip": opts.zip_code, "timezone": opts.timezone, "attributes": None})
    if not cols:
        raise ReaderError(f"{path}: no meter columns besides the time column {header[tidx]!r}")
    return pl.DataFrame(meta, schema=METER_SCHEMA), cols


def _read_wide(path: Path, opts: ReadOptions, cols: list[tuple[str, str, float]]
               ) -> Iterator[ReadChunk]:
    src = str(path)
    header = _head(path)
    low = [h.lower() for h in header]
    tname = header[next((low.index(n) for n in _TIME_NAMES if n in low), 0)]
    house = opts.house_id or house_id_from_name(path)
    types = {c: pa.string() for c in header}
    offset = 0
    for df in _csv_batches(path, types=types):
        # Line numbers: the header is line 0; data row k is line offset + k + 1.
        rows = np.arange(offset + 1, offset + 1 + df.height, dtype=np.int64)
        raw_t = df.get_column(tname)
        ts = _epoch_s(raw_t, opts.timezone)
        bad_t = (ts.is_null() & raw_t.is_not_null()).to_numpy() | raw_t.is_null().to_numpy()
        parts, rej = [], []
        if bad_t.any():
            idx = np.flatnonzero(bad_t)
            rej.append(_bad(src, rows[idx], [None] * len(idx), None, tname,
                            "cannot read the time", raw_t.gather(idx).fill_null("")))
        ok_t = ~bad_t
        for c, _, scale in cols:
            v, text = _numbers(df.get_column(c))
            text_np = text.to_numpy() & ok_t
            if text_np.any():
                idx = np.flatnonzero(text_np)
                rej.append(_bad(src, rows[idx], [f"{house}/{c}"] * len(idx), ts.gather(idx), c,
                                "not a number", df.get_column(c).gather(idx)))
            keep = ok_t & v.is_not_null().to_numpy() & ~text_np
            # An empty cell is no reading (not an error); NaN likewise.
            keep &= ~np.isnan(v.fill_null(0.0).to_numpy())
            idx = np.flatnonzero(keep)
            parts.append(pl.DataFrame({
                "meter_id": pl.Series([f"{house}/{c}"], dtype=pl.Utf8).gather(np.zeros(len(idx), np.int64)),
                "ts": ts.gather(idx), "power_w": v.gather(idx) * scale,
                "energy_wh": pl.Series([None] * len(idx), dtype=pl.Float64)}, schema=READING_SCHEMA))
        rejected = pl.concat(rej) if rej else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
        yield ReadChunk(pl.concat(parts), rejected, df.height)
        offset += df.height


# -- REDD ---------------------------------------------------------------------------------------
def _redd_meters(folder: Path, opts: ReadOptions) -> tuple[pl.DataFrame, list[tuple[Path, str]]]:
    house = opts.house_id or folder.name
    labels: dict[int, str] = {}
    lab = folder / "labels.dat"
    if lab.exists():
        for k, line in enumerate(lab.read_text(errors="replace").splitlines()):
            parts = line.split(None, 1)
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit():
                raise ReaderError(f"{lab}: line {k + 1}: expected 'N label', got {line!r}")
            labels[int(parts[0])] = parts[1].strip()
    files = sorted(folder.glob("channel_*.dat"),
                   key=lambda f: int(re.sub(r"\D", "", f.stem) or 0))
    if not files:
        raise ReaderError(f"{folder}: no channel_N.dat files")
    meta, out = [], []
    for f in files:
        n = int(re.sub(r"\D", "", f.stem) or 0)
        label = labels.get(n, f"channel_{n}")
        mid = f"{house}/channel_{n}"
        appliance = MAINS if label.lower() in _MAINS_NAMES else label.lower()
        meta.append({"meter_id": mid, "house_id": house, "appliance": appliance,
                     "zip": opts.zip_code, "timezone": opts.timezone,
                     "attributes": None if n not in labels else f'{{"label": "{label}"}}'})
        out.append((f, mid))
    return pl.DataFrame(meta, schema=METER_SCHEMA), out


def _read_redd(files: list[tuple[Path, str]], opts: ReadOptions, folder: str) -> Iterator[ReadChunk]:
    for f, mid in files:
        offset = 0
        for df in _csv_batches(f, names=["unix_ts", "watts"], delimiter=" ",
                               types={"unix_ts": pa.string(), "watts": pa.string()}):
            rows = np.arange(offset, offset + df.height, dtype=np.int64)
            ts, tbad = _numbers(df.get_column("unix_ts"))
            pw, pbad = _numbers(df.get_column("watts"))
            tb = (tbad | ts.is_null()).to_numpy()
            pb = (pbad | pw.is_null()).to_numpy() & ~tb
            rej = []
            line = df.select(pl.concat_str(["unix_ts", "watts"], separator=" ", ignore_nulls=True)).to_series()
            for mask, fld, why in ((tb, "unix_ts", "cannot read the time"), (pb, "watts", "not a number")):
                if mask.any():
                    idx = np.flatnonzero(mask)
                    rej.append(_bad(str(f), rows[idx], [mid] * len(idx), None, fld, why, line.gather(idx)))
            keep = np.flatnonzero(~(tb | pb))
            good = pl.DataFrame({"meter_id": pl.Series([mid], dtype=pl.Utf8).gather(np.zeros(len(keep), np.int64)),
                                 "ts": ts.gather(keep), "power_w": pw.gather(keep),
                                 "energy_wh": pl.Series([None] * len(keep), dtype=pl.Float64)},
                                schema=READING_SCHEMA)
            yield ReadChunk(good, pl.concat(rej) if rej else pl.DataFrame(schema=DEAD_LETTER_SCHEMA),
                            df.height)
            offset += df.height
