"""Shutdown: SIGTERM stops a busy worker within 10 s with its offsets committed and no half-written state; a
restarted worker resumes where it stopped and the final flows equal the offline ones."""

from __future__ import annotations

import random
import re
import signal
import time
import uuid

import pytest
import redis

from models.slots import slot_from_dt
from stream.keys import Keys
from stream.replay import ReplaySettings, replay
from tests.integration.test_worker_flows import offline_flows, redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city

pytestmark = pytest.mark.integration
STOP_WITHIN = 10.0
# Days of the tiny city for five stops: every SIGTERM must land mid-replay, and since the ingest work
# a worker gets through an 8-day city (383 slots) within the five workers' lifetimes.
MANY_STOPS_DAYS = 30


def messages_read(w: WorkerProc) -> float:
    text = w.metrics()
    got = re.search(r"^mobstream_messages_total (\S+)$", text, re.M)
    return float(got.group(1)) if got else 0.0


def sigterm_restarts(broker, redis_url, make_topic, tmp_path, stops: int, seed: int, days: int = 3) -> list[float]:
    topic = make_topic(partitions=2)
    df = write_city(tmp_path / "c.csv", n_users=200, days=days, seed=seed)
    rep = replay(ReplaySettings(tmp_path / "c.csv", broker.bootstrap, topic, partitions=2, progress=False, batch_size=40))
    app = f"t{uuid.uuid4().hex[:8]}"
    last = int(slot_from_dt(df.d.max(), 47))
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(1, last - 4), stops))  # the assembled slot at which each SIGTERM comes
    r = redis.Redis.from_url(redis_url)
    took, read = [], []
    try:
        for i, target in enumerate(targets):
            # Small batches: progress comes in small steps, so the stop lands mid-stream near its target.
            w = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / f"w{i}.log", ["--batch-size", "2"])
            target = max(target, int(r.get(Keys(app).assembled("A")) or -1) + 1)  # this worker makes progress
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and int(r.get(Keys(app).assembled("A")) or -1) < target:
                time.sleep(0.003)
            assert int(r.get(Keys(app).assembled("A")) or -1) < last, "the replay ended before SIGTERM"
            read.append(messages_read(w))
            t0 = time.monotonic()
            w.proc.send_signal(signal.SIGTERM)  # the process only, as systemd or docker stop would
            try:
                w.proc.wait(STOP_WITHIN + 20)
            finally:
                took.append(time.monotonic() - t0)
                w.stop(signal.SIGKILL)
            assert "Traceback" not in w.tail(200_000), w.tail()
        w = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / "final.log")
        try:
            wait_assembled(redis_url, app, last, w, timeout=120)
            final_read = messages_read(w)
        finally:
            w.stop()
    finally:
        r.close()
    assert max(took) < STOP_WITHIN, took
    # Resumed from committed offsets: the last worker did not read the topic from the start again.
    assert final_read < rep.messages, (final_read, rep.messages, read)
    assert redis_flows(redis_url, app, "A", range(last + 1)) == offline_flows(df)
    return took


def test_sigterm_stops_a_busy_worker_fast_and_restart_resumes(broker, redis_url, redis_client, make_topic, tmp_path):
    sigterm_restarts(broker, redis_url, make_topic, tmp_path, stops=1, seed=31)


@pytest.mark.slow
def test_sigterm_five_times(broker, redis_url, redis_client, make_topic, tmp_path):
    took = sigterm_restarts(broker, redis_url, make_topic, tmp_path, stops=5, seed=32, days=MANY_STOPS_DAYS)
    print("SIGTERM to exit, seconds:", [round(t, 2) for t in took])
