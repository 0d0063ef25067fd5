"""Fill a real Redis as a running stream would: flows through the stream's own Processor and
RedisWindowStore; forecasts, embeddings and errors in the documented key formats (no writer exists yet)."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pandas as pd
import redis

from models.grid import cell_id
from models.slots import replay_ts, slot_from_dt, slot_start
from stream import readers
from stream.keys import Keys
from stream.windows import wal
from stream.pings import Limits
from stream.processor import Processor
from stream.windows.redis_store import RedisWindowStore


async def _ingest(url: str, app: str, df: pd.DataFrame, city: str) -> list[tuple[str, int]]:
    import redis.asyncio as aredis

    r = aredis.from_url(url)
    try:
        proc = Processor(RedisWindowStore(r, Keys(app)), Limits(), lateness=0.0, n_partitions=1,
                         origin=int(slot_start(0)))
        df = df[df.x != 999]
        ts = replay_ts(df.d.to_numpy(), df.t.to_numpy(), df.uid.to_numpy())
        order = np.argsort(ts, kind="stable")
        cols = zip(df.uid.to_numpy()[order], ts[order], df.x.to_numpy()[order], df.y.to_numpy()[order])
        msgs = [(str(u).encode(), orjson.dumps({"uid": int(u), "ts": float(t), "x": int(x), "y": int(y), "city": city}))
                for u, t, x, y in cols]
        made = []
        for i in range(0, len(msgs), 500):
            made += (await proc.process(0, msgs[i:i + 500])).assembled
        last = int(slot_from_dt(df.d.max(), 47))
        made += (await proc.process(0, [(None, orjson.dumps({"watermark": slot_start(last + 1)}))])).assembled
        return made
    finally:
        await r.aclose()


def ingest(url: str, app: str, df: pd.DataFrame, city: str = "A") -> list[tuple[str, int]]:
    """Run the rows (uid,d,t,x,y) through the stream's Processor; returns the (city, slot)s assembled."""
    return asyncio.run(_ingest(url, app, df, city))


def _fc_doc(v: np.ndarray, list_form: bool, city: str, cell: int, slot: int, horizon: int = 1):
    """The worker's forecast value (stream/outputs.py), or the bare [occ, in, out] list readers also accept."""
    if list_form:
        return v.tolist()
    x, y = cell % 200 + 1, cell // 200 + 1
    return {"city": city, "cell": cell, "x": x, "y": y, "slot": slot + horizon, "made_at": slot, "horizon": horizon,
            "occ": float(v[0]), "in": float(v[1]), "out": float(v[2]), "version": "test"}


def write_outputs(url: str, app: str, city: str, slots: list[int], dim: int = 32, seed: int = 0,
                  list_form: bool = False) -> None:
    """Forecasts (persistence with noise), errors and embeddings for the assembled slots, in the formats the
    worker writes (stream/outputs.py):
    fc:<s>[:h<h>] cell -> {"occ","in","out"} (or [occ,in,out]) for horizons 1..4; err slot -> {"model",
    "persistence","horizons"}; emb:<uid> -> {"slot","embedding"}."""
    rng = np.random.default_rng(seed)
    k = Keys(app)
    r = redis.Redis.from_url(url)
    try:
        prev = None
        for s in slots:
            h = {int(c): np.array(v.split(b","), dtype=np.int64) for c, v in r.hgetall(k.flow(city, s)).items()}
            fc = {c: np.clip(v + rng.normal(0, 0.6, 3), 0, None).round(3) for c, v in h.items()}
            for ahead in range(1, 5) if fc else ():
                r.hset(k.forecast_ahead(city, s, ahead), mapping={c: orjson.dumps(_fc_doc(v * (1 + ahead / 10), list_form, city, c, s, ahead))
                                                                  for c, v in fc.items()})
            if prev is not None:
                cells = sorted(set(h) | set(prev))
                a = np.array([h.get(c, np.zeros(3)) for c in cells], dtype=float)
                p = np.array([prev.get(c, np.zeros(3)) for c in cells], dtype=float)
                model, persistence = float(np.abs(p + 0.3 - a).mean()) * 0.8, float(np.abs(p - a).mean())
                horizons = {str(ahead): {"model": {"mae": model * (1 + ahead / 10)}, "persistence": {"mae": persistence * (1 + ahead / 10)}}
                            for ahead in range(1, 5)}
                r.hset(k.errors(city), s, orjson.dumps({"slot": s, "cells": len(cells), "version": "test", "model": model,
                                                         "persistence": persistence, "horizons": horizons}))
            prev = h
            r.zadd(k.kept(city), {s: s})  # published, as the worker's ledger records it
        cells: dict[str, list[int]] = {}
        for s in slots[-8:]:
            for p in readers.partitions(r, k):
                blob = r.get(k.log(p, city, s))
                for uid, c in zip(*wal.decode(blob)[::2]) if blob else ():
                    cells.setdefault(uid, []).append(int(c))
        for uid, seen in cells.items():
            centre = np.mean([[c % 200, c // 200] for c in seen], axis=0) / 10.0
            vec = np.concatenate([centre, rng.normal(0, 0.3, dim - 2)])
            r.set(k.embedding(city, uid), orjson.dumps({"uid": uid, "city": city, "slot": slots[-1], "version": "test",
                                                        "embedding": vec.astype(np.float32)},
                                                       option=orjson.OPT_SERIALIZE_NUMPY))
    finally:
        r.close()


def city_frame(n_users: int = 120, days: int = 1, seed: int = 3) -> pd.DataFrame:
    """A small city with a dense centre around (100, 100): rows uid,d,t,x,y."""
    rng = np.random.default_rng(seed)
    home = np.clip(rng.normal(100, 18, (n_users, 2)), 1, 200).astype(int)
    work = np.clip(rng.normal(100, 6, (n_users, 2)), 1, 200).astype(int)
    rows = []
    for u in range(n_users):
        for slot in range(days * 48):
            if rng.random() < 0.5:
                t = slot % 48
                x, y = work[u] if 18 <= t < 36 else home[u]
                rows.append((u, slot // 48, t, int(x), int(y)))
    return pd.DataFrame(rows, columns=["uid", "d", "t", "x", "y"])


def cell_of(x: int, y: int) -> int:
    return int(cell_id(x, y))
