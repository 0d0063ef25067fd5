"""The slot-work topic's two ends: ingest sends a work item per closed partition slot and per assembled city slot;
inference runs them in order (per partition of the topic), skipping stale ones under --max-inference-lag.

Placement: a partition's embed items go to work partition part % W and a city's forecast items to one partition
(crc32 of the city): per user and per city, items run in slot order (the newest embedding wins in Redis, and a
slot's live error reads the forecast made at the slot before).
"""

from __future__ import annotations

import asyncio
import logging
import zlib

import numpy as np

from stream import metrics as m
from stream import records as rec
from stream.publication import WorkLedger
from stream.redis_retry import until_redis_answers
from stream.settings import WorkerSettings
from stream.transport import flush

log = logging.getLogger(__name__)


def work_partition(w: rec.Work, n: int) -> int:
    """The slot-work partition of an item (n partitions)."""
    return w.part % n if w.kind == rec.EMBED else zlib.crc32(w.city.encode()) % n


class WorkSender:
    """The Processor's hooks on an ingest worker: write a closed slot's windows to Redis and send the work items.
    Each hook returns once its items are delivered, so the input offsets behind them are committed only then."""

    def __init__(self, s: WorkerSettings, redis, producer) -> None:
        self.s, self.keys, self.redis, self.producer = s, s.keys, redis, producer

    def full_windows(self) -> bool:
        """Whole 8-slot windows are needed when embeddings are on (an --embedder is set)."""
        return self.s.embedder is not None

    def _send(self, items: list[rec.Work]) -> None:
        n = self.s.n_work_partitions
        for w in items:
            key = f"{w.city}:{w.part}" if w.kind == rec.EMBED else w.city
            self.producer.produce(self.s.work_topic, rec.encode_work(w), key.encode(), partition=work_partition(w, n))
            m.WORK_SENT.labels(w.kind).inc()

    async def on_closed(self, part: int, city: str, slot: int, uids: list, cells: np.ndarray) -> None:
        if not self.full_windows():
            return
        key = self.keys.windows(city, slot, part)
        value = await asyncio.get_running_loop().run_in_executor(None, rec.pack_windows, uids, cells)
        await self.redis.set(key, value, ex=self.s.ttl)
        self._send([rec.Work(rec.EMBED, city, slot, part, key)])
        await flush(self.producer, f"embedding work of {city} slot {slot} (partition {part})")

    async def on_assembled(self, made: list[tuple[str, int]]) -> None:
        self._send([rec.Work(rec.FORECAST, city, slot, -1, self.keys.flow_packed(city, slot)) for city, slot in made])
        await flush(self.producer, f"forecast work up to {made[-1][0]} slot {made[-1][1]}")


class WorkRunner:
    """The infer agent's state: runs each item (stream.inference.Inference), records forecast slots as published."""

    def __init__(self, s: WorkerSettings, inference, ledger: WorkLedger) -> None:
        self.s, self.keys, self.inference, self.ledger = s, s.keys, inference, ledger

    async def newest(self, w: rec.Work) -> int | None:
        """The newest slot of the item's kind: the partition's last closed (embed), the city's last assembled."""
        r = self.inference.redis
        got = await (r.hget(self.keys.closed(w.city), w.part) if w.kind == rec.EMBED else r.get(self.keys.assembled(w.city)))
        return None if got is None else int(got)

    async def run(self, raw: bytes) -> str:
        """One item, retried while Redis is unreachable; returns what was done ("done", "skipped", "bad")."""
        try:
            w = rec.decode_work(raw)
        except rec.RecordError as exc:  # only our ingest writes this topic: a bug or a foreign producer
            log.error("slot-work topic %s: %s; item skipped", self.s.work_topic, exc)
            return "bad"
        return await until_redis_answers(lambda: self._run(w), f"{w.kind} work of {w.city} slot {w.slot}", "it")

    async def _run(self, w: rec.Work) -> str:
        newest = await self.newest(w)
        behind = 0 if newest is None else max(0, newest - w.slot)
        m.INFERENCE_LAG_SLOTS.labels(w.kind).set(behind)
        stale = self.s.max_inference_lag and behind > self.s.max_inference_lag
        if stale:
            m.WORK_SKIPPED.labels(w.kind).inc()
            log.warning("%s work of %s slot %d skipped: %d slots behind (max_inference_lag %d)", w.kind, w.city,
                        w.slot, behind, self.s.max_inference_lag)
        if w.kind == rec.EMBED:
            if stale:
                await self.inference.redis.delete(w.key)
            else:
                await self.inference.embed(w)
        else:
            if not stale:
                await self.inference.forecast(w.city, w.slot)
            await self.ledger.published([(w.city, w.slot)])
        return "skipped" if stale else "done"
