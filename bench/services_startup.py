"""Embedded services timings: start-to-healthy of Tansu and redis-server, and consumer-group join on Tansu.

    .venv/bin/python bench/services_startup.py [--repeat 10] [--skip-groups]

Start-to-healthy is the whole start_broker()/start_redis() call (spawn, then polling until the
process itself listens and answers a Kafka metadata round trip / PING), beside the baseline of
running the same binary with --version (exec and exit, no server), measured in the same run.
Group join is the time from AIOKafkaConsumer.start() (subscribed) until it holds partitions, with
aiokafka's default timeouts and with short ones (session 6 s, heartbeat 2 s, rebalance 6 s):
  first      the first member of a fresh group
  second     a second member joining a group that has one live member (until both hold partitions)
  after-kill a member joining a group whose only member was SIGKILLed (no LeaveGroup sent)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psutil

from stream.services import create_topic, start_broker, start_redis, stop
from stream.services.broker import broker_binary
from stream.services.redis_server import redis_binary

SHORT = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000, "rebalance_timeout_ms": 6000}


def _median_line(label: str, xs: list[float], base: list[float] | None = None, base_label: str = "") -> str:
    line = f"{label:34s} median {statistics.median(xs) * 1000:8.1f} ms  (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f}, n={len(xs)})"
    if base:
        b = statistics.median(base)
        line += f"  | baseline {base_label} {b * 1000:.1f} ms, ratio {statistics.median(xs) / b:.1f}x"
    return line


def _exec_times(argv: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t)
    return out


def _start_times(start, state_dir: Path, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        service = start(state_dir)
        out.append(time.perf_counter() - t)
        stop(service)
    return out


async def _start_and_wait(consumer, timeout: float = 120.0) -> float:
    """Seconds from start() (aiokafka's start() itself waits for the first join) to holding partitions."""
    t = time.perf_counter()
    await consumer.start()
    while not consumer.assignment():
        if time.perf_counter() - t > timeout:
            raise TimeoutError("group join took longer than the bench allows")
        await asyncio.sleep(0.01)
    return time.perf_counter() - t


def _consumer(bootstrap: str, topic: str, group: str, extra: dict):
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, **extra)


async def _join_first_and_second(bootstrap: str, topic: str, extra: dict) -> tuple[float, float]:
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = _consumer(bootstrap, topic, group, extra)
    first = await _start_and_wait(a)
    b = _consumer(bootstrap, topic, group, extra)
    t = time.perf_counter()
    await b.start()
    # Both must hold a share: the first member has to rejoin before the second gets anything.
    while not (b.assignment() and a.assignment() and len(a.assignment()) < 4):
        if time.perf_counter() - t > 120:
            raise TimeoutError("second member never got partitions")
        await asyncio.sleep(0.01)
    second = time.perf_counter() - t
    await b.stop()
    await a.stop()
    return first, second


def _killed_member(bootstrap: str, topic: str, group: str, extra: dict) -> None:
    """Run a member in a child process until it holds partitions, then SIGKILL it (no LeaveGroup)."""
    code = textwrap.dedent(f"""
        import asyncio, sys
        from aiokafka import AIOKafkaConsumer
        async def main():
            c = AIOKafkaConsumer({topic!r}, bootstrap_servers={bootstrap!r}, group_id={group!r}, **{extra!r})
            await c.start()
            while not c.assignment():
                await asyncio.sleep(0.01)
            print("assigned", flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "assigned"
    finally:
        child.kill()
        child.wait()


async def _join_after_kill(bootstrap: str, topic: str, extra: dict) -> float:
    group = f"g-{uuid.uuid4().hex[:8]}"
    _killed_member(bootstrap, topic, group, extra)
    c = _consumer(bootstrap, topic, group, extra)
    took = await _start_and_wait(c)
    await c.stop()
    return took


def bench_groups(bootstrap: str, repeat: int) -> None:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 4)
    for label, extra in (("aiokafka defaults", {}), ("short (6 s)", SHORT)):
        firsts, seconds, kills = [], [], []
        for _ in range(repeat):
            f, s = asyncio.run(_join_first_and_second(bootstrap, topic, extra))
            firsts.append(f)
            seconds.append(s)
        for _ in range(max(1, repeat // 3)):
            kills.append(asyncio.run(_join_after_kill(bootstrap, topic, extra)))
        print(_median_line(f"group join first, {label}", firsts))
        print(_median_line(f"group join second, {label}", seconds))
        print(_median_line(f"group join after-kill, {label}", kills))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--skip-groups", action="store_true")
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {psutil.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="mobstream-bench-") as tmp:
        state = Path(tmp)
        tansu, redis = broker_binary(), redis_binary()
        print(_median_line("broker start-to-healthy", _start_times(start_broker, state, args.repeat),
                           _exec_times([tansu, "--version"], args.repeat), "`tansu --version`"))
        print(_median_line("redis start-to-healthy", _start_times(start_redis, state, args.repeat),
                           _exec_times([redis, "--version"], args.repeat), "`redis-server --version`"))
        if not args.skip_groups:
            broker = start_broker(state)
            try:
                bench_groups(broker.bootstrap, max(3, args.repeat // 3))
            finally:
                stop(broker)


if __name__ == "__main__":
    main()
