"""Window state on a real redis-server: the latest ping wins within one batch and across batches, in any
order and batch size, in the worker's memory and in the copy a new owner loads from Redis."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.slots import DEFAULT_ORIGIN, SLOT_SECONDS
from stream.windows.redis_store import RedisWindowStore
from stream.windows.watermark import PartitionClock

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(aredis):
    s = RedisWindowStore(aredis)
    await s.state(0)
    return s


async def apply(store, pings, part=0):
    """pings: [(uid, slot, ts offset, cell)]; one batch."""
    uid = [str(p[0]) for p in pings]
    slot = np.array([p[1] for p in pings], dtype=np.int64)
    ts = np.array([DEFAULT_ORIGIN + p[1] * SLOT_SECONDS + p[2] for p in pings], dtype=np.float64)
    cell = np.array([p[3] for p in pings], dtype=np.int64)
    await store.apply(part, ["A"] * len(pings), uid, slot, ts, cell,
                      PartitionClock(float(ts.max()), None, int(slot.min())))


def expected(pings) -> dict:
    """(slot, uid) -> cell of the latest ping, ties to the larger cell."""
    best: dict = {}
    for u, s, off, c in pings:
        v = (int(np.floor((DEFAULT_ORIGIN + s * SLOT_SECONDS + off) * 1000.0)), c)
        best[(s, str(u))] = max(best.get((s, str(u)), v), v)
    return {k: v[1] for k, v in best.items()}


async def held(store, slots) -> dict:
    """(slot, uid) -> cell as the store's windows show them."""
    out = {}
    for s in slots:
        uids, cells = (await store.close_windows(0, [("A", s)]))[0]
        out |= {(s, u): int(c) for u, c in zip(uids, cells[:, -1])}
    return out


@pytest.mark.parametrize("n_users", [3, 1500])
async def test_latest_wins_within_and_across_calls_in_any_order(store, n_users):
    rng = random.Random(n_users)
    pings = [(rng.randrange(n_users), rng.randrange(2), rng.choice([10, 20, 20, 30]), rng.randrange(40_000))
             for _ in range(3 * n_users)]
    rng.shuffle(pings)
    cut = len(pings) // 2
    await apply(store, pings[:cut])
    await apply(store, pings[cut:])
    want = expected(pings)
    assert await held(store, [0, 1]) == want
    reloaded = RedisWindowStore(store.r)
    await reloaded.state(0)
    assert await held(reloaded, [0, 1]) == want
    await apply(store, pings[::-1])  # redelivered in another order: the same state
    assert await held(store, [0, 1]) == want


async def test_close_reads_back_the_cells(store):
    # user 1 seen in slots 0, 2, 7; user 2 only in 7; window of slot 7 = slots 0..7
    await apply(store, [(1, 0, 5, 11), (1, 2, 5, 22), (1, 7, 5, 77), (2, 7, 5, 70)])
    (uids, cells), = await store.close_windows(0, [("A", 7)])
    got = {u: c.tolist() for u, c in zip(uids, cells)}
    assert got == {"1": [11, -1, 22, -1, -1, -1, -1, 77], "2": [-1] * 7 + [70]}
