"""Redis faults under a live worker: a restart mid-stream (AOF on) and a kill -9 with `appendfsync always` leave
exact flows; a long outage is bounded and visible (logs, metrics)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis

from models.slots import slot_from_dt
from stream.keys import Keys
from stream.replay import ReplaySettings, replay
from stream.services import start_redis, stop
from tests.integration.test_worker_flows import offline_flows, redis_flows
from tests.integration.worker_proc import WorkerProc, wait_assembled
from tests.stream.tiny_city import write_city

pytestmark = pytest.mark.integration


def aof_holder(d: Path, fsync: str = "everysec") -> dict:
    """A redis-server of its own with AOF persistence (`appendfsync` = fsync); `restart(down_s, kill=False)` stops
    it (SIGTERM, or SIGKILL: no chance to write anything more) and starts it on the same port and data."""

    def start(port: int = 0):
        svc = start_redis(d / "r", port=port, aof=True, data_dir=d / "r-data")
        if fsync != "everysec":
            r = redis.Redis.from_url(svc.url)
            r.config_set("appendfsync", fsync)
            r.close()
        return svc

    holder = {"svc": start()}

    def restart(down_s: float, kill: bool = False) -> None:
        svc = holder["svc"]
        if kill:
            os.kill(svc.pid, signal.SIGKILL)
            if svc.popen is not None:
                svc.popen.wait(10)
        stop(svc)
        time.sleep(down_s)
        holder["svc"] = start(svc.port)

    holder["restart"] = restart
    return holder


@pytest.fixture
def aof_redis(tmp_path):
    holder = aof_holder(tmp_path)
    yield holder
    stop(holder["svc"])


def assembled(url: str, app: str) -> int:
    try:
        r = redis.Redis.from_url(url, socket_timeout=2)
        try:
            return int(r.get(Keys(app).assembled("A")) or -1)
        finally:
            r.close()
    except redis.ConnectionError:
        return -2


def redis_restarts(broker, make_topic, tmp_path, aof_redis, restarts: int, down_s: float, kill: bool = False) -> dict:
    topic = make_topic(partitions=2)
    df = write_city(tmp_path / "c.csv", n_users=200, days=3, seed=21)
    rs = ReplaySettings(tmp_path / "c.csv", broker.bootstrap, topic, partitions=2, progress=False, batch_size=40)
    replay(dataclasses.replace(rs, days=(0, 1), close_last=False))  # day 2 once the faults are done: mid-stream
    app = f"t{uuid.uuid4().hex[:8]}"
    last = int(slot_from_dt(df.d.max(), 47))
    url = aof_redis["svc"].url
    w = WorkerProc(broker.bootstrap, url, topic, app, 2, tmp_path / "w.log", ["--batch-size", "10"])
    at = []
    try:
        for i in range(restarts):
            deadline = time.monotonic() + 60
            target = (i + 1) * last // (restarts + 2)
            while time.monotonic() < deadline and assembled(url, app) < target:
                time.sleep(0.05)
            at.append(assembled(url, app))
            assert at[-1] < last, "the replay ended before the fault"
            aof_redis["restart"](down_s, kill)
        replay(dataclasses.replace(rs, days=(2, 2)))
        wait_assembled(url, app, last, w, timeout=120)
        alive = w.proc.poll() is None
    finally:
        w.stop()
    assert alive, w.tail()
    assert redis_flows(url, app, "A", range(last + 1)) == offline_flows(df)
    return {"assembled_at_fault": at, "last": last}


def test_redis_restart_mid_stream_leaves_exact_flows(broker, make_topic, tmp_path, aof_redis):
    redis_restarts(broker, make_topic, tmp_path, aof_redis, restarts=1, down_s=2.0)


@pytest.mark.slow
def test_redis_restarted_three_times(broker, make_topic, tmp_path, aof_redis):
    redis_restarts(broker, make_topic, tmp_path, aof_redis, restarts=3, down_s=3.0)


@pytest.mark.slow
def test_redis_killed_9_with_appendfsync_always_leaves_exact_flows(broker, make_topic, tmp_path):
    """SIGKILL loses nothing Redis acknowledged when every write is fsynced before the reply; with the default
    `everysec` the last second of acknowledged writes can be lost (not tested: the loss is a timing accident)."""
    holder = aof_holder(tmp_path, fsync="always")
    try:
        redis_restarts(broker, make_topic, tmp_path, holder, restarts=2, down_s=1.0, kill=True)
    finally:
        stop(holder["svc"])


@pytest.mark.slow
def test_long_redis_outage_is_bounded_and_visible(broker, make_topic, tmp_path, aof_redis):
    topic = make_topic(partitions=2)
    write_city(tmp_path / "c.csv", n_users=200, days=3, seed=22)
    replay(ReplaySettings(tmp_path / "c.csv", broker.bootstrap, topic, partitions=2, progress=False, batch_size=40))
    app = f"t{uuid.uuid4().hex[:8]}"
    url = aof_redis["svc"].url
    w = WorkerProc(broker.bootstrap, url, topic, app, 2, tmp_path / "w.log", ["--batch-size", "10"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and assembled(url, app) < 10:
            time.sleep(0.05)
        port = aof_redis["svc"].port
        stop(aof_redis["svc"])
        rss = []
        for _ in range(15):
            time.sleep(1)
            rss.append(psutil.Process(w.proc.pid).memory_info().rss)
        text = w.metrics()
        log = w.tail(200_000)
        aof_redis["svc"] = start_redis(tmp_path / "r", port=port, aof=True, data_dir=tmp_path / "r-data")
    finally:
        w.stop()
    assert max(rss) < 1.2 * rss[0], rss  # bounded: nothing piles up in memory while Redis is away
    assert re.search(r"redis", log, re.I), log[-2000:]
    assert re.search(r"^mobstream_redis_up(\{[^}]*\})? 0", text, re.M), "no metric says Redis is down"
