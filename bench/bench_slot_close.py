"""Slot close -> phase-2 outputs published: forecasts for every active cell, embeddings for every active user.

    .venv/bin/python bench/bench_slot_close.py [--cells 40000] [--users 30000] [--repeat 5]
        [--forecaster runs/flow/flow_lstm.pt] [--embedder PATH] [--flow-cache DIR]

Times `stream.inference.Inference` as the infer agent calls it, against a real redis-server and broker:
forecasts = `forecast(city, slot)`: read the 8 assembled flow slots (`flowj:` values, written here as ADVANCE
writes them) + last forecast from Redis, predict, one record per cell queued on `flow-forecasts`,
`fc:`/`fcn:` + live error written, producer flushed (every record acked). With --flow-cache the
windows are a real city's: its busiest slot's cells, and when that slot has fewer than --cells cells
with a window, other slots' windows of that city on cells drawn at random from the rest of the grid,
so a 40,000-cell close is measured on windows of the city's own kind, not extrapolated.
Embeddings = `embed(work)`: read the packed windows from Redis, embed them, one record per user on
`user-embeddings`, `emb:` keys written, flushed. Beside each: the bare model call on the same arrays (`FlowForecaster.predict`,
`TrajectoryEmbedder.embed`), the ratio, and the machine. Without --embedder, a randomly initialised
full-size encoder (the default `EncoderConfig`, 512 dims) stands in: the cost is the architecture's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import machine, services

SLOT = 1000  # any slot: the flows are synthetic


def p(xs, q) -> float:
    return float(np.percentile(xs, q))


def city_windows(cache: Path, n: int, rng) -> tuple[np.ndarray, np.ndarray, int]:
    """(cells (N,) sorted, windows (N, 8, 3), how many are the busiest slot's own) for N = n cells of the grid:
    the busiest slot's windows, then windows with any flow from the next busiest slots, put on cells drawn at
    random from the cells the busiest slot does not use."""
    from bench.bench_flow_forecast import GRID, busiest_windows

    t, cells, chan = busiest_windows(cache, n)
    busiest, need = len(cells), min(n, GRID) - len(cells)
    if need > 0:
        counts = np.load(cache / "counts.npy", mmap_mode="r")  # (T, C, 3)
        totals = np.asarray(counts[8:, :, 0].sum(axis=1))
        more = []
        for u in np.argsort(-totals) + 8:  # slots, busiest first
            if u == t:
                continue
            win = np.asarray(counts[u - 8 : u]).transpose(1, 0, 2).astype(np.float32)  # (C, 8, 3)
            more.append(win[win.reshape(len(win), -1).any(axis=1)])
            if sum(map(len, more)) >= need:
                break
        free = np.setdiff1d(np.arange(GRID), cells)
        cells = np.concatenate([cells, rng.choice(free, need, replace=False)])
        chan = np.concatenate([chan, np.concatenate(more)[:need]])
        order = np.argsort(cells)
        cells, chan = cells[order], chan[order]
    return cells, chan, busiest


async def run(a, bootstrap: str, redis_url: str, tmp: Path) -> None:
    import redis.asyncio as aioredis

    from models.encoder import EncoderConfig
    from stream.inference import Inference
    from stream.transport import make_producer
    from stream.services import create_topic
    from stream.settings import Topics, WorkerSettings
    from tests.stream.tiny_models import encoder_checkpoint, flow_checkpoint

    fpath = a.forecaster
    if fpath is None or not fpath.exists():
        fpath = tmp / "flow.pt"
        flow_checkpoint(fpath)
    epath = a.embedder
    if epath is None:
        epath = tmp / "encoder.pt"
        encoder_checkpoint(epath, config=EncoderConfig())
    topics = Topics(forecasts=f"bench-fc-{os.getpid()}", embeddings=f"bench-emb-{os.getpid()}")
    for t in (topics.forecasts, topics.embeddings):
        create_topic(bootstrap, t, 4)
    s = WorkerSettings(bootstrap=bootstrap, redis_url=redis_url, app=f"bsc{os.getpid()}", topics=topics,
                       forecaster=fpath, embedder=epath)
    out = Inference(s)
    r = aioredis.Redis.from_url(redis_url)
    producer = make_producer(bootstrap)
    out.attach(r, producer)
    fc, emb = out.forecaster.get(), out.embedder.get()
    inside = []  # seconds spent in the model during each timed close: "outside" = total - this, same call

    def timed(f):
        def call(*args):
            t0 = time.perf_counter()
            res = f(*args)
            inside.append(time.perf_counter() - t0)
            return res
        return call
    predict, embed = fc.predict, emb.embed
    fc.predict, emb.embed = timed(predict), timed(embed)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"forecaster {fpath} ({fc.version}); embedder {epath} ({emb.version}, {emb.dim} dims)")

    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(200 * 200, a.cells, replace=False))
    chan = rng.poisson(2.0, (a.cells, 8, 3)).astype(np.float32)  # (N, 8, 3)
    if a.flow_cache is not None:  # a real tensor's windows (most repeat) instead of all-distinct ones
        cells, chan, busiest = city_windows(a.flow_cache, a.cells, rng)
        print(f"flows: {len(cells):,d} cells' windows from {a.flow_cache}: {busiest:,d} before its busiest slot, "
              f"{len(cells) - busiest:,d} from other slots on other cells")
    # Consecutive closes, as in a running worker (each reads 7 slots the previous one read, and the live
    # error compares the previous close's forecast): slot SLOT + k repeats the window's column k % 8.
    for slot in range(SLOT - 7, SLOT + a.repeat):  # both assembled forms, as ADVANCE writes them
        counts = chan[:, (slot - SLOT + 7) % 8].astype(int)  # (N, 3)
        await r.set(s.keys.flow_packed("A", slot), orjson.dumps([cells.tolist(), counts.ravel().tolist()]))
        vals = [f"{o},{i},{u}" for o, i, u in counts.tolist()]
        await r.hset(s.keys.flow("A", slot), mapping=dict(zip(cells.tolist(), vals)))

    if "forecasts" in a.outputs:
        await forecasts(a, out, r, s, inside, predict, cells, chan)
    if "embeddings" in a.outputs:
        await embeddings(a, out, r, s, inside, embed, rng)
    await r.aclose()


async def forecasts(a, out, r, s, inside, predict, cells, chan) -> None:
    got, base, rest = [], [], []
    for k in range(a.repeat):
        inside.clear()
        t0 = time.perf_counter()
        await out.forecast("A", SLOT + k)
        got.append(time.perf_counter() - t0)
        rest.append(got[-1] - sum(inside))
        window = chan[:, [(k + j) % 8 for j in range(8)]]  # (N, 8, 3): slots SLOT+k-7 .. SLOT+k
        t0 = time.perf_counter()
        predict(window, SLOT + k, cells)
        base.append(time.perf_counter() - t0)
    n_fc = await r.hlen(s.keys.forecast("A", SLOT + a.repeat - 1))
    print(f"forecasts, {n_fc:,d} cells: slot close -> all published p50 {1e3 * p(got, 50):,.0f} ms, "
          f"p95 {1e3 * p(got, 95):,.0f} ms | bare predict p50 {1e3 * p(base, 50):,.0f} ms, p95 {1e3 * p(base, 95):,.0f} ms "
          f"| ratio (p50) {p(got, 50) / p(base, 50):.2f} | outside the model (same calls) p50 {1e3 * p(rest, 50):,.0f} ms, "
          f"p95 {1e3 * p(rest, 95):,.0f} ms")


async def embeddings(a, out, r, s, inside, embed, rng) -> None:
    from models.grid import cell_id, cell_xy
    from stream.records import EMBED, Work, pack_windows

    uids = [str(u) for u in range(a.users)]
    wcells = cell_id(rng.integers(1, 201, (a.users, 8)), rng.integers(1, 201, (a.users, 8)))
    wcells[rng.random((a.users, 8)) < 0.5] = -1
    wcells[:, -1] = np.abs(wcells[:, -1])
    mask = wcells >= 0
    x, y = cell_xy(np.where(mask, wcells, 0))
    x, y = np.where(mask, x, 0), np.where(mask, y, 0)
    got, base, rest = [], [], []
    for _ in range(a.repeat):
        inside.clear()
        key = s.keys.windows("A", SLOT, 0)
        await r.set(key, pack_windows(uids, wcells))  # what the ingest side writes (the item deletes it when done)
        t0 = time.perf_counter()
        await out.embed(Work(EMBED, "A", SLOT, 0, key))
        got.append(time.perf_counter() - t0)
        rest.append(got[-1] - sum(inside))
        t0 = time.perf_counter()
        embed(x, y, mask, SLOT)
        base.append(time.perf_counter() - t0)
    print(f"embeddings, {a.users:,d} users: slot close -> all published p50 {p(got, 50):.2f} s, p95 {p(got, 95):.2f} s "
          f"| bare embed p50 {p(base, 50):.2f} s | ratio (p50) {p(got, 50) / p(base, 50):.2f} "
          f"| outside the model (same calls) p50 {1e3 * p(rest, 50):,.0f} ms, p95 {1e3 * p(rest, 95):,.0f} ms; "
          f"Redis value {len(await r.get(s.keys.embedding('A', '0'))):,d} bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=40_000)
    ap.add_argument("--users", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--forecaster", type=Path, default=Path("runs/flow/flow_lstm.pt"))
    ap.add_argument("--embedder", type=Path, default=None)
    ap.add_argument("--outputs", default="forecasts,embeddings", help="which closes to time (comma-separated)")
    ap.add_argument("--flow-cache", type=Path, default=None, help="flow cache folder (mobstream flow-build): its busiest "
                    "slot's windows instead of Poisson(2) counts, which are all distinct (the worst case)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-slot-close-"))
    svc, bootstrap, redis_url = services()
    try:
        asyncio.run(run(a, bootstrap, redis_url, tmp))
    finally:
        if svc is not None:
            svc.stop()


if __name__ == "__main__":
    main()
