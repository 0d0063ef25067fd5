"""Repartitioning cost: one worker on single-ping messages from an unkeyed producer against the same pings
keyed by uid on their murmur2 owner partition (what `mobstream replay --single` sends), in one run.

    .venv/bin/python bench/bench_repartition.py [--pings 20000] [--repeat 1]

Unkeyed pings land on a random partition, so with 4 partitions about 3 in 4 are forwarded to their
owner through the repartition topic and read a second time. Prints pings/s and worker + redis-server
CPU per ping of both, their ratio (goal: unkeyed >= 0.5 x keyed), and the machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import PARTITIONS, machine, services, time_worker, workload  # noqa: E402
from bench.scratch import scratch  # noqa: E402
from models.slots import replay_ts  # noqa: E402
from stream.replay import ReplaySettings, replay  # noqa: E402
from stream.services import create_topic  # noqa: E402


def produce_unkeyed(bootstrap: str, topic: str, df, seed: int = 0) -> int:
    """The workload as unkeyed single-ping messages on random partitions, in event-time order, then a
    closing watermark to every partition (as the replay sends). Returns the pings sent."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    rng = random.Random(seed)
    ts = replay_ts(df.d.to_numpy(), df.t.to_numpy(), df.uid.to_numpy())
    order = ts.argsort(kind="stable")
    uid, x, y = df.uid.to_numpy(), df.x.to_numpy(), df.y.to_numpy()
    for i in order.tolist():
        value = orjson.dumps({"uid": int(uid[i]), "ts": float(ts[i]), "x": int(x[i]), "y": int(y[i])})
        while True:
            try:
                p.produce(topic, value, partition=rng.randrange(PARTITIONS))
                break
            except BufferError:
                p.poll(0.05)
    end = orjson.dumps({"watermark": float(ts.max()) + 3600.0})
    for q in range(PARTITIONS):
        p.produce(topic, end, partition=q)
    assert p.flush(60) == 0
    return len(df)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    with scratch("bench-repartition-") as tmp:
        svc, bootstrap, redis_url = services(tmp / "svc")
        try:
            print(f"machine: {machine()}; {PARTITIONS} partitions, one worker; broker {bootstrap}")
            path = tmp / "pings.csv"
            df = workload(path, a.pings, seed=3)
            for _ in range(a.repeat):
                keyed = f"bench-keyed-{uuid.uuid4().hex[:6]}"
                rep = replay(ReplaySettings(path, bootstrap, keyed, PARTITIONS, single=True, progress=False))
                unkeyed = f"bench-unkeyed-{uuid.uuid4().hex[:6]}"
                create_topic(bootstrap, unkeyed, PARTITIONS)
                n = produce_unkeyed(bootstrap, unkeyed, df)
                rates = {}
                for label, topic, expect in (("keyed (murmur2, owner partition)", keyed, rep.pings),
                                             ("unkeyed (random partition)", unkeyed, n)):
                    secs, cpu = time_worker(bootstrap, redis_url, topic, expect, tmp / f"{topic}.log")
                    rates[label] = expect / secs
                    w_us, r_us = 1e6 * cpu / expect
                    print(f"{label:34s} {expect:>8,d} pings: {expect / secs:>9,.0f} pings/s wall, CPU worker "
                          f"{w_us:.1f} + redis {r_us:.1f} us/ping", flush=True)
                k, u = rates.values()
                print(f"unkeyed / keyed: {u / k:.2f} (goal >= 0.5)", flush=True)
        finally:
            if svc is not None:
                svc.stop()


if __name__ == "__main__":
    main()
