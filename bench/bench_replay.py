"""Replay into Kafka: `mobstream replay` throughput (batch messages and --single) beside a raw producer.

    .venv/bin/python bench/bench_replay.py [--pings 500000] [--repeat 3]

Baseline, in the same run on the same broker: the aiokafka producer sending pre-encoded single-ping
messages, awaited per message and gathered in batches (the design notes measured ~32,000 msgs/s),
plus the raw aiokafka consume + decode ceiling of the replayed topic. Prints pings/s, the baselines,
the ratios and the machine. Uses MOBSTREAM_BOOTSTRAP when set, else starts its own services.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import scratch  # noqa: E402
from bench_ingest import PARTITIONS, machine, raw_ceiling, services, workload  # noqa: E402
from stream.replay import ReplaySettings, replay  # noqa: E402


async def raw_producer(bootstrap: str, topic: str, values: list[bytes], gather: int = 1000) -> float:
    """Pre-encoded messages, keyed, sent with send() and gathered every `gather` messages: msgs/s."""
    from aiokafka import AIOKafkaProducer

    from stream.services import create_topic_async

    await create_topic_async(bootstrap, topic, PARTITIONS)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await p.start()
    try:
        t0 = time.perf_counter()
        pending = []
        for i, v in enumerate(values):
            pending.append(await p.send(topic, v, key=str(i).encode()))
            if len(pending) >= gather:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return len(values) / (time.perf_counter() - t0)
    finally:
        await p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=500_000)
    ap.add_argument("--single-pings", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with scratch("bench-replay-") as tmp:
        svc, bootstrap, _ = services(tmp / "svc")
        try:
            print(f"machine: {machine()}; {PARTITIONS} partitions; broker {bootstrap}")
            big, small = tmp / "big.csv", tmp / "small.csv"
            df = workload(big, a.pings)
            workload(small, a.single_pings, seed=2)
            values = [orjson.dumps({"uid": int(u), "ts": 1767571200 + i, "x": int(x), "y": int(y)})
                      for i, (u, x, y) in enumerate(zip(df.uid[:a.single_pings], df.x[:a.single_pings], df.y[:a.single_pings]))]
            rates = {"batch": [], "single": [], "raw": []}
            for _ in range(a.repeat):
                topic = f"rb-{uuid.uuid4().hex[:6]}"
                rep = replay(ReplaySettings(big, bootstrap, topic, PARTITIONS, progress=False))
                rates["batch"].append(rep.rate)
                rep1 = replay(ReplaySettings(small, bootstrap, f"rs-{uuid.uuid4().hex[:6]}", PARTITIONS, single=True,
                                             progress=False))
                rates["single"].append(rep1.rate)
                rates["raw"].append(asyncio.run(raw_producer(bootstrap, f"rp-{uuid.uuid4().hex[:6]}", values)))
                print(f"  run: batch {rep.rate:,.0f} pings/s ({rep.pings:,} pings, {rep.messages:,} msgs, "
                      f"{rep.seconds:.2f} s); single {rep1.rate:,.0f} pings/s; raw producer {rates['raw'][-1]:,.0f} msgs/s",
                      flush=True)
            _, raw_msgs, raw_pings = asyncio.run(raw_ceiling(bootstrap, topic, rep.messages))
            med = {k: statistics.median(v) for k, v in rates.items()}
            print(f"replay, batch messages   median {med['batch']:>10,.0f} pings/s  (target >= 100,000)")
            print(f"replay, --single         median {med['single']:>10,.0f} pings/s")
            print(f"baseline raw aiokafka producer, single pre-encoded msgs, gathered: {med['raw']:>10,.0f} msgs/s")
            print(f"ratio batch replay / raw producer: {med['batch'] / med['raw']:.2f}; "
                  f"single replay / raw producer: {med['single'] / med['raw']:.2f}")
            print(f"consume ceiling of the replayed topic (aiokafka + orjson): {raw_msgs:,.0f} msgs/s = {raw_pings:,.0f} pings/s")
        finally:
            if svc is not None:
                svc.stop()


if __name__ == "__main__":
    main()
