"""Live sources: where measurements come from and how they resume after a restart.

Every source is polled in micro-batches and reports a JSON-serializable *position* with
each batch (see :mod:`chargetracker.sources.base`); the runtime commits it atomically with
the batch's results and seeks back to it on restart.

* :class:`SimulatorSource` -- the seeded fleet simulator, paced by time acceleration;
* :class:`FileSource` -- replay (or follow) one cycler file;
* :class:`DirectorySource` -- a folder of cycler exports: new files and appended rows.
"""

from __future__ import annotations

from .base import Batch, Source
from .directory import DirectorySource
from .factory import SOURCE_TYPES, build_source, parse_acceleration, simulator_fleet_config
from .file import FileSource
from .lines import LineParser, read_lines
from .simulator import SimulatorSource, fleet_fingerprint

__all__ = [
    "Batch",
    "DirectorySource",
    "FileSource",
    "LineParser",
    "SOURCE_TYPES",
    "SimulatorSource",
    "Source",
    "build_source",
    "fleet_fingerprint",
    "parse_acceleration",
    "read_lines",
    "simulator_fleet_config",
]
