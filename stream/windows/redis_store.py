"""The Redis WindowStore: scripted, pipelined, one round trip per batch on the hot path."""

from __future__ import annotations

import numpy as np
import orjson

from stream.keys import Keys
from stream.windows import lua
from stream.windows.store import WindowStore
from stream.windows.watermark import PartitionClock


class RedisWindowStore(WindowStore):
    """Window state in one Redis, laid out as `stream.keys` documents."""

    def __init__(self, client, keys: Keys = Keys(), ttl: int = 172_800) -> None:
        self.r = client
        self.keys = keys
        self.ttl = int(ttl)
        self.root = f"{keys.app}:"
        self._apply = client.register_script(lua.APPLY)
        self._close = client.register_script(lua.CLOSE)
        self._advance = client.register_script(lua.ADVANCE)

    async def clock(self, part: int) -> PartitionClock:
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.watermarks, part)
            pipe.hget(self.keys.closed, part)
            wm, closed = await pipe.execute()
        return PartitionClock(None if wm is None else float(wm), None if closed is None else int(closed) + 1)

    async def apply(self, part, city, uid, slot, ts, cell, clock: PartitionClock) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            if len(uid):
                payload = orjson.dumps({
                    "c": city, "u": uid, "s": slot.tolist(),
                    "t": np.floor(ts * 1000.0).astype(np.int64).tolist(), "x": cell.tolist(),
                })
                await self._apply(args=[self.root, part, self.ttl, payload], client=pipe)
                pipe.sadd(self.keys.cities, *sorted(set(city)))
                pipe.expire(self.keys.cities, self.ttl)
            if clock.max_ts is not None:
                pipe.hset(self.keys.watermarks, part, repr(clock.max_ts))
                pipe.expire(self.keys.watermarks, self.ttl)
            if clock.next_close is not None:
                # Only the first clock of a partition lands here; later progress goes through advance().
                pipe.hsetnx(self.keys.closed, part, clock.next_close - 1)
            await pipe.execute()

    async def cities(self) -> list[str]:
        return sorted(c.decode() if isinstance(c, bytes) else c for c in await self.r.smembers(self.keys.cities))

    async def close_windows(self, part, city, slot):
        uids, cells = orjson.loads(await self._close(args=[self.keys.city(city), part, slot]))
        return list(uids), np.asarray(cells, dtype=np.int64).reshape(-1, 8)  # (N, 8)

    async def write_partial(self, part, city, slot, cells, counts) -> None:
        key = self.keys.partial(city, slot, part)
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if len(cells):
                pipe.hset(key, mapping={int(c): f"{o},{i},{u}" for c, (o, i, u) in zip(cells.tolist(), counts.tolist())})
                pipe.expire(key, self.ttl)
            pipe.zadd(self.keys.partial_slots(city), {str(slot): slot})
            pipe.expire(self.keys.partial_slots(city), self.ttl)
            await pipe.execute()

    async def advance(self, part, closed_through, n_partitions):
        made = orjson.loads(await self._advance(args=[self.root, part, closed_through, n_partitions, self.ttl]))
        return [(str(c), int(s)) for c, s in made]

    async def flows(self, city, slots):
        async with self.r.pipeline(transaction=False) as pipe:
            for s in slots:
                pipe.hgetall(self.keys.flow(city, s))
            got = await pipe.execute()
        out = {}
        for s, h in zip(slots, got):
            out[s] = {int(c): tuple(int(v) for v in val.split(b"," if isinstance(val, bytes) else ","))
                      for c, val in h.items()}
        return out
