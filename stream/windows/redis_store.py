"""The Redis WindowStore: scripted, pipelined, one round trip per batch on the hot path."""

from __future__ import annotations

import hashlib

import numpy as np
import orjson
from redis.exceptions import NoScriptError

from stream.keys import Keys
from stream.windows import lua, lua_slots
from stream.windows.store import WindowStore
from stream.windows.watermark import PartitionClock

# Slot numbers one ADVANCE script may assemble (it is called again while more are due): a 100k-user city
# slot costs ~50 ms of Redis time, and Redis answers nobody else while a script runs.
ASSEMBLE_PER_CALL = 8
# Pings one APPLY script takes (~1 us each in Lua): a partition's batch of batch messages (up to 2,000 Kafka
# messages of ~1,000 pings) in one script held Redis for 1.1-1.8 s (100k-user city, 4 workers).
APPLY_PINGS_PER_CALL = 100_000


def groups(city: list[str], uid: list[str], slot: np.ndarray, ts: np.ndarray, cell: np.ndarray) -> list:
    """Pings grouped by (city, slot) as the APPLY script reads them: [[city, slot, uids, "ts_ms|cell"s], ...]."""
    ts_ms = np.floor(ts * 1000.0).astype(np.int64).tolist()
    vals = [f"{t}|{c}" for t, c in zip(ts_ms, cell.tolist())]
    if len(set(city)) == 1 and slot[0] == slot[-1] and (slot == slot[0]).all():
        return [[city[0], int(slot[0]), uid, vals]]
    out: dict = {}
    for c, s, u, v in zip(city, slot.tolist(), uid, vals):
        g = out.get((c, s))
        if g is None:
            g = out[(c, s)] = [c, s, [], []]
        g[2].append(u)
        g[3].append(v)
    return list(out.values())


def chunks(gs: list, size: int) -> list[list]:
    """`groups` cut into lists of at most `size` pings (a group may be split: APPLY treats each part alike)."""
    out, cur, n = [], [], 0
    for c, s, uids, vals in gs:
        k = 0
        while k < len(uids):
            take = min(len(uids) - k, size - n)
            cur.append([c, s, uids[k : k + take], vals[k : k + take]])
            k, n = k + take, n + take
            if n == size:
                out.append(cur)
                cur, n = [], 0
    if cur or not out:
        out.append(cur)
    return out


def column_lines(raw: bytes, full: bool) -> tuple[list[str], np.ndarray]:
    """CLOSE's reply -> (uids, cells (N, 8), -1 = unseen): line k holds column 7-k for the users still asked
    there (all of them for the slot and the one before it; with full=False, then only those not seen yet)."""
    head, *lines = raw.split(b"\n")
    uids = orjson.loads(head)
    cells = np.full((len(uids), 8), -1, dtype=np.int64)  # (N, 8)
    rows = np.arange(len(uids))
    for k, line in enumerate(lines):
        col = 7 - k
        got = np.fromstring(line, dtype=np.int64, sep=",")  # (len(rows),)
        cells[rows, col] = got
        if not full and col < 7:
            rows = rows[got < 0]
    return uids, cells


class RedisWindowStore(WindowStore):
    """Window state in one Redis, laid out as `stream.keys` documents."""

    def __init__(self, client, keys: Keys = Keys(), ttl: int = 172_800) -> None:
        self.r = client
        self.keys = keys
        self.ttl = int(ttl)
        self.root = f"{keys.app}:"
        self.scripts = {"APPLY": lua.APPLY, "CLOSE": lua.CLOSE, "ADVANCE": lua_slots.ADVANCE, "PURGE": lua_slots.PURGE}
        self.sha = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in self.scripts.items()}

    def _eval(self, pipe, name: str, *args) -> None:
        # Plain EVALSHA: redis-py's Script objects send SCRIPT EXISTS before every pipeline (a round trip).
        pipe.execute_command("EVALSHA", self.sha[name], 0, *args)

    async def _run(self, fill, transaction: bool = False) -> list:
        """One pipeline built by `fill(pipe)`; loads the scripts and runs it again if Redis lost them.

        Every script is idempotent, so the rerun after NOSCRIPT leaves the same state.
        """
        for attempt in (0, 1):
            async with self.r.pipeline(transaction=transaction) as pipe:
                fill(pipe)
                try:
                    return await pipe.execute()
                except NoScriptError:
                    if attempt:
                        raise
            for src in self.scripts.values():
                await self.r.script_load(src)

    async def state(self, part: int):
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.watermarks, part)
            pipe.hget(self.keys.closed, part)
            pipe.smembers(self.keys.cities)
            wm, closed, cities = await pipe.execute()
        clock = PartitionClock(None if wm is None else float(wm), None if closed is None else int(closed) + 1)
        return clock, sorted(c.decode() for c in cities)

    async def apply(self, part, city, uid, slot, ts, cell, clock: PartitionClock) -> None:
        parts = chunks(groups(city, uid, slot, ts, cell), APPLY_PINGS_PER_CALL) if len(uid) else [[]]
        max_ts = "" if clock.max_ts is None else repr(clock.max_ts)
        first_closed = "" if clock.next_close is None else clock.next_close - 1

        def fill(pipe):
            # The clock goes with the last part only: after a crash mid-way the batch is not committed, its
            # redelivery re-applies the same pings (idempotent) against the clock as it was.
            for i, gs in enumerate(parts):
                last = i == len(parts) - 1
                self._eval(pipe, "APPLY", self.root, part, self.ttl, orjson.dumps(gs),
                           max_ts if last else "", first_closed if last else "")
        await self._run(fill)

    async def close_windows(self, part, city_slots, full: bool = True):
        def fill(pipe):
            for city, slot in city_slots:
                self._eval(pipe, "CLOSE", self.keys.city(city), part, slot, int(full))
        return [column_lines(raw, full) for raw in await self._run(fill)]

    async def finish_close(self, part, partials, closed_through, n_partitions, purge):
        def advance(pipe):
            self._eval(pipe, "ADVANCE", self.root, part, closed_through, n_partitions, self.ttl, ASSEMBLE_PER_CALL)

        def fill(pipe):
            for city, slot, cells, counts in partials:
                # One JSON string per share: packing thousands of hash fields cost more than the rest of the close.
                pipe.set(self.keys.partial(city, slot, part), orjson.dumps([cells, counts.reshape(-1)],
                                                                         option=orjson.OPT_SERIALIZE_NUMPY), ex=self.ttl)
                pipe.zadd(self.keys.partial_slots(city), {str(slot): slot})
                pipe.expire(self.keys.partial_slots(city), self.ttl)
            # After the shares in the same pipeline: Redis runs it in order, so assembly sees them.
            advance(pipe)
            for city, slot in purge:
                self._eval(pipe, "PURGE", self.keys.city(city), part, slot)

        got = orjson.loads((await self._run(fill))[-1 - len(purge)])
        made = list(got["made"])
        while got["more"]:  # a partition caught up many slots: assemble them a few per script, not all in one
            got = orjson.loads((await self._run(advance))[-1])
            made += got["made"]
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
