"""The infer role: a slot-work item in, its outputs out (forecasts + live error of a city slot, embeddings of a
partition's closed slot), published exactly as the records module defines them.

Models come from watched checkpoints (stream.hotreload); with no path, or a file that does not load, that output
is off and the log says so. Model calls and record encoding run in a thread: in `--role all` the ingest agent
shares this event loop, and a close of 30,000 embeddings must not stall it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from models.flow_scores import scores
from models.grid import cell_xy
from models.slots import WINDOW_SLOTS
from stream import metrics as m
from stream import records as rec
from stream.exceptions import StreamError
from stream.hotreload import Watched
from stream.keys import FORECAST_HORIZONS as HORIZONS
from stream.redis_client import chunked, execute_packed, is_cluster, pack
from stream.settings import WorkerSettings
from stream.transport import flush, produce_all

log = logging.getLogger(__name__)

# Users per SET_MANY call: 1,000 records (2.9 MB) because asyncio copies and shifts a write buffer in the loop's
# thread (14 MB writes paused it ~50 ms).
SET_MANY_CHUNK = 1000


def _union(parts) -> tuple[np.ndarray, np.ndarray]:
    """Sorted union of non-negative cell ids, and `at` with at[cell] = its row in the union: a lookup table
    over the id range, O(n) (np.unique sorted 8 x 40,000 ids in ~27 ms)."""
    parts = list(parts)
    every = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if len(every) and (every.min() < 0 or every.max() >= 1 << 26):
        raise StreamError(f"cell id {int(every.min() if every.min() < 0 else every.max())} in an assembled flow "
                          f"is outside 0..{(1 << 26) - 1} (grid cell ids are (y-1)*size + (x-1))")
    seen = np.zeros(int(every.max()) + 1 if len(every) else 0, dtype=bool)
    seen[every] = True
    cells = np.flatnonzero(seen)  # sorted
    at = np.zeros(len(seen), dtype=np.int64)
    at[cells] = np.arange(len(cells))
    return cells, at


def live_error(slot: int, cells: np.ndarray, chan: np.ndarray, prev: list[bytes | None]) -> bytes:
    """Per horizon h: the forecast made at slot-h for this slot (`prev[h-1]`, packed), and persistence (slot-h's
    actuals), against the actuals (stream.records.error_doc)."""
    actual = chan[:, -1]
    rows = {}
    for h in range(1, HORIZONS + 1):
        row = {"persistence": scores(chan[:, -1 - h], actual) if chan.shape[1] > h else None, "model": None}
        raw = prev[h - 1] if h <= len(prev) else None
        version, fc_cells, fc_pred = rec.unpack_forecasts(raw) if raw else (None, None, np.zeros((0, 0, 3)))
        if fc_pred.shape[1] >= h:  # the forecast made h slots ago reached this slot
            fc = np.zeros_like(actual)  # a cell the model did not forecast counts as 0
            at = np.searchsorted(cells, fc_cells)
            hit = (at < len(cells)) & (cells[np.minimum(at, len(cells) - 1)] == fc_cells) if len(cells) else at < 0
            fc[at[hit]] = fc_pred[hit, h - 1]
            row["model"], row["version"] = scores(fc, actual), version
        rows[h] = row
        for name, label in (("persistence", "persistence"), ("model", "forecaster")):
            if row[name] is not None:
                m.FORECAST_MAE.labels(label, str(h)).set(row[name]["mae"])
                m.FORECAST_RMSE.labels(label, str(h)).set(row[name]["rmse"])
    return rec.error_doc(slot, len(cells), rows)


class Inference:
    """Runs slot-work items: `forecast(city, slot)` and `embed(work)`; `attach` gives it Redis and a producer."""

    def __init__(self, s: WorkerSettings) -> None:
        self.s = s
        self.keys = s.keys
        self.redis = self.producer = None
        self._flows: dict[tuple[str, int], tuple[bytes, tuple[np.ndarray, np.ndarray]]] = {}  # last read's per city

        def load_forecaster(p):
            from models.flow_forecaster import FlowForecaster
            return FlowForecaster.load(p)

        def load_embedder(p):
            from models.embedder import TrajectoryEmbedder
            return TrajectoryEmbedder.load(p)

        self.forecaster = Watched("forecaster", s.forecaster, load_forecaster, s.model_poll)
        self.embedder = Watched("embedder", s.embedder, load_embedder, s.model_poll)
        m.MODEL_LOADED.labels("forecaster").set(0)  # 0 from the start, before any work arrives
        m.MODEL_LOADED.labels("embedder").set(0)

    def check(self) -> None:
        """Load both checkpoints now; raises CheckpointSettingError for one that is there but broken."""
        self.forecaster.check()
        self.embedder.check()

    def load_in_background(self) -> None:
        """From now on `refresh_models` (a timer) looks at the checkpoints and loads them in a thread; the slot
        work only takes the current models."""
        self.forecaster.background = self.embedder.background = True

    async def refresh_models(self) -> None:
        """Look at both checkpoint files now (between slots too), so a new or broken checkpoint shows in the log
        and in mobstream_model_loaded within `model_poll` seconds, not at the next close."""
        await self.forecaster.refresh()
        await self.embedder.refresh()

    def attach(self, redis, producer) -> None:
        """`producer`: a confluent-kafka Producer (stream.transport.make_producer) for the two output topics."""
        from stream.windows import lua_slots as lua
        from stream.windows.scripts import Scripts

        self.redis, self.producer = redis, producer
        self._set_many = Scripts(redis, {"SET_MANY": lua.SET_MANY})

    async def _read(self, city: str, slots: list[int]) -> tuple[list[bytes], list[bytes | None]]:
        """The slots' packed flow values and the packed forecasts made 1..HORIZONS slots before the last: one
        round trip of 12 string values (not 8 x 40,000 hash fields)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in slots:
                pipe.get(self.keys.flow_packed(city, s))
            for h in range(1, HORIZONS + 1):
                pipe.get(self.keys.forecast_packed(city, slots[-1] - h))
            got = await pipe.execute()
        got, prev = got[: len(slots)], got[len(slots):]
        for i, (s, raw) in enumerate(zip(slots, got)):
            if raw is None:  # assembled before the packed copy existed: the hash holds the same flows
                h = await self.redis.hgetall(self.keys.flow(city, s))
                got[i] = rec.flow_value([int(c) for c in h], [int(v) for x in h.values() for v in x.split(b",")])
        return got, prev

    def _parse(self, city: str, slots: list[int], raws: list[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The flow values as (cells (n,), counts (n, 3)); 7 of the 8 slots were read at the previous close,
        so a value is parsed again only if it changed."""
        flows, parsed = [], {}
        for s, raw in zip(slots, raws):
            seen = self._flows.get((city, s))
            parsed[city, s] = seen if seen is not None and seen[0] == raw else (raw, rec.parse_flow(raw))
            flows.append(parsed[city, s][1])
        self._flows = {k: v for k, v in self._flows.items() if k[0] != city} | parsed
        return flows

    async def forecast(self, city: str, slot: int) -> None:
        """Forecasts from the slot's 8-slot flow windows (when a forecaster is on) and the live error; returns
        once every record is delivered."""
        model = self.forecaster.get()
        # Without a forecaster only the live persistence error is made, which needs HORIZONS + 1 slots, not eight.
        slots = list(range(slot - max(WINDOW_SLOTS if model is not None else 0, HORIZONS + 1) + 1, slot + 1))
        raws, prev = await self._read(city, slots)
        loop = asyncio.get_running_loop()
        records, writes = await loop.run_in_executor(None, self._compute, model, city, slot, slots, raws, prev)
        # Queued in a thread while Redis stores the same records.
        queued = loop.run_in_executor(None, produce_all, self.producer, self.s.topics.forecasts, records) if records else None
        try:
            # One transaction packed in C: redis-py packing 40,000 hash fields cost more than the prediction's
            # overhead, and a Lua script's 40,000 near-identical strings collide in Lua's string table (seconds).
            await execute_packed(self.redis, writes)
        finally:
            if queued is not None:
                await queued
                m.FORECASTS.inc(len(records))
        await flush(self.producer, f"forecasts of {city} slot {slot}")

    def _compute(self, model, city: str, slot: int, slots: list[int], raws: list[bytes], prev: list[bytes | None]):
        """((key, record) per forecast cell and horizon, the Redis writes: live error, and `fc:`/`fcn:` with a
        forecaster)."""
        flows = self._parse(city, slots, raws)
        cells, at = _union(c for c, _ in flows)
        chan = np.zeros((len(cells), len(flows), 3), dtype=np.float32)  # (N, 8 or 5, 3)
        for j, (c, counts) in enumerate(flows):
            chan[at[c], j] = counts
        err = live_error(slot, cells, chan, prev)
        writes = [("HSET", self.keys.errors(city), str(slot), err), ("EXPIRE", self.keys.errors(city), self.s.ttl)]
        if model is None or not len(cells):
            return [], pack(writes, transaction=True)
        t0 = time.perf_counter()
        window = chan[:, -WINDOW_SLOTS:]  # (N, 8, 3)
        pred = np.asarray(model.predict(window, slot, cells), dtype=np.float64).reshape(len(cells), -1, 3)  # (N, H, 3)
        m.INFERENCE_SECONDS.labels("forecaster").observe(time.perf_counter() - t0)
        key = city.encode().replace(b"%", b"%%") + b":%d"
        keys = [key % c for c in cells.tolist()]
        records = []
        writes.append(("SET", self.keys.forecast_packed(city, slot), rec.pack_forecasts(model.version, cells, pred.round(4)),
                       "EX", self.s.ttl))
        for h in range(1, pred.shape[1] + 1):
            docs = rec.forecast_records(city, slot, model.version, cells, pred[:, h - 1], h)
            records += zip(keys, docs)
            fc = self.keys.forecast_ahead(city, slot, h)
            fields = [None] * (2 * len(cells))
            fields[::2], fields[1::2] = cells.tolist(), docs
            writes += [("DEL", fc), *chunked("HSET", fc, fields), ("EXPIRE", fc, self.s.ttl)]
        return records, pack(writes, transaction=True)

    async def embed(self, w: rec.Work) -> int:
        """Embeddings of the windows at `w.key`, which are deleted once done; returns how many (0 when the
        embedder is off, or the windows are gone: expired, or deleted when this item was done before)."""
        model = self.embedder.get()
        if model is None:  # checkpoint missing or not loadable (the log says so): the windows wait for nothing
            await self.redis.delete(w.key)
            return 0
        raw = await self.redis.get(w.key)
        if raw is None:
            log.warning("%s slot %d (partition %d): windows %s are gone; no embeddings", w.city, w.slot, w.part, w.key)
            return 0
        loop = asyncio.get_running_loop()
        cluster = is_cluster(self.redis)
        records, calls = await loop.run_in_executor(None, self._embed, model, w, raw, not cluster)
        queued = loop.run_in_executor(None, produce_all, self.producer, self.s.topics.embeddings, records)
        try:
            if cluster:  # the embedding keys spread over the nodes, and one script may touch one node's keys only
                for i in range(0, len(records), SET_MANY_CHUNK):
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for uid, doc in records[i:i + SET_MANY_CHUNK]:
                            pipe.set(self.keys.embedding(w.city, uid.decode()), doc, ex=self.s.ttl)
                        await pipe.execute()
            for call in calls:  # one at a time: asyncio copies and shifts a write buffer on the loop's thread
                await self._set_many.run(call)
        finally:
            await queued  # every record queued (or its error raised) before the flush below counts them
        await flush(self.producer, f"embeddings of {w.city} slot {w.slot} (partition {w.part})")
        m.EMBEDDINGS.inc(len(records))
        await self.redis.delete(w.key)
        return len(records)

    def _embed(self, model, w: rec.Work, raw: bytes, set_many: bool) -> tuple[list[tuple[bytes, bytes]], list]:
        """((uid, record) pairs for the topic, SET_MANY calls packed by hiredis (with `set_many`))."""
        uids, cells = rec.unpack_windows(raw)
        mask = cells >= 0  # (N, 8)
        x, y = cell_xy(np.where(mask, cells, 0))
        x, y = np.where(mask, x, 0), np.where(mask, y, 0)  # 0 = models.windows.PAD
        t0 = time.perf_counter()
        emb = np.asarray(model.embed(x, y, mask, w.slot), dtype=np.float32)  # (N, 512)
        m.INFERENCE_SECONDS.labels("embedder").observe(time.perf_counter() - t0)
        docs = rec.embedding_docs(uids, w.city, w.slot, model.version, emb)
        calls = []
        for i in range(0, len(docs) if set_many else 0, SET_MANY_CHUNK):
            keys = [self.keys.embedding(w.city, uid) for uid in uids[i:i + SET_MANY_CHUNK]]
            calls.append(pack([self._set_many.command("SET_MANY", keys, [self.s.ttl, *docs[i:i + SET_MANY_CHUNK]])]))
        return list(zip([u.encode() for u in uids], docs)), calls

    async def close(self) -> None:
        """On shutdown: deliver whatever is still queued."""
        if self.producer is not None:
            # Bounded: a stop must not hang on an unreachable broker; anything left was never committed either.
            left = await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, 5.0)
            if left:
                log.error("shutdown: %d output records not delivered (their input offsets were not committed)", left)
