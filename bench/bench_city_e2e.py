"""A whole synthetic city replayed end to end: pings -> worker -> windows, forecasts and embeddings at every slot.

    .venv/bin/python bench/bench_city_e2e.py [--users 100000] [--days 75] [--replay-days 75]
        [--forecaster runs/flow/flow_lstm.pt] [--embedder runs/encoder/encoder.pt] [--partitions 4] [--workers 1] [--torch-threads 1]
        [--ingest-workers I --infer-workers J] [--no-models]

Generates the city with `mobstream generate` (cached under data/bench/), starts its own broker and
redis-server, `--workers` `mobstream worker`s of both roles in one consumer group (one by default), or
`--ingest-workers` I `--role ingest` and `--infer-workers` J `--role infer` workers, with both checkpoints
(none with --no-models: the baseline of ingest alone) and the worker's default retention (96 slots), then
times `mobstream replay --speed 0` of the first `--replay-days` days and the workers until the replay's last
slot is assembled, its forecasts and live error are in Redis and every embedding work item is done. Prints
the total wall time, the replay's own rate (the baseline: how fast the pings reach Kafka), the workers' share
of wall time in each model (from their Prometheus histograms), the ingest workers' longest event-loop pause
and ingest latency p99 (from the histograms' buckets), and, when fewer than `--days` days were replayed,
the linear extrapolation to `--days`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import machine  # noqa: E402
from bench.scratch import scratch  # noqa: E402
from mobstream.demo import mobstream_argv as mobstream  # noqa: E402
from stream.keys import Keys  # noqa: E402
from tests.integration.worker_proc import WorkerProc, unless_busy, wait_assembled  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def scrape(workers: list[WorkerProc]) -> dict[tuple[str, str], float]:
    """The workers' samples summed as {(name, label value or ''): value} (histogram sums and counts included)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, str], float] = {}
    for w in workers:
        for fam in text_string_to_metric_families(w.metrics()):
            for s in fam.samples:
                key = (s.name, next(iter(s.labels.values()), ""))
                out[key] = out.get(key, 0.0) + s.value
    return out


def city(users: int, days: int) -> Path:
    out = ROOT / "data" / "bench" / f"city-{users}x{days}"
    data = out / "cityA_challengedata.csv"
    if not data.exists():
        t0 = time.perf_counter()
        subprocess.run(mobstream("generate", "--users", str(users), "--days", str(days), "--cities", "A",
                                 "--out", str(out)), check=True)
        print(f"generated {data} in {time.perf_counter() - t0:.0f} s")
    return data


def bucket_bound(m: dict, name: str, q: float) -> float:
    """The upper bound of the histogram bucket holding quantile q (1.0: the largest observation's bucket)."""
    buckets = sorted((float(le), v) for (n, le), v in m.items() if n == f"{name}_bucket")
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, v in buckets if total and v >= q * total), float("nan"))


def wait_done(redis_url: str, r, app: str, last: int, workers: list[WorkerProc], timeout: float) -> None:
    """Until the slot is assembled (every partition closed it), its live error (and forecasts) are in Redis and
    no embedding work is left (its windows are deleted when done)."""
    deadline = time.monotonic() + timeout
    wait_assembled(redis_url, app, last, workers, timeout)

    def done() -> bool:
        return bool(r.hexists(Keys(app).errors("A"), str(last))) and not next(r.scan_iter(match=f"{app}:*:win:*"), None)
    while not unless_busy(done):
        dead = [w for w in workers if w.proc.poll() is not None]
        if time.monotonic() > deadline or dead:
            raise SystemExit(f"slot {last}: outputs not done after {timeout:.0f} s:\n{(dead or workers)[0].tail()}")
        time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--replay-days", type=int, default=None, help="replay only the first N days (default: all)")
    ap.add_argument("--forecaster", type=Path, default=ROOT / "runs" / "flow" / "flow_lstm.pt")
    ap.add_argument("--embedder", type=Path, default=ROOT / "runs" / "encoder" / "encoder.pt")
    ap.add_argument("--data", type=Path, default=None,
                    help="an existing YJMob-format file of --users users (default: generate the city)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="workers of both roles (at most --partitions)")
    ap.add_argument("--ingest-workers", type=int, default=0, help="--role ingest workers (with --infer-workers: "
                    "instead of --workers)")
    ap.add_argument("--infer-workers", type=int, default=0, help="--role infer workers (at most --partitions)")
    ap.add_argument("--no-models", action="store_true", help="no checkpoints: ingest and the live error only")
    ap.add_argument("--torch-threads", type=int, default=1, help="each worker's --torch-threads (they share the cores)")
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    a = ap.parse_args()
    for p in () if a.no_models else (a.forecaster, a.embedder):
        if not p.exists():
            raise SystemExit(f"checkpoint {p} missing: train it first (mobstream train flow / train encoder)")
    days = min(a.replay_days or a.days, a.days)
    data = a.data or city(a.users, a.days)


    from stream.services import EmbeddedServices, ServicesConfig, create_topic

    with scratch("bench-e2e-") as tmp:
        svc = EmbeddedServices(ServicesConfig(tmp / "svc")).start()
        bootstrap, redis_url = svc.endpoints.bootstrap, svc.endpoints.redis_url
        topic, app = "e2e-pings", "e2e"
        workers: list[WorkerProc] = []
        try:
            create_topic(bootstrap, topic, a.partitions)
            roles = ["ingest"] * a.ingest_workers + ["infer"] * a.infer_workers or ["all"] * a.workers
            models = [] if a.no_models else ["--forecaster", str(a.forecaster), "--embedder", str(a.embedder)]
            for i, role in enumerate(roles):  # each in its own folder: log and Faust state
                (tmp / f"w{i}").mkdir()
                workers.append(WorkerProc(bootstrap, redis_url, topic, app, a.partitions, tmp / f"w{i}" / "worker.log",
                                          extra=[*models, "--role", role, "--torch-threads", str(a.torch_threads),
                                                 "--retain-slots", "96"]))
            ingesting = [w for w, role in zip(workers, roles) if role != "infer"]
            r = redis.Redis.from_url(redis_url, socket_timeout=60)
            r.config_set("slowlog-log-slower-than", 100_000)  # us: Redis commands over 100 ms are listed at the end
            r.config_set("slowlog-max-len", 1024)
            up_by = time.monotonic() + 120
            for w in workers:  # the workers' start (imports, checkpoints) is not part of the timed run
                while True:
                    try:
                        w.metrics()
                        break
                    except OSError:
                        if w.proc.poll() is not None or time.monotonic() > up_by:
                            raise SystemExit(f"worker did not start:\n{w.tail()}")
                        time.sleep(0.5)
            print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}; workers {' '.join(roles)}, "
                  f"{a.partitions} partitions, torch threads {a.torch_threads}")
            print(f"city {data}: {a.users:,d} users x {a.days} days; replaying days 0-{days - 1}")
            mi0 = scrape(ingesting)  # the loop's pauses while starting are not the run's
            t0 = time.perf_counter()
            env = dict(os.environ, MOBSTREAM_BOOTSTRAP=bootstrap)
            subprocess.run(mobstream("replay", str(data), "--pings-topic", topic, "--partitions", str(a.partitions),
                                     "--speed", "0", "--first-day", "0", "--last-day", str(days - 1), "--no-progress"),
                           check=True, env=env)
            replayed = time.perf_counter() - t0
            m0 = scrape(workers)
            wait_done(redis_url, r, app, days * 48 - 1, workers, a.timeout)
            total = time.perf_counter() - t0
            m = scrape(workers)
            pings = m.get(("mobstream_pings_total", "accepted"), 0.0)
            print(f"replay into Kafka: {replayed:,.0f} s ({pings / replayed:,.0f} pings/s)  [baseline: the pings' arrival]")
            print(f"end to end: {total:,.0f} s for {pings:,.0f} pings and {days * 48:,d} slots "
                  f"({pings / total:,.0f} pings/s; {total / replayed:.2f}x the replay)")
            for model in ("forecaster", "embedder"):
                s = m.get(("mobstream_inference_seconds_sum", model), 0.0)
                n = m.get(("mobstream_inference_seconds_count", model), 0.0)
                print(f"  {model}: {n:,.0f} calls, {s:,.0f} s in all ({100 * s / total / len(workers):.0f}% of the workers' wall time), "
                      f"{s / max(n, 1):.2f} s per call")
            mi = {k: v - mi0.get(k, 0.0) for k, v in scrape(ingesting).items()}
            print(f"  ingest workers: longest event-loop pause <= {1e3 * bucket_bound(mi, 'mobstream_event_loop_lag_seconds', 1):,.0f} ms "
                  f"(bucket bound; {mi.get(('mobstream_event_loop_lag_seconds_count', ''), 0) - mi.get(('mobstream_event_loop_lag_seconds_bucket', '0.1'), 0):,.0f} "
                  f"pauses > 100 ms); ingest latency p99 <= {bucket_bound(mi, 'mobstream_ingest_latency_seconds', 0.99):,.2f} s")
            print(f"  forecasts {m.get(('mobstream_forecasts_total', ''), 0):,.0f}, embeddings "
                  f"{m.get(('mobstream_embeddings_total', ''), 0):,.0f}; at replay end the worker had "
                  f"{m0.get(('mobstream_slots_assembled_total', ''), 0):,.0f} slots assembled")
            slow = r.slowlog_get(1024)
            if slow:
                print(f"  Redis commands over 100 ms: {len(slow)}; the slowest:")
                for e in sorted(slow, key=lambda e: -e["duration"])[:8]:
                    cmd = e["command"] if isinstance(e["command"], bytes) else str(e["command"]).encode()
                    print(f"    {e['duration'] / 1000:,.0f} ms  {cmd[:90].decode(errors='replace')}")
            if days < a.days:
                print(f"extrapolated to all {a.days} days: {total * a.days / days / 60:,.0f} min (linear in slots)")
            r.close()
        finally:
            for w in workers:
                w.stop()
            svc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
