"""Open any input file as a byte stream of UTF-8 text lines, whatever its wrapping.

Files arrive compressed (``.gz``, ``.bz2``, ``.xz``, a ``.zip`` holding one export), in
UTF-16 (Windows tools, with or without a byte-order mark), in a Windows code page (BioLogic
EC-Lab writes ``µ`` and ``°`` as single bytes), with CR-only line ends (old Mac exports), or
as a vendor's binary file. :func:`sniff` decides from the first bytes (magic numbers, BOM,
the NUL pattern), never from the file name; :func:`open_text` returns a binary stream of
UTF-8 with ``\\n`` line ends, so every text reader parses one canonical byte layout.

Plain UTF-8 files (the usual case) are opened directly: no copy, no re-encoding. The others
go through a streaming decoder: memory stays bounded by the block size.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from ..errors import ReaderError

__all__ = ["Sniff", "sniff", "open_text", "open_raw", "head_text", "BINARY_HINTS"]

Compression = Literal["gzip", "bz2", "xz", "zip"] | None
_ASCII_COMPATIBLE = ("utf-8", "utf-8-sig", "cp1252")

#: Binary formats recognised by magic bytes -> (format name, what the file is).
_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"PAR1", 0, "parquet", "an Apache Parquet file"),
    (b"Standard Jet DB", 4, "arbin_res", "an MS Access (Jet) database, e.g. an Arbin .res file"),
    (b"Standard ACE DB", 4, "arbin_res", "an MS Access (ACE) database, e.g. an Arbin .res file"),
    (b"NEWARE", 0, "neware_nda", "a Neware .nda binary file"),
    (b"BIO-LOGIC MODULAR FILE", 0, "biologic_mpr", "a BioLogic EC-Lab .mpr binary file"),
    (b"SQLite format 3\x00", 0, "sqlite", "an SQLite database"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "ole", "an MS Office (OLE) file, e.g. an old .xls"),
    (b"%PDF", 0, "pdf", "a PDF document"),
)

#: What to tell a user about a binary file that no reader handles.
BINARY_HINTS: dict[str, str] = {
    "sqlite": "export the measurement table to CSV",
    "ole": "save the sheet as CSV (File > Save As > CSV) and analyze that",
    "xlsx": "save the sheet as CSV (File > Save As > CSV) and analyze that",
    "pdf": "a PDF report holds no measurements to read; export the data as CSV",
    "binary": "export the data as CSV, or check that this is the file you meant",
}


@dataclass(frozen=True, slots=True)
class Sniff:
    """What the first bytes of a file say.

    ``kind``: ``"text"``, a binary format name (``parquet``, ``arbin_res``, ``neware_nda``,
    ``neware_ndax``, ``biologic_mpr``) or an unreadable kind (``sqlite``, ``ole``,
    ``xlsx``, ``pdf``, ``binary``); ``what`` describes it in words. ``compression`` is the
    wrapper around it (None = none), ``encoding`` the text encoding (Python codec name) and
    ``cr_only`` is True when lines end with a lone CR.
    """

    kind: str
    what: str
    compression: Compression = None
    encoding: str = "utf-8"
    cr_only: bool = False
    member: str | None = None  # the file inside a .zip

    @property
    def plain(self) -> bool:
        """True when the file can be read (and tailed by byte offset) as it is on disk:
        uncompressed, LF/CRLF, UTF-8 or a single-byte code page (its non-ASCII bytes only
        appear in names and preambles, read with replacement characters)."""
        return (self.compression is None and self.encoding in _ASCII_COMPATIBLE
                and not self.cr_only)


def _compression(head: bytes) -> Compression:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return None


#: Every byte but the control bytes that mean binary (all below 32 except tab/LF/FF/CR).
_NOT_CONTROL = bytes(b for b in range(256) if b >= 32 or b in (9, 10, 12, 13))


def _text_encoding(head: bytes) -> str | None:
    """Codec of a text head, or None when it is binary."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    sample = head[:4096]
    if len(sample) >= 4 and b"\x00" in sample:
        even, odd = sample[0::2], sample[1::2]
        # UTF-16 text of ASCII characters: every other byte is NUL.
        if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
            return "utf-16-be"
    # Control bytes (NUL included) other than tab/CR/LF/FF mean binary; a stray few (as in
    # some Maccor preambles, or a damaged line) do not.
    ctrl = len(sample.translate(None, _NOT_CONTROL))  # C speed, not a loop per byte
    if sample and ctrl > max(8, len(sample) // 100):
        return None
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a character cut by the end of the head
            return "utf-8"
        # Windows tools (EC-Lab, Maccor) write a code page, not UTF-8.
        return "cp1252"


def _classify(head: bytes, compression: Compression, member: str | None) -> Sniff:
    for magic, at, kind, what in _MAGIC:
        if head[at:at + len(magic)] == magic:
            return Sniff(kind, what, compression, member=member)
    enc = _text_encoding(head)
    if enc is None:
        return Sniff("binary", "a binary file of no known cycler format", compression, member=member)
    text = head.decode(enc if enc != "utf-16" else "utf-16", errors="replace")
    cr_only = "\r" in text and "\n" not in text
    return Sniff("text", "text", compression, enc, cr_only, member)


def sniff(path: str | os.PathLike[str]) -> Sniff:
    """Classify ``path`` from its first bytes (and, when compressed, from theirs)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(64 * 1024)
    except OSError as exc:
        raise ReaderError(f"{p.name}: cannot read: {exc.strerror or exc}") from None
    comp = _compression(head)
    if comp is None:
        return _classify(head, None, None)
    if comp == "zip":
        try:
            with zipfile.ZipFile(p) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if "data.ndc" in names or any(n.lower().endswith(".ndc") for n in names):
                    return Sniff("neware_ndax", "a Neware .ndax file (zip of binary tables)")
                if "[Content_Types].xml" in names:
                    return Sniff("xlsx", "an Excel/Office Open XML workbook")
                if len(names) != 1:
                    raise ReaderError(
                        f"{p.name}: a zip archive with {len(names)} files; put one export "
                        "per archive, or unzip it and analyze the files"
                    )
                with zf.open(names[0]) as inner:
                    ihead = inner.read(64 * 1024)
                return _classify(ihead, "zip", names[0])
        except zipfile.BadZipFile:
            raise ReaderError(f"{p.name}: looks like a zip archive but cannot be opened "
                              "(truncated or damaged)") from None
    try:
        with _decompressor(p, comp, None) as fh:
            ihead = fh.read(64 * 1024)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        raise ReaderError(f"{p.name}: looks {comp}-compressed but cannot be decompressed "
                          "(truncated or damaged)") from None
    return _classify(ihead, comp, None)


def _decompressor(p: Path, comp: Compression, member: str | None) -> BinaryIO:
    if comp == "gzip":
        return cast(BinaryIO, gzip.open(p, "rb"))
    if comp == "bz2":
        return cast(BinaryIO, bz2.open(p, "rb"))
    if comp == "xz":
        return cast(BinaryIO, lzma.open(p, "rb"))
    if comp == "zip":
        zf = zipfile.ZipFile(p)
        inner = zf.open(member or zf.namelist()[0])
        return cast(BinaryIO, io.BufferedReader(_ClosingBoth(cast(BinaryIO, inner), zf), 1 << 20))
    return p.open("rb")


class _ClosingBoth(io.RawIOBase):
    """A zip member that closes its archive too."""

    def __init__(self, inner: BinaryIO, outer: zipfile.ZipFile) -> None:
        self._inner, self._outer = inner, outer

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        self._outer.close()
        super().close()


class _Recoded(io.RawIOBase):
    """Decode ``raw`` with ``encoding`` (universal newlines) and yield UTF-8 bytes."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self._raw = raw
        self._text = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline=None)  # type: ignore[type-var]
        self._buf = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while len(self._buf) < len(b):
            chunk = self._text.read(1 << 18)
            if not chunk:
                break
            self._buf += chunk.encode("utf-8")
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        del self._buf[:n]
        return n

    def close(self) -> None:
        self._text.close()
        super().close()


def open_raw(path: str | os.PathLike[str], info: Sniff | None = None) -> BinaryIO:
    """The file's bytes with any compression removed (binary formats read through this)."""
    p = Path(path)
    info = info or sniff(p)
    return _decompressor(p, info.compression, info.member)


def open_text(path: str | os.PathLike[str], info: Sniff | None = None) -> BinaryIO:
    """A binary stream of the file as UTF-8 text with LF (or CRLF) line ends.

    Plain files are returned as opened (seekable); the others are decoded on the fly and
    support only reading (use :func:`skip` to move forward).
    """
    p = Path(path)
    info = info or sniff(p)
    if info.kind != "text":
        raise ReaderError(f"{p.name}: {info.what}, not a text export")
    raw = _decompressor(p, info.compression, info.member)
    if info.encoding in _ASCII_COMPATIBLE and not info.cr_only:
        # The readers strip a UTF-8 BOM from the header line themselves; a code page's
        # non-ASCII bytes (µ, °) sit in names and preambles only.
        return raw
    return cast(BinaryIO, io.BufferedReader(_Recoded(raw, info.encoding), 1 << 20))


def skip(fh: BinaryIO, n: int) -> None:
    """Move ``fh`` forward by ``n`` bytes from its start (seek when it can, else read)."""
    if fh.seekable():
        fh.seek(n)
        return
    while n > 0:
        got = fh.read(min(n, 1 << 20))
        if not got:
            return
        n -= len(got)


def head_text(path: str | os.PathLike[str], size: int = 64 * 1024,
              info: Sniff | None = None) -> str:
    """The first ``size`` bytes of the file's text (decoded, ``\\n`` line ends)."""
    with open_text(path, info) as fh:
        data = fh.read(size)
    return data.decode("utf-8", errors="replace").lstrip("\ufeff").replace("\r\n", "\n")
