"""The WindowStore of the product: a partition's windows in the worker's memory, Redis as their durable copy.

Per batch, one COMMIT script on the partition's node appends the accepted pings (one frame per city
and slot) and moves the clock. A slot close reads windows from memory, then hands the partition's
shares to the cities' assembly (stream.windows.assembly). Works alike on one redis-server and on a
Redis Cluster (every script's keys share one hash tag).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from models.slots import WINDOW_SLOTS, slot_of
from stream.exceptions import StreamError
from stream.keys import Keys
from stream.windows import wal
from stream.windows.assembly import CityAssembly
from stream.windows.scripts import Scripts
from stream.windows.store import WindowStore
from stream.windows.tables import PartitionTables
from stream.windows.watermark import PartitionClock

SOURCE = "src:"  # clock field prefix: the max event time partition <q> forwarded here


class StaleState(StreamError):
    """Another owner wrote the partition since this worker loaded it (a rebalance): reload, then redo."""


@dataclass
class Loaded:
    """One partition as this worker holds it: tables, clock, and the generation they match in Redis."""

    tables: PartitionTables = field(default_factory=PartitionTables)
    clock: PartitionClock = PartitionClock()
    gen: str = "0"


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def by_city_slot(city: list[str], slot: np.ndarray) -> list[tuple[str, int, np.ndarray]]:
    """Row indices of the pings grouped by (city, slot), in row order within a group."""
    if not len(slot):
        return []
    first = city[0]
    if slot[0] == slot[-1] and (slot == slot[0]).all() and city.count(first) == len(city):
        return [(first, int(slot[0]), np.arange(len(slot)))]
    names = sorted(set(city))
    ci = np.fromiter(map(names.index, city), dtype=np.int64, count=len(city)) if len(names) > 1 else np.zeros(len(city), np.int64)
    order = np.lexsort((np.arange(len(slot)), slot, ci))
    k_ci, k_slot = ci[order], slot[order]
    cut = np.flatnonzero((k_ci[1:] != k_ci[:-1]) | (k_slot[1:] != k_slot[:-1])) + 1
    return [(names[int(k_ci[g[0]])], int(k_slot[g[0]]), order[g]) for g in np.split(np.arange(len(order)), cut)]


class RedisWindowStore(WindowStore):
    """Window state laid out as `stream.keys` documents, on one Redis or a Redis Cluster client."""

    def __init__(self, client, keys: Keys = Keys(), ttl: int = 172_800) -> None:
        self.r = client
        self.keys = keys
        self.ttl = int(ttl)
        self.scripts = Scripts(client)
        self.assembly = CityAssembly(client, self.scripts, keys, self.ttl)
        self.loaded: dict[int, Loaded] = {}
        self.cities: set[str] = set()

    # -- partition state
    def forget(self, part: int) -> None:
        """Drop a partition's in-memory copy (revoked: its next owner loads it from Redis)."""
        self.loaded.pop(part, None)

    async def state(self, part: int):
        if part not in self.loaded:
            self.loaded[part] = await self._load(part)
        return self.loaded[part].clock, sorted(self.cities)

    async def refresh_cities(self) -> list[str]:
        """The cities set read fresh; the two registries' expiry moves on (they are read once per close)."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.smembers(self.keys.cities)
            pipe.expire(self.keys.cities, self.ttl)
            pipe.expire(self.keys.parts, self.ttl)
            got, *_ = await pipe.execute()
        self.cities |= {_s(c) for c in got}
        return sorted(self.cities)

    async def _load(self, part: int) -> Loaded:
        """The partition's clock and the logs of every slot a window or a close may still need."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.sadd(self.keys.parts, part)
            pipe.expire(self.keys.parts, self.ttl)
            await pipe.execute()
        h = {_s(k): _s(v) for k, v in (await self.r.hgetall(self.keys.clock(part))).items()}
        await self.refresh_cities()
        wm = float(h["wm"]) if "wm" in h else None
        closed = int(h["closed"]) if "closed" in h else None
        first = int(h["first"]) if "first" in h else None
        inputs = {int(k[len(SOURCE):]): float(v) for k, v in h.items() if k.startswith(SOURCE)}
        out = Loaded(clock=PartitionClock(wm, None if closed is None else closed + 1, first, inputs), gen=h.get("gen", "0"))
        if first is None:
            return out
        # Forwarded pings may lie past the partition's own max event time: up to the newest source's.
        top = max([wm or -np.inf, *inputs.values()])
        lo = first if closed is None else max(first, closed + 1 - WINDOW_SLOTS)
        slots = range(lo, slot_of(top) + 1)
        todo = [(c, s) for c in sorted(self.cities) for s in slots]
        async with self.r.pipeline(transaction=False) as pipe:
            for c, s in todo:
                pipe.get(self.keys.log(part, c, s))
            blobs = await pipe.execute()
        for (c, s), blob in zip(todo, blobs):
            if blob:
                uids, ts, cells = wal.decode(blob, self.keys.log(part, c, s))
                out.tables.add(c, s, out.tables.uids.encode(uids), ts, cells)
        return out

    async def apply(self, part, city, uid, slot, ts, cell, clock: PartitionClock) -> None:
        held = self.loaded[part]
        new = set(city) - self.cities
        if new:
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.sadd(self.keys.cities, *sorted(new))
                pipe.expire(self.keys.cities, self.ttl)
                await pipe.execute()
            self.cities |= new
        groups = by_city_slot(city, slot)
        ts_ms = np.floor(ts * 1000.0).astype(np.int64)
        codes = held.tables.uids.encode(uid)
        frames, keys = [], []
        for c, s, idx in groups:
            names = uid if len(idx) == len(uid) else [uid[i] for i in idx.tolist()]
            keys.append(self.keys.log(part, c, s))
            frames.append(wal.encode(names, ts_ms[idx], cell[idx]))
        updates = [] if clock.max_ts is None else [("max", "wm", repr(clock.max_ts))]
        if clock.first is not None:
            updates.append(("min", "first", clock.first))
        updates += [("max", f"{SOURCE}{q}", repr(t)) for q, t in sorted(clock.inputs.items())]
        await self._commit(part, keys, frames, [], updates)
        for c, s, idx in groups:
            held.tables.add(c, s, codes[idx], ts_ms[idx], cell[idx])
        held.clock = PartitionClock(clock.max_ts, held.clock.next_close, clock.first, dict(clock.inputs))

    async def _commit(self, part: int, append: list, frames: list, delete: list, updates: list) -> None:
        held = self.loaded[part]
        keys = [self.keys.clock(part), *append, *delete]
        args = [held.gen, len(append), len(delete), self.ttl, len(updates), *(x for u in updates for x in u), *frames]
        ok, gen = await self.scripts.call("COMMIT", keys, args)
        if int(ok) < 0:
            self.forget(part)
            raise StaleState(f"partition {part}: Redis holds generation {_s(gen)}, this worker loaded {held.gen}")
        held.gen = _s(gen)

    async def close_windows(self, part, city_slots, full: bool = True):
        tables = self.loaded[part].tables
        # In a thread: 8 lookups over a big slot's users take tens of ms (the caller holds the partition's lock).
        return await asyncio.to_thread(lambda: [tables.windows(c, s) for c, s in city_slots])

    # -- slot close
    async def finish_close(self, part, partials, closed_through, n_partitions, purge):
        cities = sorted({c for c, _ in purge} | {c for c, *_ in partials})
        made = await self.assembly.close(part, partials, closed_through, cities, n_partitions)
        held = self.loaded[part]
        dead = [self.keys.log(part, c, s) for c, s in purge]
        await self._commit(part, [], [], dead, [("max", "closed", closed_through)])
        held.tables.forget_before(closed_through + 2 - WINDOW_SLOTS)
        c = held.clock
        held.clock = PartitionClock(c.max_ts, closed_through + 1, c.first, c.inputs)
        made.sort(key=lambda cs: (cs[1], cs[0]))
        return made

    async def flows(self, city, slots):
        return await self.assembly.flows(city, slots)
