"""APPLY and CLOSE on a real redis-server: latest ping wins within one call too, any order, any batch size."""

from __future__ import annotations

import random

import numpy as np
import pytest
import redis.asyncio as aioredis

from models.slots import DEFAULT_ORIGIN, SLOT_SECONDS
from stream.keys import Keys
from stream.windows.redis_store import RedisWindowStore
from stream.windows.watermark import PartitionClock

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(redis_client, redis_url):
    r = aioredis.Redis.from_url(redis_url)
    yield RedisWindowStore(r)
    await r.aclose()


async def apply(store, pings, part=0):
    """pings: [(uid, slot, ts offset, cell)]; one APPLY call."""
    uid = [str(p[0]) for p in pings]
    slot = np.array([p[1] for p in pings], dtype=np.int64)
    ts = np.array([DEFAULT_ORIGIN + p[1] * SLOT_SECONDS + p[2] for p in pings], dtype=np.float64)
    cell = np.array([p[3] for p in pings], dtype=np.int64)
    await store.apply(part, ["A"] * len(pings), uid, slot, ts, cell, PartitionClock())


def expected(pings) -> dict:
    """(slot, uid) -> (ts_ms, cell) of the latest ping, ties to the larger cell."""
    best: dict = {}
    for u, s, off, c in pings:
        v = (int(np.floor((DEFAULT_ORIGIN + s * SLOT_SECONDS + off) * 1000.0)), c)
        best[(s, str(u))] = max(best.get((s, str(u)), v), v)
    return best


async def stored(store, slots) -> dict:
    out = {}
    for s in slots:
        for u, v in (await store.r.hgetall(Keys().cells("A", s))).items():
            t, c = v.decode().split("|")
            out[(s, u.decode())] = (int(t), int(c))
    return out


@pytest.mark.parametrize("n_users", [3, 1500])  # 1500: past the hash's small (ziplist) encoding in one call
async def test_latest_wins_within_and_across_calls_in_any_order(store, n_users):
    rng = random.Random(n_users)
    pings = [(rng.randrange(n_users), rng.randrange(2), rng.choice([10, 20, 20, 30]), rng.randrange(40_000))
             for _ in range(3 * n_users)]
    rng.shuffle(pings)
    cut = len(pings) // 2
    await apply(store, pings[:cut])
    await apply(store, pings[cut:])
    want = expected(pings)
    assert await stored(store, [0, 1]) == want
    rng.shuffle(pings)
    await apply(store, pings)  # a redelivery, in another order, in one call
    assert await stored(store, [0, 1]) == want


async def test_close_reads_back_the_cells(store):
    pings = [(u, s, 5, 100 * u + s) for u in range(600) for s in range(8) if (u + s) % 3]
    await apply(store, pings)
    [(uids, cells)] = await store.close_windows(0, [("A", 7)])
    want = expected(pings)
    for u, row in zip(uids, cells.tolist()):
        assert row == [want[(s, u)][1] if (s, u) in want else -1 for s in range(8)]
    assert sorted(uids, key=int) == [str(u) for u in range(600) if (u + 7) % 3]


async def test_close_without_full_windows_stops_at_the_most_recent_earlier_observation(store):
    pings = [(u, s, 5, 100 * u + s) for u in range(600) for s in range(8) if (u * 7 + s * s) % 4]
    await apply(store, pings)
    [(uids, cells)] = await store.close_windows(0, [("A", 7)], full=False)
    want = expected(pings)
    for u, row in zip(uids, cells.tolist()):
        seen = [s for s in range(7) if (s, u) in want]
        prev = max(seen) if seen else None
        assert row == [want[(s, u)][1] if s in (7, prev) else -1 for s in range(8)]
    assert len(uids) == sum(1 for u in range(600) if (u * 7 + 49) % 4)
