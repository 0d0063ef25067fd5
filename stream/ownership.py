"""Which partition owns a user: Kafka's default (Java client) partitioner, murmur2 of the uid's UTF-8 bytes.

A user's window state lives with its owner partition. `mobstream replay` sends each ping there; a ping
that arrives on another partition (an unkeyed producer, librdkafka's CRC32 default, a key that is not the
uid) is forwarded to its owner through the repartition topic (stream.repartition). To skip that hop,
key by uid with a murmur2 partitioner (librdkafka: `partitioner=murmur2_random`).
"""

from __future__ import annotations

import numpy as np
from aiokafka.partitioner import murmur2


def owner(uid, n: int) -> int:
    """The partition of `n` that owns `uid` (its decimal string when an int)."""
    return (murmur2(str(uid).encode()) & 0x7FFFFFFF) % n


class Owners:
    """`owner` for many uids, cached per uid (murmur2 in Python costs a few microseconds)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cache: dict = {}

    def of(self, uids) -> np.ndarray:
        get, cache, n = self.cache.get, self.cache, self.n
        out = np.empty(len(uids), dtype=np.int64)
        for i, u in enumerate(uids.tolist() if isinstance(uids, np.ndarray) else uids):
            p = get(u)
            if p is None:
                p = cache[u] = owner(u, n)
            out[i] = p
        return out
