"""Recognise a file's format from its first lines."""

from __future__ import annotations

import os
import re

from ..errors import ReaderError, UnknownFormat
from .generic import is_parquet

__all__ = ["FORMATS", "detect_format"]

#: Every format name :func:`detect_format` may return.
FORMATS: tuple[str, ...] = ("arbin", "maccor", "battery_archive", "batterydata", "generic")


def _keys(line: str) -> set[str]:
    cells = re.split(r"[\t;,]", line)
    out = set()
    for c in cells:
        c = re.sub(r"\([^)]*\)\s*$", "", c.strip().strip('"'))
        out.add(re.sub(r"[^0-9a-z#]", "", c.lower()))
    return out


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"arbin"``, ``"maccor"``, ``"battery_archive"``, ``"batterydata"`` or ``"generic"``.

    Decided from the header (first lines); raises :class:`UnknownFormat` naming the columns
    seen when no rule matches. A Parquet file is ``"generic"``.
    """
    if is_parquet(path):
        return "generic"
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError as exc:
        raise ReaderError(f"{path}: cannot read: {exc}") from exc
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = [ln.rstrip("\r") for ln in text.split("\n")[:20]]
    if not lines or not lines[0].strip():
        raise UnknownFormat(f"{path}: empty file or blank first line; cannot tell its format")
    first = lines[0]
    if "Today's Date" in first or "Date of Test" in first:
        return "maccor"
    for line in lines[:3]:
        k = _keys(line)
        if ({"amps", "volts"} <= k or {"amps", "voltage"} <= k) and ("state" in k or "md" in k):
            return "maccor"
    k = _keys(first)
    if "testtime" in k and "current" in k and "voltage" in k:
        if "datapoint" in k or "stepindex" in k:
            return "arbin"
        return "battery_archive"
    if "times" in k and "currenta" in k and "voltagev" in k:
        return "batterydata"
    if {"voltage_v", "current_a"} <= {c.strip().strip('"') for c in re.split(r"[\t;,]", first)}:
        return "generic"
    seen = [c.strip() for c in re.split(r"[\t;,]", first)][:30]
    raise UnknownFormat(
        f"{path}: unrecognised header {seen}; expected an Arbin, Maccor, Battery Archive or "
        "batterydata.energy.gov export, or canonical columns (ts, voltage_v, current_a); use "
        "format='generic' with GenericOptions(columns=...) for other layouts"
    )
