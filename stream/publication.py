"""The publication ledger: which assembled slots still owe their outputs, and how many slots of outputs Redis keeps.

ASSEMBLE puts every slot it assembles in the city's `unpub` set in the same atomic call; a slot leaves it
only once its outputs are produced AND flushed (`done`). A worker that dies in between leaves the slot
there, and the next publication (at start, or at the next assembly) publishes it again: at least once,
never skipped.
"""

from __future__ import annotations

from stream.keys import Keys
from stream.windows import lua


class Ledger:
    """The `unpub`/`outs` sets of stream.keys (an asyncio client: one Redis or a cluster)."""

    def __init__(self, client, keys: Keys = Keys(), retain: int = 96, ttl: int = 172_800) -> None:
        self.r = client
        self.keys = keys
        self.retain = int(retain)
        self.ttl = int(ttl)
        self._published = client.register_script(lua.PUBLISHED)

    async def pending(self) -> list[tuple[str, int]]:
        """Every (city, slot) assembled but not yet published, oldest slot first (a slot's live error
        reads the forecast made at the slot before)."""
        cities = sorted(c.decode() for c in await self.r.smembers(self.keys.cities))
        if not cities:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for c in cities:
                pipe.zrange(self.keys.unpublished(c), 0, -1)
            got = await pipe.execute()
        return sorted(((c, int(s)) for c, slots in zip(cities, got) for s in slots), key=lambda cs: (cs[1], cs[0]))

    async def done(self, city_slots: list[tuple[str, int]]) -> int:
        """Record the slots as published (their records flushed) and trim outputs beyond `retain` slots;
        returns the number of slots trimmed."""
        by_city: dict[str, list[int]] = {}
        for c, s in city_slots:
            by_city.setdefault(c, []).append(s)
        trimmed = 0
        for c, slots in by_city.items():
            old = await self._published(keys=[self.keys.unpublished(c), self.keys.kept(c)],
                                        args=[self.retain, self.ttl, *slots])
            if old:
                # One city's keys share a hash tag: one transaction on its node.
                async with self.r.pipeline(transaction=True) as pipe:
                    for s in old:
                        pipe.delete(*self.keys.slot_outputs(c, int(s)))
                    pipe.hdel(self.keys.errors(c), *old)
                    pipe.zrem(self.keys.kept(c), *old)
                    await pipe.execute()
            trimmed += len(old)
        return trimmed
