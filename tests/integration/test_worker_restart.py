"""Crash and scale-out against the real broker and Redis: kill -9 mid-stream and two workers both give
exactly the offline flows."""

from __future__ import annotations

import signal
import time
import uuid

import pytest
import redis

from models.slots import slot_from_dt
from stream.replay import ReplaySettings, replay
from tests.integration.test_worker_flows import offline_flows, redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city
from stream.keys import Keys

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("single", [False, True], ids=["batch-messages", "single-ping-messages"])
def test_kill_9_and_restart_leaves_exact_flows(broker, redis_url, redis_client, make_topic, tmp_path, single):
    topic = make_topic(partitions=2)
    df = write_city(tmp_path / "c.csv", n_users=150, days=3, seed=11)
    replay(ReplaySettings(tmp_path / "c.csv", broker.bootstrap, topic, partitions=2, progress=False, batch_size=50,
                          single=single))
    app = f"t{uuid.uuid4().hex[:8]}"
    last = int(slot_from_dt(df.d.max(), 47))
    w = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / "w1.log", ["--batch-size", "2"])
    r = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and int(r.get(Keys(app).assembled("A")) or -1) < 20:
            time.sleep(0.003)
        w.stop(signal.SIGKILL)  # mid-stream: offsets since the last commit are redelivered
        assert int(r.get(Keys(app).assembled("A")) or -1) < last
        w2 = WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / "w2.log")
        try:
            wait_assembled(redis_url, app, last, w2)
        finally:
            w2.stop()
    finally:
        r.close()
    assert redis_flows(redis_url, app, "A", range(last + 1)) == offline_flows(df)


def test_two_workers_equal_one(broker, any_redis, make_topic, tmp_path):
    redis_url, cluster = any_redis
    topic = make_topic(partitions=2)
    df = write_city(tmp_path / "c.csv", n_users=100, days=2, seed=5)
    replay(ReplaySettings(tmp_path / "c.csv", broker.bootstrap, topic, partitions=2, progress=False))
    app = f"t{uuid.uuid4().hex[:8]}"
    last = int(slot_from_dt(df.d.max(), 47))
    ws = [WorkerProc(broker.bootstrap, redis_url, topic, app, 2, tmp_path / f"w{i}.log", cluster=cluster) for i in range(2)]
    try:
        wait_assembled(redis_url, app, last, ws, timeout=150, cluster=cluster)
    finally:
        for w in ws:
            w.stop()
    assert redis_flows(redis_url, app, "A", range(last + 1), cluster) == offline_flows(df)
