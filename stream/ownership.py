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


M, SEED = np.uint32(0x5BD1E995), 0x9747B28C


def murmur2_many(keys: list[bytes]) -> np.ndarray:
    """Kafka's murmur2 (aiokafka.partitioner.murmur2, as uint32) of many keys at once, in numpy: murmur2 in
    Python costs ~1.6 us a key, so a worker's first batches (every user new) would hold the loop ~50 ms per
    30,000 users."""
    n = len(keys)
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    width = -(-int(lengths.max(initial=0)) // 4) * 4 or 4
    # Zero-padded to a multiple of 4 bytes; little endian, as Kafka reads the blocks.
    words = np.array(keys, dtype=f"S{width}").view("<u4").reshape(n, width // 4).astype(np.uint32)
    h = np.uint32(SEED) ^ lengths.astype(np.uint32)
    with np.errstate(over="ignore"):
        for b in range(width // 4):
            full = lengths >= 4 * (b + 1)
            k = words[:, b] * M
            k ^= k >> np.uint32(24)
            k *= M
            h = np.where(full, (h * M) ^ k, h)
        tail, rest = lengths & 3, lengths // 4
        last = words[np.arange(n), np.minimum(rest, width // 4 - 1)]  # the tail bytes, zero-padded
        h = np.where(tail > 0, (h ^ last) * M, h)
        h ^= h >> np.uint32(13)
        h *= M
        h ^= h >> np.uint32(15)
    return h


class Owners:
    """`owner` for many uids at once."""

    def __init__(self, n: int) -> None:
        self.n = n

    def of(self, uids) -> np.ndarray:
        keys = [str(u).encode() for u in (uids.tolist() if isinstance(uids, np.ndarray) else uids)]
        return ((murmur2_many(keys) & np.uint32(0x7FFFFFFF)) % np.uint32(self.n)).astype(np.int64)
