"""End-to-end ingest: pings on Kafka -> windows in Redis, one `mobstream worker` process.

    .venv/bin/python bench/bench_ingest.py [--pings 200000] [--single-pings 60000] [--repeat 1] [--cases batch,single]

Fills a topic with a synthetic city's pings (batch messages as `mobstream replay` sends them, and
single-ping messages), then times a worker from its first processed ping until every ping is in
Redis (read from the worker's own Prometheus counters, so group-join time is left out), and the CPU
seconds the worker process and redis-server spent meanwhile (robust when other jobs share the cores:
pings per CPU-second is what a dedicated core pair would approach). Beside it,
in the same run and on the same broker and topic: raw aiokafka consume + orjson decode (the
ceiling the design notes measured at ~108,000 msgs/s). Prints pings/s, the ceiling, the ratio and
the machine; for single-ping messages also msgs/s and the worker's and redis-server's CPU microseconds
per message (the worker's own CPU is what the Faust batch delivery and decode cost; Redis work per
batch is the window store's). Uses MOBSTREAM_BOOTSTRAP/MOBSTREAM_REDIS_URL when set, else starts its own services.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch  # noqa: E402
from stream.replay import ReplaySettings, replay  # noqa: E402

PARTITIONS = 4


def machine() -> str:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()} {os.cpu_count()} cores {model}; python {platform.python_version()}"


def workload(path: Path, pings: int, seed: int = 1, days: int = 4) -> pd.DataFrame:
    """A YJMob file of about `pings` rows over `days`: users seen in ~30% of slots, around home/work anchors.

    Fewer days = more users per slot (denser slots, fewer slot closes per ping)."""
    rng = np.random.default_rng(seed)
    users = max(1, int(pings / (days * 48 * 0.3)))
    seen = rng.random((users, days * 48)) < 0.3
    uid, slot = np.nonzero(seen)
    anchors = rng.integers(1, 201, size=(users, 2, 2))
    which = rng.integers(0, 2, size=len(uid))
    xy = anchors[uid, which] + rng.integers(-1, 2, size=(len(uid), 2))
    xy = np.clip(xy, 1, 200)
    df = pd.DataFrame({"uid": uid, "d": slot // 48, "t": slot % 48, "x": xy[:, 0], "y": xy[:, 1]})
    df.to_csv(path, index=False)
    return df


def services(root: Path | None = None):
    """(services or None, bootstrap, redis URL): the MOBSTREAM_BOOTSTRAP/MOBSTREAM_REDIS_URL ones when both are
    set, else an embedded broker and redis-server with their data under `root` (a new temporary folder if None)."""
    if os.environ.get("MOBSTREAM_BOOTSTRAP") and os.environ.get("MOBSTREAM_REDIS_URL"):
        return None, os.environ["MOBSTREAM_BOOTSTRAP"], os.environ["MOBSTREAM_REDIS_URL"]
    from stream.services import EmbeddedServices, ServicesConfig

    svc = EmbeddedServices(ServicesConfig(root or Path(tempfile.mkdtemp(prefix="bench-svc-")))).start()
    return svc, svc.endpoints.bootstrap, svc.endpoints.redis_url


async def raw_ceiling(bootstrap: str, topic: str, n_messages: int) -> tuple[float, float, float]:
    """aiokafka consume + orjson decode of every message: (seconds, msgs/s, pings/s)."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                         max_partition_fetch_bytes=8 << 20)
    await c.start()
    got = pings = 0
    t0 = time.perf_counter()  # before the first fetch: it may bring most of a small topic at once
    try:
        while got < n_messages:
            batch = await c.getmany(timeout_ms=1000, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    v = orjson.loads(m.value)
                    if type(v) is list:
                        pings += len(v)
                    elif "cols" in v:
                        pings += len(v["cols"]["uid"])
                    else:
                        pings += "uid" in v
            got += sum(len(v) for v in batch.values())  # once per fetch (was once per partition in it)
    finally:
        await c.stop()
    dt = time.perf_counter() - t0
    return dt, got / dt, pings / dt


def counter(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))


def cpu_seconds(proc, r) -> np.ndarray:
    """CPU seconds used so far by [the worker process, the redis-server]."""
    import psutil

    t = psutil.Process(proc.pid).cpu_times()
    info = r.info("cpu")
    return np.array([t.user + t.system, info["used_cpu_user"] + info["used_cpu_sys"]])


def time_worker(bootstrap: str, redis_url: str, topic: str, expect: int, log: Path,
                timeout: float = 300) -> tuple[float, np.ndarray]:
    """(seconds, [worker, redis] CPU seconds) from the worker's first counted ping to all `expect` pings processed."""
    import redis
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.integration.worker_proc import WorkerProc

    w = WorkerProc(bootstrap, redis_url, topic, f"b{uuid.uuid4().hex[:8]}", PARTITIONS, log,
                   ["--loglevel", "warning"])
    r = redis.Redis.from_url(redis_url)
    r.config_resetstat()
    try:
        t_first = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                n = counter(w.metrics_port, "mobstream_pings_total")
            except OSError:
                n = 0
            now = time.perf_counter()
            if n and t_first is None:
                t_first, n_first, cpu_first = now, n, cpu_seconds(w.proc, r)
            if n >= expect:
                # the first poll already saw n_first pings: credit their share of the time
                scale = expect / max(1, expect - n_first)
                stats = sorted(r.info("commandstats").items(), key=lambda kv: -kv[1]["usec"])[:6]
                print("  redis time by command (incl. calls inside scripts): " + ", ".join(
                    f"{k.removeprefix('cmdstat_')} {v['usec'] / 1e6:.2f} s/{v['calls']:,d} calls" for k, v in stats))
                return (now - t_first) * scale, (cpu_seconds(w.proc, r) - cpu_first) * scale
            if w.proc.poll() is not None:
                raise SystemExit(f"worker exited:\n{w.tail()}")
            time.sleep(0.05)
        raise SystemExit(f"worker did not finish in {timeout} s:\n{w.tail()}")
    finally:
        r.close()
        w.stop()


def run_case(label: str, bootstrap: str, redis_url: str, path: Path, single: bool, tmp: Path) -> None:
    topic = f"bench-{'single' if single else 'batch'}-{uuid.uuid4().hex[:6]}"
    rep = replay(ReplaySettings(path, bootstrap, topic, PARTITIONS, single=single, progress=False))
    c0 = time.process_time()
    dt_raw, raw_msgs, raw_pings = asyncio.run(raw_ceiling(bootstrap, topic, rep.messages))
    dt_raw_cpu = time.process_time() - c0
    secs, cpu = time_worker(bootstrap, redis_url, topic, rep.pings, tmp / f"{topic}.log")
    rate = rep.pings / secs
    raw_cpu_us = 1e6 * dt_raw_cpu / rep.pings
    w_us, r_us = 1e6 * cpu / rep.pings
    cpu = cpu.sum()
    print(f"{label:22s} {rep.pings:>8,d} pings in {rep.messages:>7,d} msgs | worker {rate:>9,.0f} pings/s wall "
          f"({rep.messages / secs:,.0f} msgs/s; load {os.getloadavg()[0]:.1f}), CPU worker {w_us:.1f} + redis {r_us:.1f} "
          f"= {1e6 * cpu / rep.pings:.1f} us/ping "
          f"= {rep.pings / cpu:,.0f} pings per CPU-second | raw aiokafka consume+decode {raw_pings:>10,.0f} pings/s "
          f"({raw_msgs:,.0f} msgs/s) wall, {raw_cpu_us:.2f} CPU us/ping | worker/raw: wall {rate / raw_pings:.3f}, "
          f"CPU {raw_cpu_us / (1e6 * cpu / rep.pings):.3f}", flush=True)
    if single:  # the same figures per message (one ping each), the unit the goals are in
        n = rep.messages
        print(f"{'  per message':22s} worker {n / secs:,.0f} msgs/s vs raw aiokafka consume+decode {raw_msgs:,.0f} "
              f"msgs/s: ratio {n / secs / raw_msgs:.3f}; CPU per message: worker {w_us * rep.pings / n:.1f} us, "
              f"redis-server {r_us * rep.pings / n:.1f} us, raw consume+decode {1e6 * dt_raw_cpu / n:.1f} us", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=200_000)
    ap.add_argument("--single-pings", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--days", type=int, default=4, help="days each workload spans (fewer = denser slots)")
    ap.add_argument("--cases", default="batch,single", help="which cases to run: batch, single or both")
    a = ap.parse_args()
    cases = {c.strip() for c in a.cases.split(",")}
    with scratch("bench-ingest-") as tmp:
        svc, bootstrap, redis_url = services(tmp / "svc")
        try:
            print(f"machine: {machine()}; {PARTITIONS} partitions, one worker; broker {bootstrap}")
            big, small = tmp / "big.csv", tmp / "small.csv"
            workload(big, a.pings, days=a.days)
            workload(small, a.single_pings, seed=2, days=a.days)
            for _ in range(a.repeat):
                if "batch" in cases:
                    run_case("batch messages", bootstrap, redis_url, big, False, tmp)
                if "single" in cases:
                    run_case("single-ping messages", bootstrap, redis_url, small, True, tmp)
        finally:
            if svc is not None:
                svc.stop()


if __name__ == "__main__":
    main()
