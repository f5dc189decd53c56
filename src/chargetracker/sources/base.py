"""The source abstraction: where live measurements come from, and where they resume.

A source is polled in micro-batches by the runner (:mod:`chargetracker.runtime.runner`).
Each :class:`Batch` carries the source's *position* after that batch: a small
JSON-serializable value (simulator clock, file byte offset, ...) that the pipeline commits
in the same transaction as the batch's results. After a crash the runner reads the
committed position back and calls :meth:`Source.seek`, so the source continues exactly
after the last committed batch: nothing is lost and nothing is read twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import polars as pl

__all__ = ["Batch", "Source"]


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Batch:
    """One micro-batch from a source.

    ``frame``: canonical measurements (:data:`~chargetracker.schema.MEASUREMENT_SCHEMA`).
    ``position``: where the source stands *after* this batch (JSON-serializable).
    ``cells``: cell metadata (:data:`~chargetracker.schema.CELL_SCHEMA`) to register with
    the batch, or None. ``rejected``: rows the source itself could not read (dead letters
    in :data:`~chargetracker.schema.DEAD_LETTER_SCHEMA`, e.g. a reader's unparseable
    lines with file and line number), or None.
    """

    frame: pl.DataFrame
    position: Any
    cells: pl.DataFrame | None = None
    rejected: pl.DataFrame | None = None

    @property
    def rows(self) -> int:
        """Rows in the batch, good and rejected."""
        return self.frame.height + (self.rejected.height if self.rejected is not None else 0)


@runtime_checkable
class Source(Protocol):
    """What the runner needs from a source.

    ``name`` keys the source's committed position, so it must be stable across restarts.
    ``done`` is True once a finite source (a bounded simulation, a file replay) has
    delivered everything; a live source (a watched directory) is never done.
    """

    name: str

    @property
    def done(self) -> bool: ...

    def poll(self, max_rows: int) -> Batch | None:
        """The next batch of at most ``max_rows`` rows, or None when nothing is ready yet
        (paced simulator ahead of the wall clock, no new lines in a file)."""
        ...

    def seek(self, position: Any) -> None:
        """Continue after ``position``, a value a previous :class:`Batch` carried."""
        ...

    def close(self) -> None:
        """Release files and other resources."""
        ...
