"""Phase-2 outputs on slot close: flow forecasts, live forecast error, user embeddings.

Each model comes from a checkpoint path that is watched (mtime) and reloaded without a restart;
with no path, or a file that does not load, that output is off and the log says so.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from typing import Callable

import numpy as np
import orjson

from models.grid import cell_xy
from models.slots import WINDOW_SLOTS
from stream import metrics as m
from stream.exceptions import StreamError
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)


class CheckpointSettingError(StreamError):
    """A --forecaster/--embedder checkpoint exists but does not load (truncated, wrong kind, ...)."""


class Watched:
    """A model loaded from a file and reloaded when the file's mtime changes (checked every `poll` s)."""

    def __init__(self, name: str, path, loader: Callable, poll: float, clock: Callable[[], float] = time.monotonic):
        self.name, self.path, self.loader, self.poll, self.clock = name, path, loader, poll, clock
        self.model, self.mtime, self.checked = None, None, -float("inf")

    def check(self) -> None:
        """At start: load the checkpoint now if the file is there, raising a clean error naming the file and
        the setting if it does not load (a missing file stays watched: the output starts when it appears)."""
        if self.path is None or not os.path.exists(self.path):
            return
        try:
            mtime = os.stat(self.path).st_mtime_ns
            self.model = self.loader(self.path)
        except Exception as exc:  # any loader failure: torch, pickle and format errors alike
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointSettingError(f"setting {self.name} (MOBSTREAM_{self.name.upper()}): cannot load "
                                         f"{self.path}: {first}") from exc
        self.mtime, self.checked = mtime, self.clock()
        log.info("%s: loaded %s version %s", self.name, self.path, self.model.version)
        m.MODEL_LOADED.labels(self.name).set(1)

    def get(self):
        if self.path is None:
            return None
        now = self.clock()
        if now - self.checked < self.poll:
            return self.model
        self.checked = now
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            if self.model is None:
                log.warning("%s: checkpoint %s not found; %s off until it appears", self.name, self.path, self.name)
            return self.model
        if mtime != self.mtime:
            try:
                self.model = self.loader(self.path)
                log.info("%s: loaded %s version %s", self.name, self.path, self.model.version)
                m.MODEL_LOADED.labels(self.name).set(1)
            except Exception as exc:  # a bad checkpoint must not stop the windows
                log.error("%s: cannot load %s (%s); keeping %s", self.name, self.path, exc,
                          "the previous model" if self.model else "it off")
            self.mtime = mtime
        return self.model


def _mae(a: np.ndarray, b: np.ndarray) -> float | None:
    return float(np.abs(a - b).mean()) if a.size else None


def embedding_doc(uid: str, city: str, slot: int, version: str, vec: np.ndarray) -> bytes:
    """The self-describing embedding record (Redis `emb:<uid>` and topic `user-embeddings`):
    the vector as base64 of little-endian float32 bytes (2.7 kB for 512 dims, exact, vs ~10 kB of JSON floats)."""
    b64 = base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode()
    return orjson.dumps({"uid": uid, "city": city, "slot": slot, "version": version, "dim": int(len(vec)),
                         "dtype": "float32", "embedding_b64": b64})


def pack_forecasts(version: str, cells: np.ndarray, pred: np.ndarray) -> bytes:
    """`fcn:<slot>`: version, newline, int32 cells (n,), float32 counts (n, 3), little-endian."""
    return version.encode() + b"\n" + cells.astype("<i4").tobytes() + pred.astype("<f4").tobytes()


def unpack_forecasts(raw: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    version, _, body = raw.partition(b"\n")
    n = len(body) // 16
    return version.decode(), np.frombuffer(body[: 4 * n], "<i4").astype(np.int64), np.frombuffer(body[4 * n:], "<f4").reshape(n, 3)


def make_producer(bootstrap: str, security=None):
    """A librdkafka producer for the outputs: tens of thousands of records per slot cost ~1 us each to
    queue (a Faust `topic.send` per record cost far more), batched and sent by librdkafka's own thread.
    `security` (stream.security.KafkaSecurity) adds the same SASL/SSL settings the Faust app uses."""
    from confluent_kafka import Producer

    from stream.security import librdkafka_config

    def report(err, msg):
        if err is not None:
            log.error("output record to %s not delivered: %s", msg.topic(), err)

    config = {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
              "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1 << 20,
              "enable.idempotence": False, "on_delivery": report}
    if security is not None:
        config.update(librdkafka_config(security))
    return Producer(config)


async def flush(producer, what: str, wait: float = 5.0) -> None:
    """Wait until every queued record is delivered: the hooks return (and the input offsets behind them can
    be committed, the slot recorded as published) only then. While the broker is unreachable it keeps
    waiting and says so, so the consumer stops instead of committing records that may never arrive."""
    import asyncio

    loop = asyncio.get_running_loop()
    # In a thread: librdkafka's flush blocks, and the event loop must keep the consumer's heartbeats going.
    while (left := await loop.run_in_executor(None, producer.flush, wait)) > 0:
        log.warning("%s: %d output records not yet delivered after %.0f s; waiting", what, left, wait)


def produce_all(producer, topic: str, records) -> None:
    """Queue (key, value) records; when the local queue is full, serve it and go on (never drop)."""
    produce = producer.produce
    for key, value in records:
        try:
            produce(topic, value, key)
        except BufferError:
            producer.poll(0.05)
            produce(topic, value, key)
    producer.poll(0)


class Outputs:
    """Hooks the Processor calls when a slot closes (per partition) and is assembled (per city)."""

    def __init__(self, s: WorkerSettings) -> None:
        self.s = s
        self.keys = s.keys
        self.redis = self.producer = None

        def load_forecaster(p):
            from models.flow_forecaster import FlowForecaster
            return FlowForecaster.load(p)

        def load_embedder(p):
            from models.embedder import TrajectoryEmbedder
            return TrajectoryEmbedder.load(p)

        self.forecaster = Watched("forecaster", s.forecaster, load_forecaster, s.model_poll)
        self.embedder = Watched("embedder", s.embedder, load_embedder, s.model_poll)
        m.MODEL_LOADED.labels("forecaster").set(0)  # 0 from the start, before any ping arrives
        m.MODEL_LOADED.labels("embedder").set(0)

    def check(self) -> None:
        """Load both checkpoints now; raises CheckpointSettingError for one that is there but broken."""
        self.forecaster.check()
        self.embedder.check()

    def describe(self) -> str:
        parts = []
        for name, path in (("forecasts", self.s.forecaster), ("embeddings", self.s.embedder)):
            parts.append(f"{name} from {path}" if path else f"{name} OFF (no checkpoint set)")
        return ", ".join(parts)

    def attach(self, redis, producer) -> None:
        """`producer`: a confluent-kafka Producer (`make_producer`) for the two output topics."""
        from stream.windows import lua_slots as lua

        self.redis, self.producer = redis, producer
        self._hset_blob = redis.register_script(lua.HSET_BLOB)
        self._set_many = redis.register_script(lua.SET_MANY)

    async def _read(self, city: str, slots: list[int]) -> tuple[list[tuple[np.ndarray, np.ndarray]], bytes | None]:
        """The slots' assembled flows as (cells (n,), counts (n, 3)) and the packed forecast made at the
        slot before the last: one round trip of 9 string values (not 8 x 40,000 hash fields)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in slots:
                pipe.get(self.keys.flow_packed(city, s))
            pipe.get(self.keys.forecast_packed(city, slots[-1] - 1))
            *got, prev = await pipe.execute()
        flows = []
        for s, raw in zip(slots, got):
            if raw is None:  # assembled before the packed copy existed: the hash holds the same flows
                h = await self.redis.hgetall(self.keys.flow(city, s))
                raw = orjson.dumps([[int(c) for c in h], [int(v) for x in h.values() for v in x.split(b",")]])
            cells, counts = orjson.loads(raw)
            flows.append((np.asarray(cells, dtype=np.int64), np.asarray(counts, dtype=np.int64).reshape(-1, 3)))  # (n, 3)
        return flows, prev

    async def on_assembled(self, made) -> None:
        for city, slot in made:
            await self._slot(city, slot)
        await flush(self.producer, f"forecasts of {made[-1][0]} slot {made[-1][1]}")

    async def _slot(self, city: str, slot: int) -> None:
        model = self.forecaster.get()
        # Without a forecaster only the live persistence error is made, which needs two slots, not eight.
        slots = list(range(slot - (WINDOW_SLOTS if model is not None else 2) + 1, slot + 1))
        flows, prev = await self._read(city, slots)
        cells = np.unique(np.concatenate([c for c, _ in flows]))  # sorted
        chan = np.zeros((len(cells), len(slots), 3), dtype=np.float32)  # (N, 8 or 2, 3)
        for j, (c, counts) in enumerate(flows):
            chan[np.searchsorted(cells, c), j] = counts
        err = self._error(slot, cells, chan, prev)
        docs = None
        if model is not None and len(cells):
            docs, pred = self._forecast(model, city, slot, cells, chan)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.errors(city), str(slot), orjson.dumps(err))
            pipe.expire(self.keys.errors(city), self.s.ttl)
            if docs is not None:
                pipe.set(self.keys.forecast_packed(city, slot), pack_forecasts(model.version, cells, pred), ex=self.s.ttl)
            await pipe.execute()
        if docs is not None:
            # One small command: redis-py packing 40,000 hash fields cost more than the prediction's overhead.
            await self._hset_blob(args=[self.keys.forecast(city, slot), self.s.ttl, ",".join(map(str, cells.tolist())),
                                        b"\n".join(docs)])

    def _forecast(self, model, city: str, slot: int, cells: np.ndarray, chan: np.ndarray) -> list:
        """Predict, queue one record per cell on the forecasts topic; (cell, JSON) pairs for Redis."""
        t0 = time.perf_counter()
        pred = np.asarray(model.predict(chan, slot, cells), dtype=np.float64)  # (N, 3)
        m.INFERENCE_SECONDS.labels("forecaster").observe(time.perf_counter() - t0)
        x, y = cell_xy(cells)
        head = {"city": city, "slot": slot + 1, "made_at": slot, "version": model.version}
        dumps = orjson.dumps
        pred = pred.round(4)
        docs = [dumps({**head, "cell": c, "x": cx, "y": cy, "occ": o, "in": i, "out": u})
                for c, cx, cy, (o, i, u) in zip(cells.tolist(), x.tolist(), y.tolist(), pred.tolist())]
        produce_all(self.producer, self.s.topics.forecasts, zip((f"{city}:{c}".encode() for c in cells.tolist()), docs))
        m.FORECASTS.inc(len(cells))
        return docs, pred

    def _error(self, slot: int, cells: np.ndarray, chan: np.ndarray, prev: bytes | None) -> dict:
        """The forecast made at slot-1 for this slot, and persistence (slot-1's actuals), against the actuals."""
        actual, before = chan[:, -1], chan[:, -2]
        doc = {"slot": slot, "cells": int(len(cells)), "persistence": _mae(before, actual), "model": None}
        if prev:
            version, fc_cells, fc_pred = unpack_forecasts(prev)
            fc = np.zeros_like(actual)  # a cell the model did not forecast counts as 0
            at = np.searchsorted(cells, fc_cells)
            hit = (at < len(cells)) & (cells[np.minimum(at, len(cells) - 1)] == fc_cells) if len(cells) else at < 0
            fc[at[hit]] = fc_pred[hit]
            doc["model"] = _mae(fc, actual)
            doc["version"] = version
        if doc["persistence"] is not None:
            m.FORECAST_MAE.labels("persistence").set(doc["persistence"])
        if doc["model"] is not None:
            m.FORECAST_MAE.labels("forecaster").set(doc["model"])
        return doc

    async def on_closed(self, part, city, slot, uids, cells) -> None:
        model = self.embedder.get()
        if model is None:
            return
        mask = cells >= 0  # (N, 8)
        x, y = cell_xy(np.where(mask, cells, 0))
        x, y = np.where(mask, x, 0), np.where(mask, y, 0)  # 0 = models.windows.PAD
        t0 = time.perf_counter()
        emb = np.asarray(model.embed(x, y, mask, slot), dtype=np.float32)  # (N, 512)
        m.INFERENCE_SECONDS.labels("embedder").observe(time.perf_counter() - t0)
        docs = [(str(uid), embedding_doc(str(uid), city, slot, model.version, vec)) for uid, vec in zip(uids, emb)]
        produce_all(self.producer, self.s.topics.embeddings, ((u.encode(), d) for u, d in docs))
        for i in range(0, len(docs), 5000):
            args = [self.s.ttl]
            for uid, doc in docs[i:i + 5000]:
                args += (self.keys.embedding(city, uid), doc)
            await self._set_many(args=args)
        await flush(self.producer, f"embeddings of {city} slot {slot} (partition {part})")
        m.EMBEDDINGS.inc(len(uids))

    async def close(self) -> None:
        """On shutdown: deliver whatever is still queued."""
        if self.producer is not None:
            import asyncio

            # Bounded: a stop must not hang on an unreachable broker; anything left was never committed either.
            left = await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, 5.0)
            if left:
                log.error("shutdown: %d output records not delivered (their input offsets were not committed)", left)
