"""Soak benchmark: a real worker under a steady high ping rate for a long time; RSS, fds and Redis memory stay flat.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--rate 2000] [--users 20000] [--sample 30]

Starts its own Tansu broker, redis-server and one `mobstream worker` (4 partitions), then produces
columnar batches, one slot after another, for ever-advancing event time (a synthetic city whose days
repeat with shifted dates), at --rate pings per second. Every --sample seconds it records the
worker's RSS and open file descriptors, Redis used_memory and key count, and the produced-vs-assembled
slot gap, and the per-slot output keys kept (flow:<slot>). At the end it prints the table and the
verdicts: RSS growth after warm-up (the first quarter, at least 2 minutes) <= 10 %, Redis memory bounded
(last sample <= 1.1 x the warm-up maximum: the purge keeps ~9 slots of window state, the publication
ledger the last --retain-slots slots of outputs), fd count not growing, nothing lost (pings accepted =
produced). --forecaster adds a tiny flow model, so forecasts (fc:, fcn:) are written and trimmed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import orjson
import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.slots import DEFAULT_ORIGIN as O, SLOT_SECONDS as S  # noqa: E402
from stream.ownership import Owners  # noqa: E402
from stream.services import create_topic, start_broker, start_redis, stop  # noqa: E402
from tests.integration.worker_proc import WorkerProc  # noqa: E402
from stream.keys import Keys

PARTS = 4


def metric(port: int, name: str) -> float:
    """Sum of a Prometheus metric's samples (all labels) on the worker's endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def accepted(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    got = re.search(r'^mobstream_pings_total{outcome="accepted"} (\S+)$', text, re.M)
    return float(got.group(1)) if got else 0.0


class City:
    """Users with three anchor cells each, seen with probability p in every slot (deterministic)."""

    def __init__(self, users: int, per_slot: int, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.uids = np.arange(users)
        self.anchors = rng.integers(1, 201, size=(users, 3, 2))
        self.per_slot = min(per_slot, users)
        self.part = Owners(PARTS).of(self.uids)

    def slot_messages(self, slot: int) -> list[tuple[int, bytes]]:
        who = np.sort(self.rng.choice(len(self.uids), self.per_slot, replace=False))
        pick = self.anchors[who, self.rng.integers(0, 3, len(who))]
        ts = O + slot * S + self.rng.integers(0, S - 1, len(who))
        out = []
        for p in range(PARTS):
            m = self.part[who] == p
            if m.any():
                cols = {"uid": who[m].tolist(), "ts": ts[m].tolist(), "x": pick[m, 0].tolist(), "y": pick[m, 1].tolist()}
                out.append((p, orjson.dumps({"cols": cols})))
            else:
                out.append((p, orjson.dumps({"watermark": int(O + slot * S)})))
        return out


async def produce(bootstrap: str, topic: str, city: City, rate: float, seconds: float, sent: list) -> None:
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000, linger_ms=5)
    await prod.start()
    t0, slot = time.monotonic(), 0
    try:
        while time.monotonic() - t0 < seconds:
            futs = [await prod.send(topic, v, partition=p) for p, v in city.slot_messages(slot)]
            await asyncio.gather(*futs)
            sent[0] += city.per_slot
            sent[1] = slot
            slot += 1
            ahead = sent[0] / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
        for p in range(PARTS):  # close the last slot everywhere
            await prod.send_and_wait(topic, orjson.dumps({"watermark": int(O + (slot + 1) * S)}), partition=p)
    finally:
        await prod.stop()


def sampler(w: WorkerProc, r: redis.Redis, app: str, sent: list, every: float, rows: list, stop_at: list) -> None:
    proc = psutil.Process(w.proc.pid)
    t0 = time.monotonic()
    while not stop_at:
        time.sleep(every)
        try:
            procs = [proc, *proc.children(recursive=True)]
            rss = sum(p.memory_info().rss for p in procs)
            fds = sum(p.num_fds() for p in procs)
        except psutil.NoSuchProcess:
            rows.append(("worker died",))
            return
        info = r.info("memory")
        assembled = int(r.get(Keys(app).assembled("A")) or -1)
        window = sum(1 for pat in ("cells:*", "act:*") for _ in r.scan_iter(match=f"{app}:*:{pat}", count=1000))
        # One MULTI: a slot assembled between two separate reads would count its flows but not its pending mark.
        with r.pipeline(transaction=True) as pipe:
            pipe.keys(f"{app}:A:flow:*")  # the soak's one city; a few hundred keys
            pipe.zcard(f"{app}:A:unpub")
            flow_keys, unpub = pipe.execute()
        outs = len(flow_keys)
        rows.append((time.monotonic() - t0, rss / 2**20, fds, info["used_memory"] / 2**20, r.dbsize(), window, outs,
                     unpub, sent[0], sent[1] - assembled))
        print("  t=%6.0fs rss=%7.1f MiB fds=%4d redis=%6.1f MiB keys=%6d window keys=%4d output slots=%4d "
              "unpublished=%3d produced=%9d slot gap=%d" % rows[-1], flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="pings per second")
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--per-slot", type=int, default=2000, help="pings per slot (event time moves rate/per_slot slots/s)")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--retain-slots", type=int, default=96, help="the worker's retain_slots")
    ap.add_argument("--forecaster", action="store_true", help="run the worker with a tiny flow forecaster")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    broker = start_broker(tmp)
    rds = start_redis(tmp / "r")
    topic, app = f"soak-{uuid.uuid4().hex[:8]}", f"soak{uuid.uuid4().hex[:6]}"
    w = None
    try:
        create_topic(broker.bootstrap, topic, PARTS)
        extra = ["--retain-slots", str(a.retain_slots)]
        if a.forecaster:
            from tests.stream.tiny_models import flow_checkpoint

            flow_checkpoint(tmp / "flow.pt")
            extra += ["--forecaster", str(tmp / "flow.pt")]
        w = WorkerProc(broker.bootstrap, rds.url, topic, app, PARTS, tmp / "worker.log", extra)
        r = redis.Redis.from_url(rds.url)
        city, sent, rows, done = City(a.users, a.per_slot), [0, 0], [], []
        import threading

        th = threading.Thread(target=sampler, args=(w, r, app, sent, a.sample, rows, done), daemon=True)
        print(f"soak: {a.minutes} min at {a.rate:.0f} pings/s, {a.users} users, {a.per_slot} pings/slot, "
              f"retain {a.retain_slots} slots, forecaster {'on' if a.forecaster else 'off'}; log {w.log}")
        th.start()
        asyncio.run(produce(broker.bootstrap, topic, city, a.rate, a.minutes * 60, sent))
        deadline = time.monotonic() + 300  # drain: the worker catches up with what was produced
        while time.monotonic() < deadline and int(r.get(Keys(app).assembled("A")) or -1) < sent[1]:
            time.sleep(1)
        # Pings are counted after their batch's slot closes and outputs are published: read the count once it
        # stops moving (reading it the moment the last slot is assembled undercounts the last batch).
        got, still = accepted(w.metrics_port), time.monotonic()
        while time.monotonic() < deadline and got < sent[0] and time.monotonic() - still < 10:
            time.sleep(0.5)
            now = accepted(w.metrics_port)
            got, still = now, (time.monotonic() if now != got else still)
        done.append(True)
        th.join()
        dead = metric(w.metrics_port, "mobstream_dead_letters_total")
        report(a, rows, sent, got, dead, int(r.get(Keys(app).assembled("A")) or -1))
        bad = [ln for ln in w.tail(10**7).splitlines() if re.search(r"ERROR|WARNING|Traceback|Error", ln)]
        if bad:
            print(f"\nworker log: {len(bad)} warning/error lines; last ones:\n" + "\n".join(bad[-15:]))
        r.close()
    finally:
        if w is not None:
            w.stop(signal.SIGTERM)
        stop(rds)
        stop(broker)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(a, rows, sent, got, dead, assembled) -> None:
    rows = [x for x in rows if len(x) > 1]
    warm_t = max(120.0, a.minutes * 60 / 4)
    warm = [x for x in rows if x[0] <= warm_t] or rows[:1]
    after = [x for x in rows if x[0] > warm_t] or rows[-1:]
    rss0, rss1 = warm[-1][1], max(x[1] for x in after)
    mem0, mem1 = max(x[3] for x in warm), after[-1][3]
    fd0, fd1 = warm[-1][2], max(x[2] for x in after)
    print(f"\nsoak table ({platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}); "
          f"{a.minutes} min at {a.rate:.0f} pings/s target")
    print("| t (s) | worker RSS (MiB) | open fds | Redis used (MiB) | Redis keys | window keys | output slots "
          "| unpublished | pings produced | slot gap |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    step = max(1, len(rows) // 20)
    for x in rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else []):
        print("| %.0f | %.1f | %d | %.1f | %d | %d | %d | %d | %d | %d |" % x)
    elapsed = rows[-1][0] if rows else 0.0
    print(f"\nproduced {sent[0]} pings over {sent[1] + 1} slots ({sent[0] / max(elapsed, 1):.0f} pings/s achieved); "
          f"worker accepted {got:.0f}, dead letters {dead:.0f}; assembled up to slot {assembled}")
    checks = [
        (f"RSS growth after warm-up {100 * (rss1 - rss0) / rss0:+.1f} % ({rss0:.1f} -> max {rss1:.1f} MiB)",
         rss1 <= 1.10 * rss0),
        (f"Redis memory {mem0:.1f} MiB at warm-up max -> {mem1:.1f} MiB at the end", mem1 <= 1.1 * mem0),
        # A slot's flows exist from its assembly; the oldest are trimmed once it is published: count those apart.
        (f"output slots: max {max(x[6] - x[7] for x in after)} published after warm-up (retain {a.retain_slots}), "
         f"max {max(x[6] for x in after)} with those awaiting publication", max(x[6] - x[7] for x in after) <= a.retain_slots),
        (f"window-state keys (cells:, act:) {max(x[5] for x in warm)} at warm-up max -> max {max(x[5] for x in after)}",
         max(x[5] for x in after) <= max(x[5] for x in warm) + 8),
        (f"open fds {fd0} after warm-up -> max {fd1}", fd1 <= fd0 + 5),
        (f"pings lost: {sent[0] - got:.0f} (produced {sent[0]}, accepted {got:.0f})", got == sent[0]),
    ]
    for what, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")


if __name__ == "__main__":
    sys.exit(main())
