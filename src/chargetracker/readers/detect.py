"""Recognise a file's format from its content (magic bytes, then the first text lines).

The file name is never trusted: a ``.csv`` may be a Neware or PEC export, a ``.txt`` a Maccor
one, and any of them may be gzip/bz2/xz/zip-compressed (see :mod:`.source`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UnknownFormat
from .source import BINARY_HINTS, Sniff, head_text, sniff

__all__ = ["FORMATS", "BINARY_FORMATS", "detect_format", "detect"]

#: Every format name :func:`detect_format` may return.
FORMATS: tuple[str, ...] = (
    "arbin", "arbin_res", "maccor", "biologic_mpt", "biologic_mpr", "neware_csv",
    "neware_nda", "pec", "novonix", "battery_archive", "batterydata", "generic",
)

#: Formats read from a binary file by a table reader (whole, not line by line).
BINARY_FORMATS: dict[str, str] = {
    "arbin_res": "arbin_res", "neware_nda": "neware_nda", "neware_ndax": "neware_nda",
    "biologic_mpr": "biologic_mpr",
}


_SEP = re.compile(r"[\t;,]")
_UNIT = re.compile(r"(\([^)]*\)|\[[^\]]*\])\s*$")
_NOT_KEY = re.compile(r"[^0-9a-z#]")


def _keys(line: str) -> set[str]:
    out = set()
    for c in _SEP.split(line):
        c = _UNIT.sub("", c.strip().strip('"'))
        out.add(_NOT_KEY.sub("", c.lower()))
    return out


def _may_be_maccor_or_pec(line: str) -> bool:
    """False when no key set of ``line`` can match the Maccor or PEC rule: every key is a
    substring of the line lowered with its non-key characters removed, so a line without
    the words cannot have the keys (saves splitting 40 lines of every other format)."""
    s = _NOT_KEY.sub("", line.lower())
    maccor = ("amps" in s or "current" in s) and "volt" in s and ("state" in s or "md" in s)
    pec = "totaltime" in s and "realtime" in s and "current" in s and "voltage" in s
    return maccor or pec


def _text_format(lines: list[str]) -> str | None:
    first = lines[0]
    if first.startswith("EC-Lab ASCII FILE") or first.startswith("BT-Lab ASCII FILE"):
        return "biologic_mpt"
    if first.strip().strip('"') == "[Summary]" and any("Novonix" in ln for ln in lines[:6]):
        return "novonix"
    if "Today's Date" in first or "Date of Test" in first:
        return "maccor"
    k = _keys(first)
    if {"cycleindex", "chgcap", "dchgcap"} <= k and len(lines) > 2 and \
            lines[1].startswith(",") and lines[2].startswith(",,"):
        return "neware_csv"  # cycle / step / record layout
    if {"cycleindex", "stepindex", "steptype"} <= k and ("current" in k and "voltage" in k):
        return "neware_csv"
    for line in lines[:40]:
        if not _may_be_maccor_or_pec(line):
            continue
        k = _keys(line)
        if ({"amps", "volts"} <= k or {"amps", "voltage"} <= k or {"current", "voltage"} <= k) \
                and ("state" in k or "md" in k):
            return "maccor"
        if {"totaltime", "current", "voltage", "step", "cycle"} <= k and "realtime" in k:
            return "pec"
    k = _keys(first)
    if "testtime" in k and "current" in k and "voltage" in k:
        if "datapoint" in k or "stepindex" in k:
            return "arbin"
        return "battery_archive"
    if "times" in k and "currenta" in k and "voltagev" in k:
        return "batterydata"
    if {"voltage_v", "current_a"} <= {c.strip().strip('"') for c in re.split(r"[\t;,]", first)}:
        return "generic"
    return None


def detect(path: str | os.PathLike[str], info: Sniff | None = None) -> str:
    """Format name of ``path`` (see :data:`FORMATS`); raises :class:`UnknownFormat`."""
    name = Path(path).name
    info = info or sniff(path)
    if info.kind == "parquet":
        return "generic"
    if info.kind in BINARY_FORMATS:
        return BINARY_FORMATS[info.kind]
    if info.kind != "text":
        hint = BINARY_HINTS.get(info.kind, BINARY_HINTS["binary"])
        raise UnknownFormat(f"{name}: {info.what}, not a cycler export ChargeTracker reads; {hint}")
    text = head_text(path, info=info)
    lines = text.split("\n")[:40]
    if not lines or not lines[0].strip():
        if not text.strip():
            raise UnknownFormat(f"{name}: empty file; nothing to read")
        raise UnknownFormat(f"{name}: blank first line; cannot tell its format (use "
                            "--format generic with --skip-lines)")
    fmt = _text_format(lines)
    if fmt is not None:
        return fmt
    seen = [c.strip()[:40] for c in re.split(r"[\t;,]", lines[0])][:30]
    raise UnknownFormat(
        f"{name}: unrecognised header {seen}; expected an Arbin, Maccor, BioLogic, Neware, PEC, "
        "Novonix, Battery Archive or batterydata.energy.gov export, or canonical columns (ts, "
        "voltage_v, current_a); for other layouts use format 'generic' with a column map "
        "(CLI: --format generic --map ts=... --map current_a=... --map voltage_v=...)"
    )


def detect_format(path: str | os.PathLike[str]) -> str:
    """Format name of ``path``, decided from its content (see :func:`detect`)."""
    return detect(path)
