"""Key -> partition, exactly as Kafka's Java client and librdkafka's ``murmur2_random``.

All samples of a cell must land in one partition, in order, whichever producer wrote
them: a Java or Go client with the default partitioner, librdkafka with
``partitioner=murmur2_random``, or ChargeTracker's own sink (which computes the
partition here and produces with an explicit partition, for single JSON messages and
Arrow batches alike). The worker checks every row against this function, so a producer
with another partitioner (librdkafka's default is CRC32) cannot silently split a cell's
state over two workers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl

__all__ = ["murmur2", "partition_for", "Partitioner"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    extra = length & 3
    if extra >= 3:
        h ^= data[n4 + 2] << 16
    if extra >= 2:
        h ^= data[n4 + 1] << 8
    if extra >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: str | bytes, partitions: int) -> int:
    """Partition of a key among ``partitions`` (Java ``toPositive(murmur2(key)) % n``)."""
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions


class Partitioner:
    """Cached cell_id -> partition for a topic with a fixed partition count.

    The hash runs once per distinct cell id (a fleet has at most a few hundred thousand);
    mapping a batch is then one vectorized lookup.
    """

    def __init__(self, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("a topic has at least one partition")
        self.partitions = int(partitions)
        self._cache: dict[str, int] = {}

    def __call__(self, cell_id: str) -> int:
        p = self._cache.get(cell_id)
        if p is None:
            p = self._cache[cell_id] = partition_for(cell_id, self.partitions)
        return p

    def learn(self, cell_ids: Iterable[str]) -> None:
        for cid in cell_ids:
            if cid not in self._cache:
                self._cache[cid] = partition_for(cid, self.partitions)

    def of_series(self, cell_ids: pl.Series) -> np.ndarray:
        """Partition of every row (int64 array); null ids map to -1."""
        uniq = cell_ids.drop_nulls().unique()
        self.learn(uniq.to_list())
        mapping = {cid: self._cache[cid] for cid in uniq.to_list()}
        out = cell_ids.replace_strict(mapping, default=-1, return_dtype=pl.Int64)
        return out.fill_null(-1).to_numpy().copy()
