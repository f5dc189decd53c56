"""Zero-copy access to a Polars string column's Arrow string views (no pyarrow).

Polars keeps strings as Arrow *string views*: 16 bytes per row, ``(length: u32, then
the bytes inline when length <= 12, else a 4-byte prefix, a data buffer index and an
offset)``. Through the public Arrow PyCapsule stream interface
(``Series.__arrow_c_stream__``) the view buffer is exported without a copy, so a
compiled pass can read each row's 16 bytes directly: a short id (<= 12 bytes, the usual
cell id) *is* its view, and two long ids with the same view are the same bytes at the
same place. :mod:`chargetracker.checks` encodes cell ids from these views.

Everything here is defensive: any format or layout it does not know gives ``None`` and
the caller takes its general path.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import polars as pl

__all__ = ["string_views"]


class _Schema(ctypes.Structure):
    _fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
                ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64), ("children", ctypes.c_void_p),
                ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p),
                ("private_data", ctypes.c_void_p)]


class _Array(ctypes.Structure):
    _fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
                ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
                ("buffers", ctypes.POINTER(ctypes.c_void_p)), ("children", ctypes.c_void_p),
                ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p),
                ("private_data", ctypes.c_void_p)]


class _Stream(ctypes.Structure):
    pass


_GetSchema = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Stream), ctypes.POINTER(_Schema))
_GetNext = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Stream), ctypes.POINTER(_Array))
_Stream._fields_ = [("get_schema", _GetSchema), ("get_next", _GetNext),
                    ("get_last_error", ctypes.c_void_p), ("release", ctypes.c_void_p),
                    ("private_data", ctypes.c_void_p)]
_Release = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

# A private prototype (not ``ctypes.pythonapi.PyCapsule_GetPointer.argtypes = ...``, which
# would change the shared function object for every other user in the process).
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


def _release(obj: _Schema | _Array) -> None:
    if obj.release:
        _Release(obj.release)(ctypes.addressof(obj))


class _Export:
    """Owner of one exported array, its schema and the stream's capsule: released when
    it is collected, and every NumPy view of the array's buffers refers to it (through
    its ctypes base), so a view can never outlive the memory it reads."""

    __slots__ = ("__weakref__", "array", "capsule", "schema")

    def __init__(self, capsule: object, schema: _Schema, array: _Array) -> None:
        self.capsule, self.schema, self.array = capsule, schema, array

    def __del__(self) -> None:
        _release(self.array)
        _release(self.schema)
        # Then the capsule's destructor releases the stream (slots cleared after this).


@contextmanager
def string_views(col: pl.Series) -> Iterator[np.ndarray | None]:
    """The rows' 16-byte views of ``col`` (a String column without nulls, one chunk) as a
    read-only ``(len, 2)`` uint64 array -- word 0: length (low 32 bits) and the first 4
    bytes; word 1: bytes 4..11 inline, or (buffer index, offset) of a long string -- or
    ``None`` when the column is not exported as one string-view array. The array is a
    view of Polars' memory, which its exported array keeps alive: the export is released
    when the last view of it is gone (normally on leaving the ``with`` block)."""
    n = len(col)
    if col.dtype != pl.String or col.n_chunks() != 1 or col.null_count() or n == 0:
        yield None
        return
    try:
        capsule = col.__arrow_c_stream__()
        stream = _Stream.from_address(_capsule_pointer(capsule, b"arrow_array_stream"))
    except Exception:  # an older or newer Polars without the stream export
        stream = None
    if stream is None:
        # Yielded outside the handler: an error of the caller's block is not reported as
        # raised while handling the missing export's.
        yield None
        return
    schema, arr = _Schema(), _Array()
    views = None
    try:
        if (stream.get_schema(ctypes.byref(stream), ctypes.byref(schema)) == 0
                and schema.format == b"vu"
                and stream.get_next(ctypes.byref(stream), ctypes.byref(arr)) == 0 and arr.release
                and arr.length == n and arr.null_count == 0 and arr.n_buffers >= 3
                and arr.buffers[1]):
            raw = (ctypes.c_uint64 * (2 * (arr.offset + n))).from_address(arr.buffers[1])
            raw._export = _Export(capsule, schema, arr)  # type: ignore[attr-defined]
            views = np.ctypeslib.as_array(raw).reshape(-1, 2)[arr.offset:]
            views.flags.writeable = False
    finally:
        if views is None:  # nothing refers to the export: released now (once: see _release)
            _release(arr)
            _release(schema)
    del capsule, stream, schema, arr  # the views (if any) hold the export from here on
    yield views
