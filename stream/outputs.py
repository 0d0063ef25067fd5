"""Phase-2 outputs on slot close: flow forecasts, live forecast error, user embeddings.

Each model comes from a checkpoint path that is watched (mtime) and reloaded without a restart;
with no path, or a file that does not load, that output is off and the log says so.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

import numpy as np
import orjson

from models.grid import cell_xy
from models.slots import WINDOW_SLOTS
from stream import metrics as m
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)


class Watched:
    """A model loaded from a file and reloaded when the file's mtime changes (checked every `poll` s)."""

    def __init__(self, name: str, path, loader: Callable, poll: float, clock: Callable[[], float] = time.monotonic):
        self.name, self.path, self.loader, self.poll, self.clock = name, path, loader, poll, clock
        self.model, self.mtime, self.checked = None, None, -float("inf")

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


class Outputs:
    """Hooks the Processor calls when a slot closes (per partition) and is assembled (per city)."""

    def __init__(self, s: WorkerSettings) -> None:
        self.s = s
        self.keys = s.keys
        self.redis = None
        self.forecasts_topic = self.embeddings_topic = None

        def load_forecaster(p):
            from models.flow_forecaster import FlowForecaster
            return FlowForecaster.load(p)

        def load_embedder(p):
            from models.embedder import TrajectoryEmbedder
            return TrajectoryEmbedder.load(p)

        self.forecaster = Watched("forecaster", s.forecaster, load_forecaster, s.model_poll)
        self.embedder = Watched("embedder", s.embedder, load_embedder, s.model_poll)

    def describe(self) -> str:
        parts = []
        for name, path in (("forecasts", self.s.forecaster), ("embeddings", self.s.embedder)):
            parts.append(f"{name} from {path}" if path else f"{name} OFF (no checkpoint set)")
        return ", ".join(parts)

    def attach(self, redis, forecasts_topic, embeddings_topic) -> None:
        self.redis, self.forecasts_topic, self.embeddings_topic = redis, forecasts_topic, embeddings_topic
        m.MODEL_LOADED.labels("forecaster").set(0)
        m.MODEL_LOADED.labels("embedder").set(0)

    async def _flows(self, city: str, slots: list[int]) -> dict[int, dict]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in slots:
                pipe.hgetall(self.keys.flow(city, s))
            got = await pipe.execute()
        return {s: {int(c): tuple(map(int, v.split(b","))) for c, v in h.items()} for s, h in zip(slots, got)}

    async def on_assembled(self, made) -> None:
        for city, slot in made:
            await self._slot(city, slot)

    async def _slot(self, city: str, slot: int) -> None:
        model = self.forecaster.get()
        # Without a forecaster only the live persistence error is made, which needs two slots, not eight.
        slots = list(range(slot - (WINDOW_SLOTS if model is not None else 2) + 1, slot + 1))
        flows = await self._flows(city, slots)
        cells = np.array(sorted(set().union(*(f.keys() for f in flows.values()))), dtype=np.int64)
        chan = np.zeros((len(cells), len(slots), 3), dtype=np.float32)  # (N, 8 or 2, 3)
        pos = {c: i for i, c in enumerate(cells.tolist())}
        for j, s in enumerate(slots):
            for c, v in flows[s].items():
                chan[pos[c], j] = v
        await self._error(city, slot, cells, chan)
        if model is None or not len(cells):
            return
        t0 = time.perf_counter()
        pred = np.asarray(model.predict(chan, slot, cells), dtype=np.float64)  # (N, 3)
        m.INFERENCE_SECONDS.labels("forecaster").observe(time.perf_counter() - t0)
        x, y = cell_xy(cells)
        key = self.keys.forecast(city, slot)
        docs = {}
        for c, cx, cy, (o, i, u) in zip(cells.tolist(), x.tolist(), y.tolist(), pred.round(4).tolist()):
            doc = {"city": city, "cell": c, "x": cx, "y": cy, "slot": slot + 1, "made_at": slot,
                   "occ": o, "in": i, "out": u, "version": model.version}
            docs[c] = orjson.dumps(doc)
            await self.forecasts_topic.send(key=f"{city}:{c}".encode(), value=docs[c])
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=docs)
            pipe.expire(key, self.s.ttl)
            await pipe.execute()
        m.FORECASTS.inc(len(cells))

    async def _error(self, city: str, slot: int, cells: np.ndarray, chan: np.ndarray) -> None:
        """The forecast made at slot-1 for this slot, and persistence (slot-1's actuals), against the actuals."""
        prev = await self.redis.hgetall(self.keys.forecast(city, slot - 1))
        actual, before = chan[:, -1], chan[:, -2]
        doc = {"slot": slot, "cells": int(len(cells)), "persistence": _mae(before, actual), "model": None}
        if prev:
            pos = {c: i for i, c in enumerate(cells.tolist())}
            fc = np.zeros_like(actual)
            for c, v in prev.items():
                if int(c) in pos:
                    d = orjson.loads(v)
                    fc[pos[int(c)]] = (d["occ"], d["in"], d["out"])
            doc["model"] = _mae(fc, actual)
            doc["version"] = orjson.loads(next(iter(prev.values())))["version"]
        await self.redis.hset(self.keys.errors(city), str(slot), orjson.dumps(doc))
        await self.redis.expire(self.keys.errors(city), self.s.ttl)
        if doc["persistence"] is not None:
            m.FORECAST_MAE.labels("persistence").set(doc["persistence"])
        if doc["model"] is not None:
            m.FORECAST_MAE.labels("forecaster").set(doc["model"])

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
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid, vec in zip(uids, emb):
                doc = orjson.dumps({"uid": uid, "city": city, "slot": slot, "version": model.version,
                                    "embedding": vec}, option=orjson.OPT_SERIALIZE_NUMPY)
                pipe.set(self.keys.embedding(city, uid), doc, ex=self.s.ttl)
                await self.embeddings_topic.send(key=str(uid).encode(), value=doc)
            await pipe.execute()
        m.EMBEDDINGS.inc(len(uids))
