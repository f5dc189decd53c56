"""Cut a byte stream of text lines into blocks, without a Python loop per line.

:func:`read_blocks` yields blocks of whole lines of about ``size`` bytes (each read is cut
at its last newline; a seekable stream seeks back to it, others carry the partial line
into the next read). :func:`split_lines` cuts one block further into pieces of at most
``n`` lines, finding the newlines with NumPy. Both keep memory bounded by the block size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

__all__ = ["read_blocks", "split_lines", "count_lines", "block_size"]

#: Largest block read at once, bytes: 16 MiB keeps Polars' parser busy on every core while
#: memory stays a small multiple of it.
MAX_BLOCK = 1 << 24


def block_size(chunk_rows: int) -> int:
    """Bytes per read for chunks of ``chunk_rows`` lines (about 64 bytes a line, 64 KiB to
    16 MiB)."""
    return int(min(max(chunk_rows * 64, 1 << 16), MAX_BLOCK))


def count_lines(block: bytes) -> int:
    """Lines in ``block`` (a last line without its newline counts)."""
    return block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)


#: Bytes read ahead of a block's end to find its last newline (a seekable file).
_PEEK = 1 << 16


def read_blocks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """Blocks of whole lines from ``fh``'s current position to its end."""
    if fh.seekable():
        yield from _read_blocks_seekable(fh, size)
        return
    yield from _read_blocks_stream(fh, size)


def _read_blocks_seekable(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """A plain file: find each block's last newline in a short read ahead of its end, then
    read exactly up to it, so the block is never copied again to cut its partial line (a
    16 MiB copy a block, as much CPU as the read)."""
    pos = fh.tell()
    while True:
        peek = min(_PEEK, size)
        fh.seek(pos + size - peek)
        tail = fh.read(peek)
        cut = size - peek + tail.rfind(b"\n") + 1 if len(tail) == peek else -1
        if len(tail) == peek and cut <= size - peek:  # no newline near the end: look wider
            fh.seek(pos)
            yield from _read_blocks_stream(fh, size)
            return
        fh.seek(pos)
        data = fh.read(cut if cut > 0 else size)
        if not data:
            return
        if cut <= 0:  # the rest of the file is shorter than a block
            if len(data) < size:
                yield data
                return
            continue  # the file grew between the two reads: look again
        pos += len(data)
        n = len(data)
        yield data
        # Drop the block before reading the next: with the consumer's reference dropped
        # too, the next read reuses its memory instead of faulting in fresh pages (a 16 MiB
        # block: ~4,000 page faults, more CPU than the copy itself).
        del data
        if n < cut:  # the file shrank between the two reads
            return


def _read_blocks_stream(fh: BinaryIO, size: int) -> Iterator[bytes]:
    seekable = fh.seekable()
    pos = fh.tell() if seekable else 0
    carry = b""
    while True:
        data = fh.read(size)
        if not data:
            if carry:
                yield carry
            return
        at_end = len(data) < size  # buffered streams return less only at the end
        if carry:
            data, carry = carry + data, b""
        if at_end:
            yield data
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # no newline yet: a line longer than the read
            if seekable:
                size *= 2
                fh.seek(pos)
            else:
                carry = data
            continue
        if cut < len(data):
            if seekable:
                fh.seek(pos + cut)
            else:
                carry = data[cut:]
            data = data[:cut]
        pos += len(data)
        yield data


def split_lines(block: bytes, n: int) -> Iterator[tuple[bytes, int]]:
    """(piece, lines in piece) with at most ``n`` lines each, covering ``block`` in order."""
    total = count_lines(block)
    if total <= n:
        yield block, total
        return
    pos = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    start = done = 0
    for k in range(n - 1, len(pos), n):
        end = int(pos[k]) + 1
        yield block[start:end], n
        start, done = end, done + n
    if start < len(block):
        yield block[start:], total - done
