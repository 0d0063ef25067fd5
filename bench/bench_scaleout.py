"""Scale-out: W workers of one consumer group x S Redis shards, aggregate ingest and Redis CPU per ping.

    .venv/bin/python bench/bench_scaleout.py [--workers 1,2,4,8] [--shards 1,3] [--pings 2000000]
        [--partitions 8] [--single]

Starts one broker, replays a synthetic workload once (batch messages, or one ping per message with
--single) into a topic of --partitions partitions, then for every S in --shards starts one redis-server
(S = 1) or an S-master Redis Cluster (`services up --redis-shards S`), and for every W in --workers runs W
`mobstream worker`s as a fresh consumer group (a new app id: same topic, new Redis namespace) until
every ping is counted. Prints per (W, S): aggregate pings/s between 25 % and 90 % of the pings counted
(group joins and the drained tail left out),
worker CPU and redis-server CPU (summed over the shards) in microseconds per ping, and the scaling
ratio against W = 1 on the same shards in the same run (the baseline), with the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import counter, machine, workload  # noqa: E402
from bench.scratch import scratch  # noqa: E402
from stream.replay import ReplaySettings, replay  # noqa: E402
from tests.integration.worker_proc import WorkerProc  # noqa: E402


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def run(bootstrap: str, redis_url: str, cluster: bool, redis_pids: list[int], topic: str, partitions: int,
        workers: int, expect: int, tmp: Path, timeout: float = 600) -> tuple[float, float, float]:
    """(pings/s, worker CPU us/ping, redis CPU us/ping) of `workers` workers reading the whole topic."""
    app = f"s{uuid.uuid4().hex[:8]}"
    procs = [WorkerProc(bootstrap, redis_url, topic, app, partitions, tmp / f"{app}-{i}.log",
                        ["--loglevel", "warning", "--batch-wait", "0.05"], cluster=cluster) for i in range(workers)]
    try:
        t_first = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = 0.0
            for w in procs:
                try:
                    n += counter(w.metrics_port, "mobstream_pings_total")
                except OSError:
                    pass
            now = time.perf_counter()
            # The steady part: from a quarter of the pings (every worker has joined the group by then) to 90 %.
            if n >= 0.25 * expect and t_first is None:
                t_first, n_first = now, n
                c_first = np.array([cpu([w.proc.pid for w in procs]), cpu(redis_pids)])
            if n >= 0.9 * expect and t_first is not None:
                done = n - n_first
                c = (np.array([cpu([w.proc.pid for w in procs]), cpu(redis_pids)]) - c_first) / max(1, done)
                return done / (now - t_first), 1e6 * c[0], 1e6 * c[1]
            for w in procs:
                if w.proc.poll() is not None:
                    raise SystemExit(f"worker exited:\n{w.tail()}")
            time.sleep(0.02)
        raise SystemExit(f"{workers} workers did not finish in {timeout} s:\n{procs[0].tail()}")
    finally:
        for w in procs:
            w.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--shards", default="1,3")
    ap.add_argument("--pings", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--single", action="store_true", help="one ping per Kafka message (keyed by uid)")
    a = ap.parse_args()
    from stream.services import start_broker, start_redis, stop
    from stream.services.redis_cluster import start_redis_cluster

    with scratch("bench-scaleout-") as tmp:
        broker = start_broker(tmp / "svc")
        try:
            path = tmp / "pings.csv"
            workload(path, a.pings, days=a.days)
            topic = f"bench-scale-{uuid.uuid4().hex[:6]}"
            rep = replay(ReplaySettings(path, broker.bootstrap, topic, a.partitions, single=a.single, progress=False))
            print(f"machine: {machine()}; {rep.pings:,d} pings in {rep.messages:,d} "
                  f"{'single-ping' if a.single else 'batch'} messages on {a.partitions} partitions; broker {broker.bootstrap}")
            for shards in map(int, a.shards.split(",")):
                nodes = ([start_redis(tmp / f"r{shards}")] if shards == 1
                         else start_redis_cluster(tmp / f"r{shards}", shards))
                try:
                    base = None
                    for workers in map(int, a.workers.split(",")):
                        rate, w_us, r_us = run(broker.bootstrap, nodes[0].url, shards > 1, [n.pid for n in nodes],
                                               topic, a.partitions, workers, rep.pings, tmp)
                        base = base or rate / workers
                        print(f"workers {workers} x redis shards {shards}: {rate:>10,.0f} pings/s aggregate "
                              f"({rate / (workers * base):.2f} x {workers} x one worker) | CPU per ping: workers "
                              f"{w_us:.2f} us, redis-server {r_us:.2f} us (summed over shards)", flush=True)
                finally:
                    for n in nodes:
                        stop(n)
        finally:
            stop(broker)


if __name__ == "__main__":
    main()
