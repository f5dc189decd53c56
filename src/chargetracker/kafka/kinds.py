"""The seam where a telemetry kind plugs into the Kafka worker.

The worker (:mod:`.worker`) knows consumer groups, partitions, offsets, checkpoints and
commits; everything that depends on *what* the messages are lives in a per-kind
**partition processor** (:class:`PartitionProcessor`): decoding a partition's messages
(its codec), running the kind's engine through the micro-batch step, flushing at an
end-of-stream marker, and the byte form of the checkpoint. :class:`Processor` in
:mod:`.processing` is the cell kind's.

A kind is registered once as a :class:`KafkaKind` (its default topic, how to build the
kind and its processor, how to read its entity metadata from the store) and then runs
with ``chargetracker worker --kind <name>`` on its own topic (topic per kind). The
generic :class:`~.processing.Processor` runs any kind; what differs is its message codec
(:class:`~.processing.RecordCodec`). Two kinds are registered here: ``cell`` (topic
``measurements``) and ``meter`` (topic ``meter-readings``, :mod:`.meter_codec`)::

    register_kafka_kind(KafkaKind(
        name="meter", default_topic="meter-readings", make_kind=meter_kind,
        make_processor=functools.partial(Processor, codec=METER_CODEC),
        entities=meter_entities, warm_up=warm_up_meters,
    ))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import polars as pl

from ..config import Settings
from ..errors import ConfigError
from ..kinds.base import TelemetryKind
from ..kinds.cell import cell_kind
from ..kinds.meter import METERS, meter_kind
from ..stores.archive_layout import CELL_ARCHIVE, METER_ARCHIVE, ArchiveLayout
from ..stores.base import CommitBatch, Store, all_cells
from . import meter_codec
from .partitioner import Partitioner
from .processing import Collected, PartitionState, Processor, RecordCodec

__all__ = ["KAFKA_KINDS", "METER_CODEC", "KafkaKind", "PartitionProcessor", "kafka_kind",
           "register_kafka_kind"]


class PartitionProcessor(Protocol):
    """What the worker calls for one kind (one instance per worker)."""

    #: Ingest-counter source name (``kafka:<topic>``), written with every commit.
    counter: str
    #: Set by the worker when the partition check is on: rows whose entity key hashes
    #: to another partition are dead letters.
    partitioner: Partitioner | None

    def process(self, ps: PartitionState, msgs: list[Any], out: Collected) -> None:
        """Run one partition's messages (offset order) through ``ps.state``: append
        commits, archive rows, accepted counts to ``out``; set ``ps.next_offset``."""
        ...

    def flush(self, ps: PartitionState, out: Collected) -> None:
        """End of a finite stream: settle the partition's pending state into ``out``."""
        ...

    def checkpoint(self, ps: PartitionState) -> CommitBatch:
        """The partition's checkpoint (engine state bytes + ``{"offset", "final"}``)."""
        ...

    def add_entities(self, ps: PartitionState, entities: pl.DataFrame, source: str) -> None:
        """Entity metadata already in the store (read on assignment) into the state."""
        ...


#: make_processor(topic, kind, *, partitioner, store_raw, archive, learn_cells, timings,
#: raw_every_s, future_horizon_s); ``timings`` is a dict the processor adds its phase
#: seconds to (decode, engine); ``raw_every_s`` thins the raw rows it puts in the store
#: (None: all); rows stamped more than ``future_horizon_s`` after the wall clock are dead
#: letters (None: no check).
ProcessorFactory = Callable[..., PartitionProcessor]


@dataclass(frozen=True)
class KafkaKind:
    """A telemetry kind as the worker runs it.

    ``entities`` reads the kind's entity metadata from the store on assignment (None:
    the kind keeps none); its ``entity_key`` and ``group`` columns (or the archive
    layout's ``group_column``) give the alert / archive groups. ``archive``: the layout
    of the kind's Parquet archive (``worker --archive``; None: the kind keeps none).
    """

    name: str
    default_topic: str
    make_kind: Callable[[Settings], TelemetryKind]
    make_processor: ProcessorFactory
    entities: Callable[[Store], pl.DataFrame] | None = None
    #: Run once before joining the group (load compiled kernels, so the first batch and
    #: a partition taken over from a failed worker are not delayed by compilation).
    warm_up: Callable[[Settings], None] | None = None
    archive: ArchiveLayout | None = None


def warm_up_cells(settings: Settings) -> None:
    """Compile the cell engine's kernels on a tiny stream."""
    from ..engine import flush, new_state, update

    n = 8
    frame = pl.DataFrame({
        "cell_id": ["__warm_up__"] * n, "ts": [float(i) for i in range(n)],
        "voltage_v": [3.7] * n, "current_a": [1.0, 1.0, 1.0, 0.0, 0.0, -1.0, -1.0, 0.0],
    })
    state, _ = update(new_state(settings.engine), frame)
    flush(state)


def warm_up_meters(settings: Settings) -> None:
    """Compile the meter engine's kernels on a tiny stream."""
    kind = meter_kind(settings)
    frame = pl.DataFrame({"meter_id": ["__warm_up__"] * 4, "ts": [0.0, 60.0, 120.0, 180.0],
                          "power_w": [1.0, 2.0, 3.0, 4.0]})
    state, _ = kind.update(kind.new_state(), kind.validate(frame, source="warm-up"),
                           source="warm-up")
    kind.flush(state)


def meter_entities(store: Store) -> pl.DataFrame:
    """Meters with their thresholds (``p97_w``) from the store: the engine judges spikes
    against the batch layer's thresholds from the first reading on."""
    from ..stores.meters import MeterStore

    return MeterStore(store).entities()


#: Meters: reading messages, ``ct-type: meter`` metadata into ``meter_meters``.
METER_CODEC = RecordCodec(meter_codec.METER, meter_codec.decode_readings,
                          meter_codec.decode_meter_messages,
                          lambda meters: CommitBatch(tables={METERS.name: meters}))

KAFKA_KINDS: dict[str, KafkaKind] = {
    "cell": KafkaKind("cell", "measurements", cell_kind, Processor, all_cells, warm_up_cells,
                      CELL_ARCHIVE),
    "meter": KafkaKind("meter", "meter-readings", meter_kind,
                       functools.partial(Processor, codec=METER_CODEC), meter_entities,
                       warm_up_meters, METER_ARCHIVE),
}


def register_kafka_kind(kind: KafkaKind) -> None:
    """Make a kind available to the worker (``--kind NAME``); replaces one of that name."""
    KAFKA_KINDS[kind.name] = kind


def kafka_kind(name: str) -> KafkaKind:
    try:
        return KAFKA_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown telemetry kind {name!r} for the Kafka worker; known: "
                          f"{sorted(KAFKA_KINDS)}") from None
