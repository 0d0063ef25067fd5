"""Phase-2 outputs on slot close: flow forecasts, live forecast error, user embeddings.

Each model comes from a checkpoint path that is watched (mtime) and reloaded without a restart;
with no path, or a file that does not load, that output is off and the log says so.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import orjson

from models.grid import cell_xy
from models.slots import WINDOW_SLOTS
from models.flow_scores import scores
from stream import metrics as m
from stream.exceptions import StreamError
from stream.keys import FORECAST_HORIZONS
from stream.redis_client import is_cluster
from stream.settings import WorkerSettings

log = logging.getLogger(__name__)
HORIZONS = FORECAST_HORIZONS  # the live error reads back forecasts made up to this many slots before (fcn:<slot - h>)


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


def embedding_doc(uid: str, city: str, slot: int, version: str, vec: np.ndarray) -> bytes:
    """The self-describing embedding record (Redis `emb:<uid>` and topic `user-embeddings`):
    the vector as base64 of little-endian float32 bytes (2.7 kB for 512 dims, exact, vs ~10 kB of JSON floats)."""
    return embedding_docs([uid], city, slot, version, np.asarray(vec)[None])[0]


def embedding_docs(uids: list[str], city: str, slot: int, version: str, vecs: np.ndarray) -> list[bytes]:
    """`embedding_doc` for every row of vecs (N, dim), byte for byte, in half the time: the fields every record
    shares are formatted once into a bytes template, base64 reads each row's buffer without a copy, orjson
    escapes the uid. (One base64 call over all rows is no faster: the encoding itself is most of the time.)"""
    head = orjson.dumps({"city": city, "slot": slot, "version": version, "dim": int(vecs.shape[1]), "dtype": "float32"})
    fmt = b'{"uid":%s,' + head[1:-1].replace(b"%", b"%%") + b',"embedding_b64":"%s"}'
    dumps, b64 = orjson.dumps, base64.b64encode
    return [fmt % (dumps(u), b64(row)) for u, row in zip(uids, np.ascontiguousarray(vecs, dtype="<f4"))]


# Every 4-decimal fraction as orjson writes it (".0", ".5", ".0625", ...): forecasts are formatted from integers.
_FRAC = np.array([b".0"] + [(b".%04d" % r).rstrip(b"0") for r in range(1, 10_000)], dtype="S5")


def forecast_records(city: str, slot: int, version: str, cells: np.ndarray, pred: np.ndarray, horizon: int = 1) -> list[bytes]:
    """The forecasts topic's JSON record per cell, `{"city","slot": slot+horizon,"made_at": slot,"horizon","version",
    "cell","x","y","occ","in","out"}` (expected counts `horizon` slots after the close of `slot`) rounded to 4 decimals, byte for byte what orjson writes for that dict,
    in a third to a half of the time: counts become integer and fraction parts in numpy, then one bytes
    template per record.
    Counts that are negative, huge or not finite take orjson itself."""
    x, y = cell_xy(cells)
    head = {"city": city, "slot": slot + horizon, "made_at": slot, "horizon": horizon, "version": version}
    pred = np.asarray(pred, dtype=np.float64).round(4)  # (N, 3)
    if not (np.isfinite(pred).all() and (pred >= 0).all() and (pred < 1e9).all()):
        dumps = orjson.dumps
        return [dumps({**head, "cell": c, "x": cx, "y": cy, "occ": o, "in": i, "out": u})
                for c, cx, cy, (o, i, u) in zip(cells.tolist(), x.tolist(), y.tolist(), pred.tolist())]
    whole, frac = np.divmod(np.rint(pred * 1e4).astype(np.int64), 10_000)  # (N, 3) each
    rows = np.empty((len(cells), 9), dtype=object)  # (N, 9): cell, x, y, then (whole, fraction text) per count
    rows[:, 0], rows[:, 1], rows[:, 2] = cells, x, y
    rows[:, 3::2], rows[:, 4::2] = whole, _FRAC[frac]
    fmt = orjson.dumps(head)[:-1].replace(b"%", b"%%") + b',"cell":%d,"x":%d,"y":%d,"occ":%d%s,"in":%d%s,"out":%d%s}'
    it = iter(rows.ravel().tolist())
    return [fmt % row for row in zip(it, it, it, it, it, it, it, it, it)]


def pack_forecasts(version: str, cells: np.ndarray, pred: np.ndarray) -> bytes:
    """`fcn:<slot>`: "<version> <H>", newline, int32 cells (n,), float32 counts (n, H, 3), little-endian.
    A value without " <H>" (written before forecasts had horizons) holds (n, 1, 3)."""
    pred = np.asarray(pred).reshape(len(cells), -1, 3)  # (n, H, 3)
    return b"%s %d\n" % (version.encode(), pred.shape[1]) + cells.astype("<i4").tobytes() + pred.astype("<f4").tobytes()


def unpack_forecasts(raw: bytes) -> tuple[str, np.ndarray, np.ndarray]:
    """-> version, cells (n,), counts (n, H, 3)."""
    head, _, body = raw.partition(b"\n")
    version, _, h = head.partition(b" ")
    h = int(h) if h else 1
    n = len(body) // (4 + 12 * h)
    return version.decode(), np.frombuffer(body[: 4 * n], "<i4").astype(np.int64), np.frombuffer(body[4 * n:], "<f4").reshape(n, h, 3)


def parse_flow(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A packed flow value `[[cell,...],[occ,in,out,...]]` (ADVANCE's `flowj:`) -> cells (n,), counts (n, 3).
    numpy's text reader takes half the time of orjson + np.asarray (8 x 40,000 cells a forecast); anything it
    does not read to the end goes through orjson."""
    mid = raw.find(b"],[")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns, and stops, at text it cannot read
            cells = np.fromstring(raw[2:mid], dtype=np.int64, sep=",")
            counts = np.fromstring(raw[mid + 3:-2], dtype=np.int64, sep=",")
        ok = mid > 0 and raw[:2] == b"[[" and raw[-2:] == b"]]" and len(counts) == 3 * len(cells)
    except (ValueError, DeprecationWarning):
        ok = False
    if not ok:
        cells, counts = orjson.loads(raw)
        cells, counts = np.asarray(cells, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    return cells, counts.reshape(-1, 3)  # (n,), (n, 3)


async def execute_packed(redis, commands: list[tuple]) -> list:
    """The commands as one MULTI/EXEC packed in C (stream.redis_client.execute_packed)."""
    from stream.redis_client import execute_packed as packed

    return await packed(redis, commands, transaction=True)


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
              "enable.idempotence": False, "on_delivery": report,
              # Reports for failed records only: a Python callback per delivered record cost ~1 us each
              # (40,000 a slot) in poll/flush; flush still waits for every record's acknowledgement.
              "delivery.report.only.error": True}
    if security is not None:
        config.update(librdkafka_config(security))
    return Producer(config)


async def flush(producer, what: str, wait: float = 5.0) -> None:
    """Wait until every queued record is delivered: the hooks return (and the input offsets behind them can
    be committed, the slot recorded as published) only then. While the broker is unreachable it keeps
    waiting and says so, so the consumer stops instead of committing records that may never arrive."""
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


class Outputs:
    """Hooks the Processor calls when a slot closes (per partition) and is assembled (per city)."""

    def __init__(self, s: WorkerSettings) -> None:
        self.s = s
        self.keys = s.keys
        self.redis = self.producer = None
        self._flows: dict[tuple[str, int], tuple[bytes, tuple[np.ndarray, np.ndarray]]] = {}  # last close's per city

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
        self._set_many = redis.register_script(lua.SET_MANY)

    async def _read(self, city: str, slots: list[int]) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[bytes | None]]:
        """The slots' assembled flows as (cells (n,), counts (n, 3)) and the packed forecasts made 1..HORIZONS
        slots before the last: one round trip of 12 string values (not 8 x 40,000 hash fields)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in slots:
                pipe.get(self.keys.flow_packed(city, s))
            for h in range(1, HORIZONS + 1):
                pipe.get(self.keys.forecast_packed(city, slots[-1] - h))
            got = await pipe.execute()
        got, prev = got[: len(slots)], got[len(slots):]
        flows, parsed = [], {}
        for s, raw in zip(slots, got):
            if raw is None:  # assembled before the packed copy existed: the hash holds the same flows
                h = await self.redis.hgetall(self.keys.flow(city, s))
                raw = orjson.dumps([[int(c) for c in h], [int(v) for x in h.values() for v in x.split(b",")]])
            seen = self._flows.get((city, s))
            # 7 of the 8 slots were read at the previous close: parse a value again only if it changed.
            parsed[city, s] = seen if seen is not None and seen[0] == raw else (raw, parse_flow(raw))
            flows.append(parsed[city, s][1])
        self._flows = {k: v for k, v in self._flows.items() if k[0] != city} | parsed
        return flows, prev

    async def on_assembled(self, made) -> None:
        for city, slot in made:
            await self._slot(city, slot)
        await flush(self.producer, f"forecasts of {made[-1][0]} slot {made[-1][1]}")

    async def _slot(self, city: str, slot: int) -> None:
        model = self.forecaster.get()
        # Without a forecaster only the live persistence error is made, which needs HORIZONS + 1 slots, not eight.
        slots = list(range(slot - max(WINDOW_SLOTS if model is not None else 0, HORIZONS + 1) + 1, slot + 1))
        flows, prev = await self._read(city, slots)
        cells, at = _union(c for c, _ in flows)
        chan = np.zeros((len(cells), len(slots), 3), dtype=np.float32)  # (N, 8 or 5, 3)
        for j, (c, counts) in enumerate(flows):
            chan[at[c], j] = counts
        err = self._error(slot, cells, chan, prev)
        writes = [("HSET", self.keys.errors(city), str(slot), orjson.dumps(err)), ("EXPIRE", self.keys.errors(city), self.s.ttl)]
        queued = None
        if model is not None and len(cells):
            docs, pred = self._forecast(model, city, slot, cells, chan[:, -WINDOW_SLOTS:])  # docs[h - 1]: horizon h
            key = city.encode().replace(b"%", b"%%") + b":%d"
            keys = [key % c for c in cells.tolist()]
            # Queued in a thread while Redis stores the same records (as for embeddings).
            queued = asyncio.get_running_loop().run_in_executor(
                None, produce_all, self.producer, self.s.topics.forecasts, itertools.chain.from_iterable(zip(keys, d) for d in docs))
            writes.append(("SET", self.keys.forecast_packed(city, slot), pack_forecasts(model.version, cells, pred), "EX", self.s.ttl))
            for h, d in enumerate(docs, 1):
                fc = self.keys.forecast_ahead(city, slot, h)
                fields = [None] * (2 * len(cells))
                fields[::2], fields[1::2] = cells.tolist(), d
                writes += [("DEL", fc), ("HSET", fc, *fields), ("EXPIRE", fc, self.s.ttl)]
        try:
            # One transaction packed in C: redis-py packing 40,000 hash fields cost more than the prediction's
            # overhead, and a Lua script's 40,000 near-identical strings collide in Lua's string table (seconds).
            await execute_packed(self.redis, writes)
        finally:
            if queued is not None:
                await queued
                m.FORECASTS.inc(len(cells) * len(docs))

    def _forecast(self, model, city: str, slot: int, cells: np.ndarray, chan: np.ndarray) -> tuple[list[list[bytes]], np.ndarray]:
        """Predict; per horizon one JSON record per cell (in cell order), and the rounded counts (N, H, 3)."""
        t0 = time.perf_counter()
        pred = np.asarray(model.predict(chan, slot, cells), dtype=np.float64).reshape(len(cells), -1, 3)  # (N, H, 3)
        m.INFERENCE_SECONDS.labels("forecaster").observe(time.perf_counter() - t0)
        docs = [forecast_records(city, slot, model.version, cells, pred[:, h - 1], h) for h in range(1, pred.shape[1] + 1)]
        return docs, pred.round(4)

    def _error(self, slot: int, cells: np.ndarray, chan: np.ndarray, prev: list[bytes | None]) -> dict:
        """Per horizon h: the forecast made at slot-h for this slot, and persistence (slot-h's actuals), against
        the actuals (RMSE, MAE, Poisson deviance, bias). The top-level model/persistence fields are h=1's MAE."""
        actual = chan[:, -1]
        doc = {"slot": slot, "cells": len(cells), "persistence": None, "model": None, "horizons": {}}
        for h in range(1, HORIZONS + 1):
            row = {"persistence": scores(chan[:, -1 - h], actual) if chan.shape[1] > h else None, "model": None}
            raw = prev[h - 1] if h <= len(prev) else None
            version, fc_cells, fc_pred = unpack_forecasts(raw) if raw else (None, None, np.zeros((0, 0, 3)))
            if fc_pred.shape[1] >= h:  # the forecast made h slots ago reached this slot
                fc = np.zeros_like(actual)  # a cell the model did not forecast counts as 0
                at = np.searchsorted(cells, fc_cells)
                hit = (at < len(cells)) & (cells[np.minimum(at, len(cells) - 1)] == fc_cells) if len(cells) else at < 0
                fc[at[hit]] = fc_pred[hit, h - 1]
                row["model"], row["version"] = scores(fc, actual), version
            doc["horizons"][str(h)] = row
            for name, label in (("persistence", "persistence"), ("model", "forecaster")):
                if row[name] is not None:
                    m.FORECAST_MAE.labels(label, str(h)).set(row[name]["mae"])
                    m.FORECAST_RMSE.labels(label, str(h)).set(row[name]["rmse"])
        first = doc["horizons"]["1"]
        doc["persistence"] = first["persistence"]["mae"] if first["persistence"] else None
        if first["model"] is not None:
            doc["model"], doc["version"] = first["model"]["mae"], first["version"]
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
        uids = [str(u) for u in uids]
        docs = embedding_docs(uids, city, slot, model.version, emb)
        # Queue the records in a thread while Redis stores the same documents: ~7 us a record of Python and
        # librdkafka that would otherwise wait for Redis, or Redis for it.
        queued = asyncio.get_running_loop().run_in_executor(
            None, produce_all, self.producer, self.s.topics.embeddings, list(zip([u.encode() for u in uids], docs)))
        try:
            for i in range(0, len(docs), 5000):
                await self._store_embeddings(city, uids[i:i + 5000], docs[i:i + 5000])
        finally:
            await queued  # every record queued (or its error raised) before the flush below counts them
        await flush(self.producer, f"embeddings of {city} slot {slot} (partition {part})")
        m.EMBEDDINGS.inc(len(uids))

    async def _store_embeddings(self, city: str, uids: list[str], docs: list[bytes]) -> None:
        if is_cluster(self.redis):
            # Embedding keys spread over the nodes, and one script may touch one node's keys only.
            async with self.redis.pipeline(transaction=False) as pipe:
                for uid, doc in zip(uids, docs):
                    pipe.set(self.keys.embedding(city, uid), doc, ex=self.s.ttl)
                await pipe.execute()
            return
        # One Lua call per 5,000 users with the pairs in one blob and their lengths beside it: redis-py
        # packing 10,000 arguments of ~2.9 kB cost more than Redis storing them.
        pairs, lengths = [], []
        for uid, doc in zip(uids, docs):
            key = self.keys.embedding(city, uid).encode()
            pairs += (key, doc)
            lengths += (len(key), len(doc))
        await self._set_many(args=[self.s.ttl, ",".join(map(str, lengths)), b"".join(pairs)])

    async def close(self) -> None:
        """On shutdown: deliver whatever is still queued."""
        if self.producer is not None:
            # Bounded: a stop must not hang on an unreachable broker; anything left was never committed either.
            left = await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, 5.0)
            if left:
                log.error("shutdown: %d output records not delivered (their input offsets were not committed)", left)
