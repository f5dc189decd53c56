"""Arbin ``.res`` reader: the MS Access (Jet 4) database MITS Pro writes.

The measurements are the ``Channel_Normal_Table`` (the same columns as an Arbin CSV export:
``Test_Time`` s, ``DateTime`` as an OLE date, ``Step_Index``, ``Cycle_Index``, ``Current`` A
with + = charge, ``Voltage`` V, and ``Charge/Discharge_Capacity`` Ah and ``_Energy`` Wh, the
cycler's counters); temperature comes from an auxiliary table only and is not read. The
database is decoded with ``access-parser`` (pure Python, Apache-2.0), so no system tool is
needed. The table is read whole (see :mod:`.frame`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import polars as pl

from ..errors import ReaderError
from .arbin import ArbinReader
from .frame import FrameReader, require_module
from .source import open_raw

__all__ = ["ArbinResReader"]

_TABLE = "Channel_Normal_Table"


class ArbinResReader(FrameReader, ArbinReader):
    """Arbin ``.res`` file (see module docstring)."""

    format = "arbin_res"
    what = "an Arbin .res (MS Access) database"

    def _load(self) -> pl.DataFrame:
        ap = require_module("access_parser", "access-parser", "Arbin .res files")
        if self.sniff.compression is None:
            db = ap.AccessParser(str(self.path))
        else:
            # The parser reads pages at random: hand it a decompressed copy.
            with tempfile.TemporaryDirectory(prefix="ct-res-") as tmp:
                copy = Path(tmp) / "data.res"
                with open_raw(self.path, self.sniff) as src, copy.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                db = ap.AccessParser(str(copy))
        if _TABLE not in db.catalog:
            tables = [t for t in db.catalog if not t.startswith("MSys")]
            raise ReaderError(f"{self.name}: an Access database without a {_TABLE} table "
                              f"(tables: {tables[:20]}); is it an Arbin .res file?")
        table = db.parse_table(_TABLE)
        cols = {k: list(v) for k, v in table.items()}
        if not cols or not next(iter(cols.values()), []):
            return pl.DataFrame(schema={k: pl.Float64 for k in cols} or {"Test_Time": pl.Float64})
        frame = pl.DataFrame(cols, strict=False)
        if "Data_Point" in frame.columns:
            frame = frame.sort("Data_Point")
        return frame
