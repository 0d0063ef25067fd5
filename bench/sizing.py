"""Sizing figures for docs/operations.md: one worker's pings/s and Redis memory per 100k users.

    .venv/bin/python bench/sizing.py [--file data/synth/cityA_challengedata.csv] [--days 2]

Starts one `mobstream worker` (the compose worker's command), then replays the first `--days`
days of a city with `mobstream replay` (the compose replay job's command) into its topic and
times the worker from its first processed ping until all are in Redis (its own Prometheus
counters, so group-join time is left out). Beside it, the baseline: the replay producer's own
rate in the same run. Then reads Redis INFO: used memory above the
empty server, per active user, scaled to 100k users. Two days are 96 slots: the window keys a
live worker keeps with the default 48 h TTL, so this is the steady state of real-time operation.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.services import EmbeddedServices, ServicesConfig, free_port  # noqa: E402

PARTITIONS = 4


def counter(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", type=Path, default=ROOT / "data/synth/cityA_challengedata.csv")
    ap.add_argument("--days", type=int, default=2)
    a = ap.parse_args()
    df = pd.read_csv(a.file, usecols=["uid", "d", "x"])
    df = df[(df.d < a.days) & (df.x != 999)]
    users = df.uid.nunique()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServices(ServicesConfig(state_dir=Path(tmp))) as svc:
        import redis

        r = redis.Redis.from_url(svc.redis.url)
        base = r.info("memory")["used_memory"]
        topic, app = f"size-{uuid.uuid4().hex[:8]}", f"size{uuid.uuid4().hex[:6]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOBSTREAM_")}
        env.update(MOBSTREAM_BOOTSTRAP=svc.broker.bootstrap, MOBSTREAM_REDIS_URL=svc.redis.url,
                   MOBSTREAM_PINGS_TOPIC=topic, MOBSTREAM_PARTITIONS=str(PARTITIONS), MOBSTREAM_PROGRESS="false",
                   MOBSTREAM_STATE_DIR=tmp)
        cli = [sys.executable, "-m", "mobstream.cli"]
        port = free_port()
        wenv = dict(env, MOBSTREAM_APP=app, MOBSTREAM_METRICS_PORT=str(port), MOBSTREAM_WEB_PORT=str(free_port()),
                    MOBSTREAM_DLQ_TOPIC=f"{topic}-dlq", MOBSTREAM_FORECASTS_TOPIC=f"{topic}-fc",
                    MOBSTREAM_EMBEDDINGS_TOPIC=f"{topic}-emb", MOBSTREAM_LOGLEVEL="warning")
        log = open(Path(tmp) / "worker.log", "wb")
        # The worker runs first and the replay feeds it live, as in production: a backlog of the
        # whole file makes single Redis calls slow enough to hit redis-py's 5 s socket timeout.
        worker = subprocess.Popen([*cli, "worker"], env=wenv, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        while True:
            try:
                counter(port, "mobstream_pings_total")
                break
            except OSError:
                if worker.poll() is not None:
                    raise SystemExit((Path(tmp) / "worker.log").read_text()[-2000:])
                time.sleep(0.2)
        time.sleep(8)  # group join (session timeout 6 s)
        replayer = subprocess.Popen([*cli, "replay", str(a.file), "--first-day", "0", "--last-day", str(a.days - 1)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        out = replayer.communicate()[0]
        pings = int(re.search(r"replayed (\d+) pings", out).group(1))
        replay_rate = float(re.search(r"\(([0-9,]+) pings/s\)", out).group(1).replace(",", ""))
        try:
            first = done = None
            last, moved = 0.0, time.perf_counter()
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and worker.poll() is None:
                try:
                    n = counter(port, "mobstream_pings_total")
                except OSError:
                    n = 0.0
                now = time.perf_counter()
                if n > 0 and first is None:
                    first = (now, n)
                if n >= pings:
                    done = now
                    break
                if n > last:
                    last, moved = n, now
                elif first is not None and now - moved > 60:
                    break  # the agent stalled (its log says why)
                time.sleep(0.1)
            if done is None:
                tail = (Path(tmp) / "worker.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"worker stopped at {last:.0f} of {pings} pings:\n{tail}")
            time.sleep(2)  # let the last slot close and assemble
            rss = __import__("psutil").Process(worker.pid).memory_info().rss
        finally:
            os.killpg(worker.pid, 15)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait(10)
            log.close()
        mem = r.info("memory")["used_memory"] - base
        keys = r.dbsize()
        rate = (pings - first[1]) / (done - first[0])
        print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}")
        print(f"input: {a.file.name}, days 0..{a.days - 1}: {pings} pings, {users} active users")
        print(f"worker (1 process, {PARTITIONS} partitions, fed live): {rate:,.0f} pings/s while busy; baseline: "
              f"the replay producer {replay_rate:,.0f} pings/s in the same run; ratio {rate / replay_rate:.2f}")
        print(f"worker RSS after the run: {rss / 2**20:.0f} MiB")
        print(f"redis: {mem / 2**20:.1f} MiB above the empty server in {keys} keys = {mem / users:,.0f} B per user "
              f"-> {mem / users * 100_000 / 2**30:.2f} GiB per 100k users")


if __name__ == "__main__":
    main()
