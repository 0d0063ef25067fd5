"""Fault-injection runner: injects each fault N times against a real broker, redis-server and worker, and prints
the reliability table (fault, times injected, what was lost, the command that reproduces it).

    .venv/bin/python bench/bench_faults.py [--kills 5] [--sigterms 5] [--redis-restarts 3] [--redis-kills 2]
                                           [--fuzz 2000] [--publish-crashes 5] [--output-kills 3]

Each row runs the same code as its test in tests/integration/test_reliability_*.py; "lost" compares the
final Redis flows with the offline truth (models.flows) and the DLQ with the expected reasons; for the
output rows, the forecast and embedding records on the topics (read by confluent-kafka) with what was published.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from stream.services import create_topic, start_broker, start_redis, stop  # noqa: E402


def publish_crashes(url: str, n: int) -> list:
    """The in-process crash test at slots 0, 1, 2, ...: every slot published once, in order, none skipped."""
    import asyncio

    import redis.asyncio as aioredis

    from tests.integration.test_reliability_crash import run_with_crash

    async def one(at: int):
        r = aioredis.Redis.from_url(url)
        try:
            await r.flushdb()
            seen, crashed = await run_with_crash(r, "on_assembled", crash_at=at)
        finally:
            await r.aclose()
        assert crashed == [at] and seen["on_assembled"] == list(range(5)), (at, seen)
        return seen["on_assembled"]
    return [asyncio.run(one(i % 5)) for i in range(n)]


def output_kill(outs, broker, url: str, make_topic, d: Path, slot: int) -> dict:
    r = redis.Redis.from_url(url)
    try:
        return outs.kill_9_when_published(broker, url, r, outs.prepare(broker, make_topic, d), d, slot=slot)
    finally:
        r.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--sigterms", type=int, default=5)
    ap.add_argument("--redis-restarts", type=int, default=3)
    ap.add_argument("--redis-kills", type=int, default=2, help="redis-server SIGKILLs with appendfsync always")
    ap.add_argument("--fuzz", type=int, default=2000, help="fuzzed messages through a real worker")
    ap.add_argument("--publish-crashes", type=int, default=5, help="crashes between assembly and forecast publication")
    ap.add_argument("--output-kills", type=int, default=3, help="worker kill -9 the instant a slot is published")
    a = ap.parse_args()
    from tests.integration import test_reliability_crash as crash
    from tests.integration import test_reliability_fuzz as fuzz
    from tests.integration import test_reliability_outputs as outs
    from tests.integration import test_reliability_redis as rds
    from tests.integration import test_reliability_shutdown as term

    tmp = Path(tempfile.mkdtemp(prefix="faults-"))
    broker = start_broker(tmp / "b")
    redis_svc = start_redis(tmp / "r")

    def make_topic(partitions: int = 4, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        create_topic(broker.bootstrap, name, partitions)
        return name

    def workdir(name: str) -> Path:
        d = tmp / name
        d.mkdir()
        return d

    rows = []

    def row(fault: str, n: int, command: str, run) -> None:
        if n <= 0:
            return
        t0 = time.monotonic()
        try:
            detail = run()
            lost = "nothing"
        except Exception as exc:  # a failed check is a row of the table, not the end of the run
            detail = traceback.format_exception_only(exc)[-1].strip().splitlines()[0][:160]
            lost = "SEE NOTE: " + detail
        rows.append((fault, n, lost, f"{time.monotonic() - t0:.0f}", command))
        print(f"  {fault}: injected {n}, lost {lost} ({detail})", flush=True)

    try:
        url = redis_svc.url
        row("kill -9 of the worker at random points of a replay", a.kills,
            f"bench/bench_faults.py --kills {a.kills}  (test: test_reliability_crash.py -m slow)",
            lambda: crash.replay_with_kills(broker, url, make_topic, workdir("kill"), kills=a.kills, seed=4, days=8))
        row("SIGTERM of a busy worker, then restart", a.sigterms,
            f"bench/bench_faults.py --sigterms {a.sigterms}  (test: test_reliability_shutdown.py -m slow)",
            lambda: {"stop_seconds": [round(t, 2) for t in term.sigterm_restarts(
                broker, url, make_topic, workdir("term"), stops=a.sigterms, seed=32, days=term.MANY_STOPS_DAYS)]})
        if a.fuzz:
            row("fuzzed messages (bad and valid pings mixed) through a worker", a.fuzz,
                f"bench/bench_faults.py --fuzz {a.fuzz}  (test: test_reliability_fuzz.py -m slow)",
                lambda: fuzz.fuzz_through_worker(broker, url, make_topic, workdir("fuzz"), a.fuzz, seed=2))
        d = workdir("redis")
        holder = rds.aof_holder(d)
        try:
            row("redis-server restart (AOF on) mid-stream", a.redis_restarts,
                f"bench/bench_faults.py --redis-restarts {a.redis_restarts}  (test: test_reliability_redis.py)",
                lambda: rds.redis_restarts(broker, make_topic, d, holder, restarts=a.redis_restarts, down_s=3.0))
        finally:
            stop(holder["svc"])
        if a.redis_kills:
            d = workdir("redis-kill")
            holder = rds.aof_holder(d, fsync="always")
            try:
                row("redis-server kill -9 (AOF, appendfsync always) mid-stream", a.redis_kills,
                    f"bench/bench_faults.py --redis-kills {a.redis_kills}  (test: test_reliability_redis.py -m slow -k killed)",
                    lambda: rds.redis_restarts(broker, make_topic, d, holder, restarts=a.redis_kills, down_s=1.0, kill=True))
            finally:
                stop(holder["svc"])
        row("crash between a slot's assembly and its forecast publication (at each slot 0-4 in turn)", a.publish_crashes,
            f"bench/bench_faults.py --publish-crashes {a.publish_crashes}  (test: test_reliability_crash.py -k forecast)",
            lambda: publish_crashes(url, a.publish_crashes))
        row("kill -9 of the worker the instant a slot is recorded published (outputs read from the topics)", a.output_kills,
            f"bench/bench_faults.py --output-kills {a.output_kills}  (test: test_reliability_outputs.py)",
            lambda: [output_kill(outs, broker, url, make_topic, workdir(f"out{i}"), slot=2 + i % 5)
                     for i in range(a.output_kills)])
    finally:
        stop(redis_svc)
        stop(broker)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nreliability table ({platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print("| fault | injected | lost | seconds | reproduce |")
    print("|---|---:|---|---:|---|")
    for r in rows:
        print("| %s | %d | %s | %s | `%s` |" % r)
    return 0 if all(r[2] == "nothing" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
