"""`mobstream replay`: a dataset file into the pings topic in event-time order, as fast as possible or paced.

By default pings travel in batch messages (the columnar form of `stream.pings`), all owned by the partition
the message is sent to (the partition Kafka's default partitioner gives the uid as key, so single
pings from other producers land on the same partition as the replay's). A partition that gets no
ping in a slot gets a {"watermark": ts} message instead, so every partition's event time advances
and slots close everywhere; at the end every partition gets a watermark that closes the last slot.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from models.slots import DEFAULT_ORIGIN, slot_start
from stream import replay_source as src
from stream.ownership import Owners
from stream.security import KafkaSecurity, aiokafka_kwargs


@dataclass(frozen=True)
class ReplaySettings:
    path: Path
    bootstrap: str
    topic: str = "pings"
    partitions: int = 4
    speed: float = 0.0  # 0 = as fast as possible, else event seconds per wall second
    days: tuple[int, int] | None = None
    users: str | None = None
    single: bool = False
    batch_size: int = 1000
    origin: int = DEFAULT_ORIGIN
    lateness: float = 0.0
    city: str | None = None
    close_last: bool = True
    progress: bool = True
    kafka_security: KafkaSecurity | None = None
    skip_bad: bool = False  # skip (and count) bad rows instead of refusing the file


@dataclass
class ReplayReport:
    pings: int = 0
    messages: int = 0
    masked: int = 0
    bad: int = 0  # bad rows skipped (skip_bad)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.pings / self.seconds if self.seconds else 0.0


def pings_of(chunk: src.Chunk, idx: np.ndarray, city: str, gps: bool) -> list[dict]:
    """Ping objects (the single-ping JSON form) for rows idx of a chunk."""
    extra = {} if city == "A" else {"city": city}
    ts = chunk.ts[idx]
    ts_list = ts.astype(np.int64).tolist() if ts.dtype.kind == "i" else ts.tolist()
    names = ("lat", "lon") if gps else ("x", "y")
    return [{"uid": u, "ts": t, names[0]: a, names[1]: b, **extra}
            for u, t, a, b in zip(chunk.uid[idx].tolist(), ts_list, chunk.a[idx].tolist(), chunk.b[idx].tolist())]


class Replayer:
    def __init__(self, s: ReplaySettings, producer, n_partitions: int) -> None:
        self.s = s
        self.producer = producer
        self.n = n_partitions
        self.parts = Owners(n_partitions)
        self.pending: list = []
        self.report = ReplayReport()
        self.t0 = time.perf_counter()
        self.first_ts: float | None = None
        self.last_slot: int | None = None

    async def _send(self, value: bytes, partition: int, key: bytes | None = None) -> None:
        self.pending.append(await self.producer.send(self.s.topic, value, key=key, partition=partition))
        self.report.messages += 1
        if len(self.pending) >= 2000:
            await self.drain()

    async def drain(self) -> None:
        if self.pending:
            await asyncio.gather(*self.pending)
            self.pending.clear()

    async def _pace(self, slot: int) -> None:
        if self.s.speed <= 0:
            return
        start = slot_start(slot, self.s.origin)
        if self.first_ts is None:
            self.first_ts = start
        wait = self.t0 + (start - self.first_ts) / self.s.speed - time.perf_counter()
        if wait > 0:
            await self.drain()
            await asyncio.sleep(wait)

    async def chunk(self, chunk: src.Chunk, city: str, gps: bool) -> None:
        self.report.masked += chunk.masked
        part = self.parts.of(chunk.uid)
        cuts = np.flatnonzero(np.diff(chunk.slot)) + 1
        for rows in np.split(np.arange(len(chunk.uid)), cuts):
            if len(rows) == 0:
                continue
            slot = int(chunk.slot[rows[0]])
            await self._pace(slot)
            if self.s.single:
                pings = pings_of(chunk, rows, city, gps)
                for p, ping in zip(part[rows].tolist(), pings):
                    await self._send(orjson.dumps(ping), p, str(ping["uid"]).encode())
            else:
                await self._batches(chunk, rows, part[rows], city, gps)
            self.report.pings += len(rows)
            self.last_slot = slot

    async def _batches(self, chunk: src.Chunk, rows: np.ndarray, part: np.ndarray, city: str, gps: bool) -> None:
        """One slot's rows as columnar batch messages, each to the partition that owns its users."""
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.n + 1))
        names = ("lat", "lon") if gps else ("x", "y")
        ts = chunk.ts[rows]
        max_ts = float(ts.max())
        for p in range(self.n):
            idx = rows[order[bounds[p]:bounds[p + 1]]]
            if not len(idx):
                await self._send(orjson.dumps({"watermark": max_ts}), p)
            for k in range(0, len(idx), self.s.batch_size):
                i = idx[k:k + self.s.batch_size]
                cols = {"uid": chunk.uid[i], "ts": chunk.ts[i], names[0]: chunk.a[i], names[1]: chunk.b[i]}
                msg = {"cols": cols} if city == "A" else {"cols": cols, "city": city}
                await self._send(orjson.dumps(msg, option=orjson.OPT_SERIALIZE_NUMPY), p)

    async def finish(self) -> None:
        if self.s.close_last and self.last_slot is not None:
            wm = slot_start(self.last_slot + 1, self.s.origin) + self.s.lateness
            for p in range(self.n):
                await self._send(orjson.dumps({"watermark": wm}), p)
        await self.drain()
        self.report.seconds = time.perf_counter() - self.t0


async def replay_async(s: ReplaySettings) -> ReplayReport:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError
    from tqdm import tqdm

    from stream.services import create_topic_async

    path = Path(s.path)
    ds = src.describe(path)
    total, chunks, bad = src.read(path, s.days, src.parse_users(s.users), s.origin, skip_bad=s.skip_bad)
    kafka = aiokafka_kwargs(s.kafka_security or KafkaSecurity())
    try:
        await create_topic_async(s.bootstrap, s.topic, s.partitions, client=kafka)
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, linger_ms=5, max_batch_size=1 << 20,
                                    max_request_size=8 << 20, acks=1, **kafka)
        await producer.start()
    except KafkaConnectionError as exc:
        raise src.ReplayError(f"cannot reach the broker at {s.bootstrap} (setting bootstrap, MOBSTREAM_BOOTSTRAP): "
                              f"{exc}") from exc
    try:
        n = len(await producer.partitions_for(s.topic))
        rep = Replayer(s, producer, n)
        rep.report.bad = bad
        city = s.city or ds.city
        with tqdm(total=total, unit="row", unit_scale=True, disable=not s.progress, mininterval=0.5) as bar:
            for chunk in chunks:
                before = rep.report.pings + rep.report.masked
                await rep.chunk(chunk, city, ds.format == "gps")
                bar.update(rep.report.pings + rep.report.masked - before)
        await rep.finish()
        return rep.report
    finally:
        await producer.stop()


def replay(s: ReplaySettings) -> ReplayReport:
    return asyncio.run(replay_async(s))


