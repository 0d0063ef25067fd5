"""Server-side cost of one dashboard refresh with 40,000 active cells and 30,000 user embeddings.

Fills a real redis-server (the embedded one, own temp dir, stopped at the end) with full 200x200
flows and forecasts for the last 8 slots, an error history, and 30,000 512-d embeddings; then times
what one refresh of the page does outside Streamlit's own rendering: the readers and the figure
building of the map, the drill-down, the embedding explorer and the forecast-error chart.

  refresh, new slot    every cache cold (what happens once per closed slot, every 30 min live)
  refresh, same slot   flows/forecasts/embeddings cached by slot (what the timer does in between)

Baseline: bare HGETALL of the same flow and forecast hashes plus MGET of the same embedding keys
(no parsing). Run: .venv/bin/python bench/bench_dashboard.py [--users 30000] [--dim 512] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import redis

from dashboard import embeddings as emb_panel
from dashboard import flowmap, drilldown, health
from models.grid import GRID_SIZE
from stream import readers
from stream.keys import Keys
from stream.windows import wal
from stream.services import start_redis, stop

CITY, END = "A", 1000


def marshal(df, spec: dict) -> int:
    """What Streamlit does with a (data, Vega-Lite spec) chart before sending it: data to Arrow, spec to JSON."""
    from streamlit.dataframe_util import convert_anything_to_arrow_bytes

    return len(convert_anything_to_arrow_bytes(df)) + len(orjson.dumps(spec))


def fill(r, k: Keys, users: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cells = np.arange(GRID_SIZE * GRID_SIZE)
    for s in range(END - 7, END + 1):
        counts = rng.poisson(6.0, (len(cells), 3)) + 1  # every cell active
        r.hset(k.flow(CITY, s), mapping={int(c): f"{a},{b},{d}" for c, (a, b, d) in zip(cells, counts.tolist())})
        fc = counts + rng.normal(0, 1, counts.shape)
        r.hset(k.forecast(CITY, s), mapping={int(c): orjson.dumps({"occ": round(a, 3), "in": round(b, 3),
                                                                      "out": round(d, 3)})
                                              for c, (a, b, d) in zip(cells, fc.tolist())})
        r.hset(k.errors(CITY), s, orjson.dumps({"model": 0.8, "persistence": 1.0}))
    r.sadd(k.cities, CITY)
    r.set(k.latest(CITY), END)
    r.sadd(k.parts, *range(4))
    for p in range(4):
        r.hset(k.clock(p), "wm", float(1_800_000 + p))
    window = [], []
    with r.pipeline(transaction=False) as pipe:
        for u in range(users):
            vec = np.round(rng.standard_normal(dim), 4).tolist()
            pipe.set(k.embedding(CITY, str(u)), orjson.dumps({"slot": END, "embedding": vec}))
            window[0].append(str(u))
            window[1].append(int(rng.integers(0, len(cells))))
            if u % 2000 == 1999:
                pipe.execute()
        pipe.execute()
    r.set(k.log(0, CITY, END), wal.encode(window[0], np.zeros(len(window[0]), np.int64), np.array(window[1])))


def _hash(*arrays) -> None:
    """What a same-slot refresh pays for flowmap.rendered()'s st.cache_data: hashing its input grids."""
    import hashlib

    from streamlit.runtime.caching.cache_type import CacheType
    from streamlit.runtime.caching.hashing import update_hash

    for arr in arrays:
        if arr is not None:
            update_hash(arr, hashlib.new("md5"), CacheType.DATA)


def map_tab(r, k: Keys, view: str, cache: dict) -> None:
    """The Flow map tab: now, the slot's grids (cached by slot), the drawn map (cached), the drill-down."""
    slot = readers.latest_slots(r, k)[CITY]
    readers.watermarks(r, k)
    if cache.get("slot") != slot:
        cache.clear()
        cache["slot"] = slot
    if "flows" not in cache:
        cache["flows"] = readers.flow_grid(r, k, CITY, slot)
    fc_now = None
    if view == "error":
        if "fc_now" not in cache:
            cache["fc_now"] = readers.forecast_grid(r, k, CITY, slot - 1)
        fc_now = cache["fc_now"]
    _hash(cache["flows"], fc_now)
    if ("png", view) not in cache:
        fr = flowmap.frame(view, "occupancy", slot, cache["flows"], None, fc_now)
        cache[("png", view)] = (flowmap.image(fr, (100, 100)), flowmap.top_cells(fr.values, fr.blank))
    h = readers.cell_history(r, k, CITY, 20_000, slot, 48)
    marshal(drilldown.history_frame(h, "occupancy", 0), drilldown.chart("cell"))


def embeddings_tab(r, k: Keys, max_users: int, cache: dict, proj: dict) -> None:
    """The Embeddings tab: now, the embeddings (cached by slot), the projection (fitted once), the scatter."""
    import pandas as pd

    slot = readers.latest_slots(r, k)[CITY]
    if cache.get("slot") != slot:
        cache.clear()
        cache["slot"] = slot
    if "emb" not in cache:
        cache["emb"] = readers.embeddings(r, k, CITY, readers.embedding_uids(r, k, CITY, max_users))
    uids, e = cache["emb"]
    if "pca" not in proj:
        t0 = time.perf_counter()
        proj["pca"] = emb_panel.Projection(e)
        proj["fit_s"] = time.perf_counter() - t0
    xy = proj["pca"](e)
    marshal(*emb_panel.scatter(pd.DataFrame({"uid": uids, "pc1": xy[:, 0], "pc2": xy[:, 1]}), emb_panel.NO_COLOR))


def system_tab(r, k: Keys) -> None:
    readers.latest_slots(r, k)
    marshal(*health.error_chart(readers.errors(r, k, CITY, last=96)))


def timed(f, *a) -> float:
    t0 = time.perf_counter()
    f(*a)
    return time.perf_counter() - t0


def baseline(r, k: Keys, max_users: int) -> float:
    t0 = time.perf_counter()
    r.hgetall(k.flow(CITY, END))
    r.hgetall(k.forecast(CITY, END))
    keys = [k.embedding(CITY, str(u)) for u in range(max_users)]
    for i in range(0, len(keys), 2000):
        r.mget(keys[i:i + 2000])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=30_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--max-users", type=int, default=5000, help="the explorer's cap (setting max_users)")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = start_redis(Path(tmp))
        try:
            r = redis.Redis.from_url(svc.url)
            k = Keys("bench")
            t0 = time.perf_counter()
            fill(r, k, a.users, a.dim)
            print(f"filled: 8 slots x {GRID_SIZE**2:,} cells of flows and forecasts, {a.users:,} x {a.dim}-d "
                  f"embeddings in {time.perf_counter() - t0:.1f} s; redis used_memory "
                  f"{r.info('memory')['used_memory'] / 2**20:,.0f} MiB")
            rows = []
            proj: dict = {}
            for name, tab in (("flow map (actual)", lambda c: map_tab(r, k, "actual", c)),
                              ("flow map (error)", lambda c: map_tab(r, k, "error", c)),
                              (f"embeddings ({a.max_users:,})", lambda c: embeddings_tab(r, k, a.max_users, c, proj)),
                              (f"embeddings ({a.users:,})",
                               lambda c: embeddings_tab(r, k, a.users, c, {"pca": proj["pca"]})),
                              ("system", lambda c: system_tab(r, k))):
                cold, warm = [], []
                for _ in range(a.repeat):
                    cache: dict = {}
                    cold.append(timed(tab, cache))
                    warm.append(timed(tab, cache))
                rows.append((name, statistics.median(cold), statistics.median(warm)))
            base = statistics.median(baseline(r, k, a.max_users) for _ in range(a.repeat))
            print(f"\none refresh = the open tab's work (tabs are lazy); median of {a.repeat}, seconds")
            print(f"  {'tab':<22} {'new slot':>9} {'same slot':>10}")
            for name, c, w in rows:
                print(f"  {name:<22} {c:>9.3f} {w:>10.3f}")
            print(f"  PCA fit (once per server and city, {a.max_users:,} users): {proj['fit_s']:.3f}")
            print(f"baseline: bare HGETALL flow + HGETALL forecast ({GRID_SIZE**2:,} cells each) "
                  f"+ MGET {a.max_users:,} embeddings, no parsing = {base:.3f} s")
            worst_warm = max(w for _, _, w in rows)
            print(f"ratio worst same-slot refresh / baseline = {worst_warm / base:.3f}x; "
                  f"flow map new-slot refresh / baseline = {rows[0][1] / base:.2f}x")
            r.close()
        finally:
            stop(svc)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")


if __name__ == "__main__":
    main()
