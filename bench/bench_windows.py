"""In-process ingest on a real redis-server, no Kafka: where each ping's CPU goes, per Lua script and in Python.

    .venv/bin/python bench/bench_windows.py [--pings 200000] [--days 1] [--batch 1000] [--repeat 3] [--by-script]

The pings of `bench_ingest`'s workload, as columnar messages of up to --batch pings per partition
and slot (what `mobstream replay` sends), go through `Processor.process` in replay order over 4
partitions against its own redis-server. Prints, per run: wall, CPU of this process and of
redis-server (`INFO cpu`) per ping, with the machine and load average. With --by-script, also
redis-server time per script (SLOWLOG at threshold 0, each EVALSHA attributed to its script) and per
command, including those the scripts call; the SLOWLOG's own bookkeeping then adds to the CPU figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.scratch import scratch  # noqa: E402
from bench_ingest import PARTITIONS, machine, workload  # noqa: E402
from models.slots import DEFAULT_ORIGIN, SLOT_SECONDS  # noqa: E402


def messages(df, batch: int) -> list[tuple[int, bytes]]:
    """(partition, columnar message) in replay order: by slot, then partition, <= batch pings each."""
    slot = (df["d"] * 48 + df["t"]).to_numpy()
    uid = df["uid"].to_numpy()
    ts = DEFAULT_ORIGIN + slot * SLOT_SECONDS + (uid % 1700) + 0.5
    part = uid % PARTITIONS
    out = []
    for s in np.unique(slot):
        for p in range(PARTITIONS):
            idx = np.flatnonzero((slot == s) & (part == p))
            if len(idx) == 0:
                out.append((p, orjson.dumps({"watermark": float(DEFAULT_ORIGIN + s * SLOT_SECONDS)})))
            for k in range(0, len(idx), batch):
                j = idx[k:k + batch]
                cols = {"uid": uid[j].tolist(), "ts": ts[j].tolist(), "x": df["x"].to_numpy()[j].tolist(),
                        "y": df["y"].to_numpy()[j].tolist()}
                out.append((p, orjson.dumps({"cols": cols, "city": "A"})))
    end = float(DEFAULT_ORIGIN + (slot.max() + 2) * SLOT_SECONDS)
    out += [(p, orjson.dumps({"watermark": end})) for p in range(PARTITIONS)]
    return out


async def run(url: str, msgs: list, n_pings: int, by_script: bool) -> None:
    import redis
    import redis.asyncio as aioredis

    from stream.pings import Limits
    from stream.processor import Processor
    from stream.windows.redis_store import RedisWindowStore

    sync = redis.Redis.from_url(url)
    sync.flushall()
    sync.config_set("slowlog-max-len", 10_000_000)
    sync.config_set("slowlog-log-slower-than", 0 if by_script else 10_000)
    sync.slowlog_reset()
    client = aioredis.Redis.from_url(url)
    store = RedisWindowStore(client)
    for src in store.scripts.values():
        await client.script_load(src)
    names = {sha: name for name, sha in store.sha.items()}
    proc = Processor(store, Limits(max_future=0), lateness=0.0, n_partitions=PARTITIONS, origin=DEFAULT_ORIGIN,
                     full_windows=lambda: False)  # the worker without an embedder
    info = sync.info("cpu")
    r0 = info["used_cpu_user"] + info["used_cpu_sys"]
    c0, t0 = time.process_time(), time.perf_counter()
    for part, value in msgs:
        await proc.process(part, [(None, value)])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    info = sync.info("cpu")
    rcpu = info["used_cpu_user"] + info["used_cpu_sys"] - r0
    sync.config_set("slowlog-log-slower-than", 10_000)
    per: dict = defaultdict(lambda: [0, 0])
    for e in sync.slowlog_get(10_000_000):
        cmd = e["command"].split(b" ")
        name = cmd[0].decode().upper()
        if name == "EVALSHA":
            name = names.get(cmd[1].decode(), "EVALSHA")
        per[name][0] += 1
        per[name][1] += e["duration"]
    await client.aclose()
    sync.close()
    top = sorted(per.items(), key=lambda kv: -kv[1][1])[:8]
    print(f"  {n_pings:,d} pings in {len(msgs):,d} msgs: wall {wall:.2f} s = {n_pings / wall:,.0f} pings/s; "
          f"CPU python {1e6 * cpu / n_pings:.1f} + redis {1e6 * rcpu / n_pings:.1f} us/ping "
          f"(load {os.getloadavg()[0]:.1f}{'; SLOWLOG on' if by_script else ''})", flush=True)
    if by_script:
        print("    redis by script/command: " + ", ".join(
            f"{k} {v[1] / 1e6:.2f} s/{v[0]:,d} ({v[1] / n_pings:.1f} us/ping)" for k, v in top), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--by-script", action="store_true", help="redis-server time per Lua script (SLOWLOG at 0)")
    a = ap.parse_args()
    from stream.services import stop
    from stream.services.redis_server import start_redis

    with scratch("bench-windows-") as tmp:
        df = workload(tmp / "w.csv", a.pings, days=a.days)
        msgs = messages(df, a.batch)
        svc = start_redis(tmp)
        try:
            print(f"machine: {machine()}; {PARTITIONS} partitions, in-process Processor, redis-server {svc.url}")
            for _ in range(a.repeat):
                asyncio.run(run(svc.url, msgs, len(df), a.by_script))
        finally:
            stop(svc)


if __name__ == "__main__":
    main()
