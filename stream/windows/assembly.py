"""A city's side of slot closing, on its hash tag: the partitions' shares and progress in, summed flows out.

Each partition writes its share of a closed slot and its progress (`MARK_CLOSED`); once every partition has
closed a slot, a worker sums the shares (numpy, off Redis) and `ASSEMBLE` writes the sum if no other worker
did meanwhile. Users are partitioned, cells are not, and a user's inflow/outflow involve only its own
observations, so the sum of the shares equals the whole-city computation.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
import orjson

from stream.keys import Keys
from stream.windows.scripts import Scripts

# Slots one ASSEMBLE script may sum (it is called again while more are due): a 100k-user city slot costs
# ~50 ms of Redis time, and Redis answers nobody else while a script runs.
ASSEMBLE_PER_CALL = 8


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def sum_shares(raws: list) -> list:
    """The partitions' shares of one slot summed: [flows as one JSON value, the number of hash arguments,
    then "cell", "occ,in,out" pairs in cell order] (ASSEMBLE's per-slot arguments)."""
    from stream.records import parse_flow

    parts = [parse_flow(r) for r in raws if r]
    if not parts:
        return [b"[[],[]]", 0]
    cells = np.concatenate([c for c, _ in parts])
    counts = np.concatenate([v for _, v in parts])  # (m, 3)
    ids, inv = np.unique(cells, return_inverse=True)
    total = np.zeros((len(ids), 3), dtype=np.int64)  # (K, 3)
    np.add.at(total, inv.reshape(-1), counts)
    vals = [b"%d,%d,%d" % t for t in map(tuple, total.tolist())]
    pairs = [None] * (2 * len(ids))
    pairs[::2], pairs[1::2] = ids.tolist(), vals
    return [orjson.dumps([ids, total.reshape(-1)], option=orjson.OPT_SERIALIZE_NUMPY), len(pairs), *pairs]


class CityAssembly:
    """Shares, progress and assembly of the cities' slots (keys of one city share its hash tag)."""

    def __init__(self, client, scripts: Scripts, keys: Keys, ttl: int) -> None:
        self.r, self.scripts, self.keys, self.ttl = client, scripts, keys, ttl
        # A worker's partitions close the same slot at once (one Faust batch): one of them assembles it, the
        # others then find it done; without this each summed the shares and all but one were refused.
        self._assembling: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def close(self, part: int, partials: list, closed_through: int, cities: list[str], n: int) -> list:
        """Write the partition's shares and progress, then assemble what every partition has closed."""
        def shares(pipe):
            for city, slot, cells, counts in partials:
                # One JSON string per share: packing thousands of hash fields cost more than the rest of the close.
                pipe.set(self.keys.partial(city, slot, part), orjson.dumps([cells, counts.reshape(-1)],
                                                                         option=orjson.OPT_SERIALIZE_NUMPY), ex=self.ttl)
                pipe.zadd(self.keys.partial_slots(city), {str(slot): slot})
                pipe.expire(self.keys.partial_slots(city), self.ttl)
            # After the shares in the same pipeline: Redis runs a node's commands in order.
            for city in cities:
                self.scripts.queue(pipe, "MARK_CLOSED", [self.keys.closed(city)], [part, closed_through, self.ttl])

        await self.scripts.pipeline(shares)
        made = []
        for city in cities:
            async with self._assembling[city]:
                made += await self.assemble(city, n)
        return made

    async def assemble(self, city: str, n: int) -> list[tuple[str, int]]:
        """Assemble the city's slots every partition has closed, a few per script; [(city, slot), ...] made."""
        k = self.keys
        made = []
        while True:
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.hvals(k.closed(city))
                pipe.get(k.assembled(city))
                closed, done = await pipe.execute()
            if len(closed) < n:
                return made
            low = min(int(v) for v in closed)
            lo = "-inf" if done is None else f"({int(done)}"
            if done is not None and int(done) >= low:
                return made
            slots = [int(s) for s in await self.r.zrangebyscore(k.partial_slots(city), lo, low, start=0,
                                                                num=ASSEMBLE_PER_CALL + 1)]
            more = len(slots) > ASSEMBLE_PER_CALL
            slots = slots[:ASSEMBLE_PER_CALL]
            upto = slots[-1] if more else low
            keys = [k.closed(city), k.assembled(city), k.partial_slots(city), k.latest(city), k.unpublished(city)]
            args = [n, self.ttl, "" if done is None else _s(done), upto, len(slots)]
            shares = [k.partial(city, s, q) for s in slots for q in range(n)]
            got = (await self.r.mget(shares)) if shares else []  # one hash tag: one node, one MGET
            sums = await asyncio.to_thread(lambda: [sum_shares(got[i * n:(i + 1) * n]) for i in range(len(slots))])
            for i, s in enumerate(slots):
                keys += [k.flow(city, s), k.flow_packed(city, s), *shares[i * n:(i + 1) * n]]
                args += [s, *sums[i]]
            ok = await self.scripts.call("ASSEMBLE", keys, args)
            if int(ok):
                made += [(city, s) for s in slots]
            # refused: another worker assembled meanwhile; read again

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
